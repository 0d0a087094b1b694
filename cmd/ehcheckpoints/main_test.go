package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
)

// binary is the ehcheckpoints executable that TestMain builds; the tests
// run it as a user would.
var binary string

// envHelper, when set in the environment of the test binary, turns it into
// a simulated processor (see runProcessor) instead of running tests.
const envHelper = "EHCHECKPOINTS_TEST_PROCESSOR"

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		if err := runProcessor(os.Args[len(os.Args)-1], os.Getenv(envHelper)); err != nil {
			fmt.Fprintln(os.Stderr, "processor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ehcheckpoints-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "ehcheckpoints")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building ehcheckpoints: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is what one run of the binary gave.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// ehc runs the binary with args and stdin (may be empty) and the extra
// environment variables env ("NAME=value").
func ehc(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running ehcheckpoints %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustRun runs the binary and fails the test unless it exits with 0.
func mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := ehc(t, stdin, nil, args...)
	if r.code != 0 {
		t.Fatalf("ehcheckpoints %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// sampleNow is the clock the golden tests run at (EHCHECKPOINTS_NOW);
// testdata/sample.jsonl is written relative to it.
const sampleNow = "2025-06-01T12:00:00Z"

// sampleStore writes testdata/sample.jsonl into a new store file.
func sampleStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sample.db")
	mustRun(t, "", "import", path, filepath.Join("testdata", "sample.jsonl"))
	return path
}

// processor is a child process that uses a store file like a running Event
// Hubs processor: it claims or renews its partitions and checkpoints them,
// round after round, with the default options.
type processor struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

// processorRound is how often a simulated processor claims and
// checkpoints. Real processors renew every 10s and checkpoint as often as
// they like; faster rounds make the file busier than in production.
const processorRound = 10 * time.Millisecond

// startProcessor starts a processor that owns the partitions first..last of
// group g in the store file at path, as owner. It returns once the
// processor has claimed and checkpointed every partition once, and stops it
// when the test ends.
func startProcessor(t *testing.T, path string, g boltstore.Scope, owner string, first, last int) *processor {
	t.Helper()
	spec := strings.Join([]string{g.Namespace, g.EventHub, g.ConsumerGroup, owner, strconv.Itoa(first), strconv.Itoa(last)}, ",")
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), envHelper+"="+spec)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &processor{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		p.stdin.Close()
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("processor %s: %v\n%s", owner, err, stderr.String())
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected output %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("processor %s did not start: %v\n%s", owner, err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("processor %s did not start in time\n%s", owner, stderr.String())
	}
	return p
}

// runProcessor is the child side of startProcessor. spec is
// "namespace,hub,group,owner,first,last". It runs until its standard input
// closes, which happens when the test process ends.
func runProcessor(path, spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 6 {
		return fmt.Errorf("bad spec %q", spec)
	}
	ns, hub, group, owner := f[0], f[1], f[2], f[3]
	first, err1 := strconv.Atoi(f[4])
	last, err2 := strconv.Atoi(f[5])
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	s, err := boltstore.Open(path, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	sequence := int64(0)
	for round := 0; ; round++ {
		sequence++
		if err := processRound(ctx, s, ns, hub, group, owner, first, last, sequence); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if round == 0 {
			fmt.Println("ready")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(processorRound):
		}
	}
}

// processRound claims or renews the partitions first..last and checkpoints
// each at sequence, with offset 100 times that.
func processRound(ctx context.Context, s *boltstore.Store, ns, hub, group, owner string, first, last int, sequence int64) error {
	owned, err := s.ListOwnership(ctx, ns, hub, group, nil)
	if err != nil {
		return err
	}
	current := map[string]azeventhubs.Ownership{}
	for _, o := range owned {
		current[o.PartitionID] = o
	}
	var claims []azeventhubs.Ownership
	for p := first; p <= last; p++ {
		id := strconv.Itoa(p)
		claim := azeventhubs.Ownership{FullyQualifiedNamespace: ns, EventHubName: hub, ConsumerGroup: group, PartitionID: id, OwnerID: owner}
		if o, ok := current[id]; ok {
			claim.ETag = o.ETag
		}
		claims = append(claims, claim)
	}
	if _, err := s.ClaimOwnership(ctx, claims, nil); err != nil {
		return err
	}
	offset := strconv.FormatInt(sequence*100, 10)
	for p := first; p <= last; p++ {
		cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: ns, EventHubName: hub, ConsumerGroup: group, PartitionID: strconv.Itoa(p), Offset: &offset, SequenceNumber: &sequence}
		if err := s.SetCheckpoint(ctx, cp, nil); err != nil {
			return err
		}
	}
	return nil
}
