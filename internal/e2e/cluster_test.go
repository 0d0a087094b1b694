package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
	"github.com/ehcheckpoints/boltstore/internal/demo"
	"github.com/ehcheckpoints/boltstore/internal/testhub"
)

// Processor settings. The SDK's defaults (10 s, 1 min) would make a
// takeover last over a minute. The expiration still leaves room for the
// file to be out of reach for seconds, as when an fsync stalls on a busy
// CI machine, without ownerships expiring under live processors, which
// would then steal from each other.
const (
	checkpointEvery = 10 // N
	updateInterval  = 200 * time.Millisecond
	expiration      = 5 * time.Second
)

var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// processorProgram builds the processor program once per test binary. It
// is built without -race: the tests check what the processes do, and
// plain binaries keep three of them fast on a small CI machine.
var processorProgram = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	exe := filepath.Join(dir, "processorproc")
	// go test puts its own toolchain first in PATH.
	out, err := exec.Command("go", "build", "-o", exe, "./processorproc").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./processorproc: %v\n%s", err, out)
	}
	return exe, nil
})

// cluster is one event hub in the test double, one boltstore file, and
// the processor processes that share it.
type cluster struct {
	t          *testing.T
	ctx        context.Context
	exe        string
	hub        *testhub.Hub
	partitions []string
	dir        string
	// store is the test's own view of the file; it takes turns with the
	// processors.
	store              *boltstore.Store
	ns, hubName, group string

	procs []*demo.Process // every process started, in order
	runs  map[string]int  // how many processes each id has had
}

