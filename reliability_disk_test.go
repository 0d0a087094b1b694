//go:build linux

package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"golang.org/x/sys/unix"
)

// The disk-full helper modes exist only where this file builds.
func init() {
	relChildModes["disk-full"] = relDiskFullChild
	relChildModes["disk-full-rlim"] = relDiskFullRlimitChild
}

const (
	relDiskNS    = "reldisk.servicebus.windows.net"
	relDiskHub   = "hub"
	relDiskGroup = "$Default"
)

// TestReliabilityDiskFull fills the filesystem under a store: the write
// that needs space must fail with the filesystem's error, everything
// acknowledged before must stay readable (also after reopening), the file
// must pass Check, and once space is free again the store must work again.
//
// The real thing needs a small filesystem: the test mounts a 1 MiB tmpfs
// in a child process with a mount namespace of its own (so the mount
// cannot outlive the test), as root, or else as root of a new user
// namespace, which unprivileged users may create on most Linux systems.
// Where neither is allowed, that subtest is skipped with the reason, and
// the second subtest still runs: there a file-size limit (RLIMIT_FSIZE)
// makes the file's growth fail with EFBIG instead, which exercises the
// same paths in the store.
func TestReliabilityDiskFull(t *testing.T) {
	t.Run("tmpfs", func(t *testing.T) {
		dir := t.TempDir()
		var reasons []string
		for _, ns := range relNamespaceAttempts() {
			cmd := relChildCmd("disk-full", dir)
			cmd.SysProcAttr = ns.attr
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			switch {
			case err == nil && bytes.Contains(out, []byte(relLinePrefix+"mounted")):
				t.Logf("ran in %s:\n%s", ns.name, relProtocolLines(out))
				return
			case err == nil: // the child could not mount; it says why
				reasons = append(reasons, fmt.Sprintf("%s: %s", ns.name, strings.TrimSpace(relProtocolLines(out))))
			case errors.As(err, &exit):
				t.Fatalf("disk-full scenario in %s failed: %v\n%s", ns.name, err, out)
			default: // the namespace could not be created
				reasons = append(reasons, fmt.Sprintf("%s: %v", ns.name, err))
			}
		}
		t.Skipf("cannot mount a small filesystem here (%s); the rlimit subtest covers the store's side", strings.Join(reasons, "; "))
	})
	t.Run("rlimit", func(t *testing.T) {
		out, err := relChildCmd("disk-full-rlim", t.TempDir()).CombinedOutput()
		if err != nil {
			t.Fatalf("file-size-limit scenario failed: %v\n%s", err, out)
		}
		t.Logf("%s", relProtocolLines(out))
	})
}

// relProtocolLines returns the protocol lines of a child's output.
func relProtocolLines(out []byte) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, relLinePrefix); ok {
			lines = append(lines, s)
		}
	}
	return strings.Join(lines, "\n")
}

type relNamespace struct {
	name string
	attr *syscall.SysProcAttr
}

// relNamespaceAttempts lists the ways to give the child a mount namespace
// of its own, most direct first.
func relNamespaceAttempts() []relNamespace {
	var attempts []relNamespace
	if os.Geteuid() == 0 {
		// Go makes / private in the new namespace, so nothing propagates.
		attempts = append(attempts, relNamespace{"a new mount namespace", &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}})
	}
	return append(attempts, relNamespace{"a new user and mount namespace", &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}})
}

// relDiskFullChild mounts a 1 MiB tmpfs on args[0] and runs the scenario,
// filling the filesystem with a second file.
func relDiskFullChild(t *testing.T, args []string) {
	dir := args[0]
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		relPrintf("no mount: " + err.Error())
		return
	}
	defer unix.Unmount(dir, 0)
	relPrintf("mounted a 1 MiB tmpfs")
	filler := filepath.Join(dir, "filler")
	full := func(err error) bool { return errors.Is(err, syscall.ENOSPC) }
	relDiskFullScenario(t, dir, full,
		func() error {
			if err := relFill(filler); err != nil {
				return err
			}
			// Creating a store needs space too: it must fail whole, leaving
			// neither a half-made store nor its temporary file.
			created := filepath.Join(dir, "new.db")
			if s, err := Open(created, nil); err == nil || !full(err) {
				if s != nil {
					s.Close()
				}
				return fmt.Errorf("Open of a new store on a full filesystem: %v; want ENOSPC", err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*new*")); len(left) > 0 {
				return fmt.Errorf("a failed Open left %v behind", left)
			}
			return nil
		},
		func() error { return os.Remove(filler) })
}

// relFill writes path until the filesystem is full, in ever smaller
// pieces, so that not even a page is left.
func relFill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for size := 64 << 10; size >= 1; size /= 2 {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					return err
				}
				break
			}
		}
	}
	return nil
}