func newCluster(t *testing.T, partitions int) *cluster {
	t.Helper()
	exe, err := processorProgram()
	if err != nil {
		t.Fatal(err)
	}
	hub, err := testhub.Start(testhub.Options{Name: "e2e", Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	props, err := azeventhubs.ParseConnectionString(hub.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The test reads the file like one more process. Its reads wait longer
	// for the file than the processors' default 10 s, so that a busy file
	// fails the processors, which the test is about, before it fails the
	// race-instrumented test binary, the slowest of the processes.
	store, err := boltstore.Open(filepath.Join(dir, "checkpoints.db"), &boltstore.Options{LockTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{
		t: t, ctx: ctx, exe: exe, hub: hub, dir: dir, store: store,
		ns: props.FullyQualifiedNamespace, hubName: hub.Name(), group: azeventhubs.DefaultConsumerGroup,
		runs: map[string]int{},
	}
	for i := range partitions {
		c.partitions = append(c.partitions, strconv.Itoa(i))
	}
	t.Cleanup(func() {
		cancel()
		for _, p := range c.procs {
			p.Kill()
			<-p.Done()
		}
		store.Close()
	})
	return c
}

// publish adds n events to every partition.
func (c *cluster) publish(n int) {
	c.t.Helper()
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = []byte("event")
	}
	for _, p := range c.partitions {
		if err := c.hub.Publish(p, bodies...); err != nil {
			c.t.Fatal(err)
		}
	}
}

// stream publishes one event to every partition every 20 ms (1,600 events
// a second with 32 partitions) until the returned function is called.
func (c *cluster) stream() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, p := range c.partitions {
					if err := c.hub.Publish(p, []byte("event")); err != nil {
						c.t.Error(err)
						return
					}
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// start starts a processor process for each id. An id that ran before
// keeps its owner id, as a restarted host would, and gets a new log.
func (c *cluster) start(ids ...string) []*demo.Process {
	c.t.Helper()
	var started []*demo.Process
	for _, id := range ids {
		c.runs[id]++
		cfg := demo.ProcessorConfig{
			ConnectionString: c.hub.ConnectionString(),
			StorePath:        c.store.Path(),
			ID:               id,
			CheckpointEvery:  checkpointEvery,
			UpdateInterval:   updateInterval,
			Expiration:       expiration,
		}
		log := filepath.Join(c.dir, fmt.Sprintf("%s.%d.log", id, c.runs[id]))
		p, err := demo.StartProcess(c.exe, nil, cfg, log)
		if err != nil {
			c.t.Fatal(err)
		}
		c.procs = append(c.procs, p)
		started = append(started, p)
	}
	return started
}

// stop stops the processes gracefully and checks that they exit cleanly.
func (c *cluster) stop(procs ...*demo.Process) {
	c.t.Helper()
	for _, p := range procs {
		if err := p.Stop(); err != nil {
			c.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	for _, p := range procs {
		if err := p.Wait(ctx); err != nil {
			c.t.Fatal(err)
		}
	}
}

// kill ends the processes with SIGKILL and waits until they are gone.
func (c *cluster) kill(procs ...*demo.Process) {
	c.t.Helper()
	for _, p := range procs {
		if err := p.Kill(); err != nil {
			c.t.Fatal(err)
		}
		<-p.Done()
	}
}

func (c *cluster) ownerships() []azeventhubs.Ownership {
	c.t.Helper()
	owns, err := c.store.ListOwnership(c.ctx, c.ns, c.hubName, c.group, nil)
	if err != nil {
		c.t.Fatalf("%v; logs:\n%s", err, c.logTails())
	}
	return owns
}

// checkpoints returns the stored checkpoints' sequence numbers by partition.
func (c *cluster) checkpoints() map[string]int64 {
	c.t.Helper()
	cps, err := c.store.ListCheckpoints(c.ctx, c.ns, c.hubName, c.group, nil)
	if err != nil {
		c.t.Fatalf("%v; logs:\n%s", err, c.logTails())
	}
	m := map[string]int64{}
	for _, cp := range cps {
		if cp.SequenceNumber == nil {
			c.t.Fatalf("partition %s: checkpoint without sequence number", cp.PartitionID)
		}
		m[cp.PartitionID] = *cp.SequenceNumber
	}
	return m
}

// owners returns the partitions each live owner holds, by the store.
func (c *cluster) owners() map[string][]string {
	return demo.Owners(c.ownerships(), time.Now(), expiration)
}

// waitFor polls cond until it holds, failing the test after timeout.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("not %s after %s; owners %v; logs:\n%s", what, timeout, c.owners(), c.logTails())
		}
		for _, p := range c.procs {
			select {
			case <-p.Done():
				if !p.Ending() {
					c.t.Fatalf("waiting until %s: processor exited: %v", what, p.Wait(c.ctx))
				}
			default:
			}
		}
		time.Sleep(pollInterval)
	}
}

// pollInterval is how often the test looks at the file and the processes.
// Each look takes the file from the processors for a moment.
const pollInterval = 200 * time.Millisecond

// waitBalanced waits until exactly ids hold all partitions, evenly, and
// returns how long that took.
func (c *cluster) waitBalanced(timeout time.Duration, ids ...string) time.Duration {
	c.t.Helper()
	start := time.Now()
	c.waitFor(fmt.Sprintf("balanced among %v", ids), timeout, func() bool {
		return demo.Balanced(c.owners(), ids, len(c.partitions))
	})
	return time.Since(start)
}

// waitConsumed waits until every partition's checkpoint is at its last
// event. Processors checkpoint only events they processed, so every event
// has then been processed.
func (c *cluster) waitConsumed(timeout time.Duration) {
	c.t.Helper()
	c.waitFor("consumed and checkpointed", timeout, func() bool {
		cps := c.checkpoints()
		for _, p := range c.partitions {
			if cp, ok := cps[p]; !ok || cp != c.hub.LastSequenceNumber(p) {
				return false
			}
		}
		return true
	})
}

// logs reads the logs of procs into sessions, by partition.
func (c *cluster) sessions(procs ...*demo.Process) map[string][]*demo.Session {
	c.t.Helper()
	var all []*demo.Session
	for _, p := range procs {
		entries, err := demo.ReadLog(p.LogPath)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, e := range entries {
			if e.Kind == demo.KindError || e.Kind == demo.KindCheckpointFailed || e.Kind == demo.KindStop && e.Error != "" {
				c.t.Errorf("%s: %s %s: %s", filepath.Base(p.LogPath), e.Kind, e.Partition, e.Error)
			}
		}
		all = append(all, demo.Sessions(filepath.Base(p.LogPath), entries)...)
	}
	return demo.ByPartition(all)
}

// logTails returns the errors and the last lines of each log, for
// failure messages.
func (c *cluster) logTails() string {
	var b strings.Builder
	for _, p := range c.procs {
		data, _ := os.ReadFile(p.LogPath)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "== %s (%d lines)\n", filepath.Base(p.LogPath), len(lines))
		for i, line := range lines {
			if i >= len(lines)-5 || strings.Contains(line, `"err"`) {
				fmt.Fprintln(&b, line)
			}
		}
	}
	return b.String()
}