// relDiskFullRlimitChild limits the size of files this process may write
// to the store file's current size, and lifts the limit to free space.
func relDiskFullRlimitChild(t *testing.T, args []string) {
	// Beyond the limit the kernel sends SIGXFSZ, which would kill the
	// process; ignored, the write fails with EFBIG instead.
	signal.Ignore(syscall.SIGXFSZ)
	var original unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &original); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(args[0], "cp.db")
	// bbolt wraps a failed resize with %s, which loses EFBIG for errors.Is;
	// its text is all that is left then.
	tooLarge := func(err error) bool {
		return errors.Is(err, syscall.EFBIG) || strings.Contains(err.Error(), syscall.EFBIG.Error())
	}
	relDiskFullScenario(t, args[0], tooLarge,
		func() error {
			info, err := os.Stat(path)
			if err != nil {
				return err
			}
			limit := original
			limit.Cur = uint64(info.Size())
			return unix.Setrlimit(unix.RLIMIT_FSIZE, &limit)
		},
		func() error { return unix.Setrlimit(unix.RLIMIT_FSIZE, &original) })
}

// relDiskFullScenario runs the disk-full checks on a store in dir; full
// tells the expected error of a write that needs space, fill and free make
// and end the shortage.
func relDiskFullScenario(t *testing.T, dir string, full func(error) bool, fill, free func() error) {
	ctx := context.Background()
	path := filepath.Join(dir, "cp.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()

	// want is every acknowledged write: checkpoint sequence numbers and
	// claim etags by partition.
	wantCP, wantOwn := map[string]int64{}, map[string]string{}
	// Offsets of half a KiB make the file grow quickly.
	pad := strings.Repeat("x", 500)
	setCP := func(partition string, seq int64) error {
		offset := pad + strconv.FormatInt(seq, 10)
		err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: relDiskNS, EventHubName: relDiskHub, ConsumerGroup: relDiskGroup,
			PartitionID: partition, Offset: &offset, SequenceNumber: &seq}, nil)
		if err == nil {
			wantCP[partition] = seq
		}
		return err
	}
	claim := func(partition string) error {
		o := azeventhubs.Ownership{FullyQualifiedNamespace: relDiskNS, EventHubName: relDiskHub, ConsumerGroup: relDiskGroup,
			PartitionID: partition, OwnerID: "owner-" + partition + "-" + pad}
		if e, ok := wantOwn[partition]; ok {
			o.ETag = relPtr(azcore.ETag(e))
		}
		won, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{o}, nil)
		if err == nil && len(won) != 1 {
			err = fmt.Errorf("claim with the current etag lost")
		}
		if err == nil {
			wantOwn[partition] = string(*won[0].ETag)
		}
		return err
	}
	verify := func(when string) {
		t.Helper()
		cps, err := s.ListCheckpoints(ctx, relDiskNS, relDiskHub, relDiskGroup, nil)
		if err != nil {
			t.Fatalf("%s: ListCheckpoints: %v", when, err)
		}
		got := map[string]int64{}
		for _, cp := range cps {
			if *cp.Offset != pad+strconv.FormatInt(*cp.SequenceNumber, 10) {
				t.Fatalf("%s: checkpoint %s has offset %q", when, cp.PartitionID, *cp.Offset)
			}
			got[cp.PartitionID] = *cp.SequenceNumber
		}
		owns, err := s.ListOwnership(ctx, relDiskNS, relDiskHub, relDiskGroup, nil)
		if err != nil {
			t.Fatalf("%s: ListOwnership: %v", when, err)
		}
		gotOwn := map[string]string{}
		for _, o := range owns {
			gotOwn[o.PartitionID] = string(*o.ETag)
		}
		if fmt.Sprint(got) != fmt.Sprint(wantCP) || fmt.Sprint(gotOwn) != fmt.Sprint(wantOwn) {
			t.Fatalf("%s: the store holds checkpoints %v and claims %v;\nacknowledged: %v and %v", when, got, gotOwn, wantCP, wantOwn)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("%s: Check: %v", when, err)
		}
	}

	for i := range 8 {
		p := strconv.Itoa(i)
		if err := setCP(p, 1); err != nil {
			t.Fatal(err)
		}
		if err := claim(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := fill(); err != nil {
		t.Fatalf("filling the filesystem: %v", err)
	}

	// Write new partitions until a write needs space that is not there;
	// then a few more, which must all fail the same way or succeed in
	// space the file already has.
	failures, acked := 0, 0
	for i := 0; failures < 20; i++ {
		if i == 5000 {
			t.Fatalf("%d writes succeeded on a full filesystem", acked)
		}
		p := "new-" + strconv.Itoa(i)
		err := setCP(p, int64(i))
		if err == nil {
			err = claim(p)
		}
		switch {
		case err == nil:
			acked++
		case !full(err) || !strings.Contains(err.Error(), path):
			t.Fatalf("write on a full filesystem: %v; want the filesystem's error, naming the file", err)
		default:
			if failures == 0 {
				relPrintf(fmt.Sprintf("after %d more writes: %v", acked, err))
			}
			failures++
		}
	}
	verify("full")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, nil); err != nil {
		t.Fatalf("Open on a full filesystem: %v", err)
	}
	verify("reopened while full")

	if err := free(); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		p := "after-" + strconv.Itoa(i)
		if err := setCP(p, 7); err != nil {
			t.Fatalf("SetCheckpoint once space is free: %v", err)
		}
		if err := claim(strconv.Itoa(i)); err != nil {
			t.Fatalf("renewing a claim once space is free: %v", err)
		}
	}
	verify("space freed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	verify("reopened")
	relPrintf(fmt.Sprintf("%d writes refused for lack of space, none lost or half applied; %d acknowledged checkpoints intact; the store worked again once space was free", failures, len(wantCP)))
}
