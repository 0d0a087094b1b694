package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/filelock"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

const (
	relLockNS    = "rellock.servicebus.windows.net"
	relLockHub   = "hub"
	relLockGroup = "$Default"
)

func relLockCheckpoint(partition string, seq int64) azeventhubs.Checkpoint {
	return azeventhubs.Checkpoint{FullyQualifiedNamespace: relLockNS, EventHubName: relLockHub, ConsumerGroup: relLockGroup, PartitionID: partition, SequenceNumber: &seq}
}

func relLockOwnership(partition, owner string, etag *azcore.ETag) azeventhubs.Ownership {
	return azeventhubs.Ownership{FullyQualifiedNamespace: relLockNS, EventHubName: relLockHub, ConsumerGroup: relLockGroup, PartitionID: partition, OwnerID: owner, ETag: etag}
}

// relStartHolder starts a process that locks path the way kind says and
// keeps it until its stdin closes; it returns a function that ends the
// hold and waits for the process.
func relStartHolder(t *testing.T, path, kind string) (release func()) {
	t.Helper()
	cmd := relChildCmd("flock-holder", path, kind)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("lock holder: %v\n%s", err, relHead(stderr.Bytes(), 2000))
			}
		})
	}
	t.Cleanup(func() { cmd.Process.Kill(); release() })
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	if !relReadLines(stdout).waitFor(func(l string) bool { return l == "locked" }) {
		t.Fatalf("lock holder never locked the file:\n%s", relHead(stderr.Bytes(), 2000))
	}
	return release
}

// relFlockHolder is the child side of relStartHolder.
func relFlockHolder(t *testing.T, args []string) {
	path, kind := args[0], args[1]
	switch kind {
	case "flock":
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	case "bbolt":
		// A plain bbolt user that knows nothing of the handover.
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
	default:
		t.Fatalf("unknown lock kind %q", kind)
	}
	relPrintf("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// relTimed runs fn and returns its error and how long it took.
func relTimed(fn func() error) (error, time.Duration) {
	start := time.Now()
	err := fn()
	return err, time.Since(start)
}

// relLockCalls are the store's calls, each as a function of a context.
func relLockCalls(s *Store) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"SetCheckpoint": func(ctx context.Context) error { return s.SetCheckpoint(ctx, relLockCheckpoint("0", 99), nil) },
		"ClaimOwnership": func(ctx context.Context) error {
			_, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{relLockOwnership("1", "late", nil)}, nil)
			return err
		},
		"ListOwnership": func(ctx context.Context) error {
			_, err := s.ListOwnership(ctx, relLockNS, relLockHub, relLockGroup, nil)
			return err
		},
		"ListCheckpoints": func(ctx context.Context) error {
			_, err := s.ListCheckpoints(ctx, relLockNS, relLockHub, relLockGroup, nil)
			return err
		},
		"Records": func(ctx context.Context) error { _, err := s.Records(ctx, Scope{}); return err },
		"Check":   func(ctx context.Context) error { return s.Check(ctx) },
	}
}

// TestOpenContextEndsTheWaitForALockedFile: OpenContext waits for a file
// another process holds until its context ends, not until LockTimeout.
func TestOpenContextEndsTheWaitForALockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock.db")
	openTestStore(t, path, nil).Close()
	release := relStartHolder(t, path, "flock")
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s, err := OpenContext(ctx, path, &Options{LockTimeout: time.Hour})
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenContext of a held file: %v; want the context's error naming the file", err)
	}
}

// TestReliabilityStuckLock has another process hold the file (a plain
// flock, or a plain bbolt.Open) beyond the lock timeout. Every call must
// fail with ErrLockTimeout naming the file after about LockTimeout, or with
// the context's error when its deadline comes first, and none of the
// refused writes may appear once the file is free again.
func TestReliabilityStuckLock(t *testing.T) {
	for _, kind := range []string{"flock", "bbolt"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "lock.db")
			const lockTimeout = 500 * time.Millisecond
			// Open needs the file too, so every handle is opened before the
			// holder takes it; each lets go of it after IdleRelease.
			s := openTestStore(t, path, &Options{LockTimeout: lockTimeout})
			patient := openTestStore(t, path, &Options{LockTimeout: time.Minute})
			closing := openTestStore(t, path, &Options{LockTimeout: time.Second})
			if err := s.SetCheckpoint(ctx, relLockCheckpoint("0", 1), nil); err != nil {
				t.Fatal(err)
			}
			release := relStartHolder(t, path, kind)

			// All calls at once: each gives up after about LockTimeout.
			var wg sync.WaitGroup
			for name, call := range relLockCalls(s) {
				wg.Go(func() {
					err, took := relTimed(func() error { return call(ctx) })
					if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), path) {
						t.Errorf("%s with the file held: %v; want ErrLockTimeout naming the file", name, err)
					}
					if took < lockTimeout-50*time.Millisecond || took > lockTimeout+3*time.Second {
						t.Errorf("%s gave up after %v; LockTimeout is %v", name, took, lockTimeout)
					}
				})
			}
			wg.Wait()

			// A context deadline sooner than LockTimeout wins.
			for name, call := range relLockCalls(patient) {
				wg.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					err, took := relTimed(func() error { return call(cctx) })
					if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), path) {
						t.Errorf("%s with a 100ms deadline: %v; want context.DeadlineExceeded naming the file", name, err)
					}
					if took > 2*time.Second {
						t.Errorf("%s with a 100ms deadline returned after %v", name, took)
					}
				})
			}
			wg.Wait()

			// Open waits for the file too.
			if _, err := Open(path, &Options{LockTimeout: 200 * time.Millisecond}); !errors.Is(err, ErrLockTimeout) {
				t.Errorf("Open with the file held: %v; want ErrLockTimeout", err)
			}

			// Close while a write waits for the file: the write gives up at
			// its LockTimeout (1s), and Close returns then, not later.
			writeErr := make(chan error, 1)
			go func() { writeErr <- closing.SetCheckpoint(ctx, relLockCheckpoint("0", 98), nil) }()
			time.Sleep(100 * time.Millisecond)
			if err, took := relTimed(closing.Close); err != nil || took > 3*time.Second {
				t.Errorf("Close while a write waited for the held file: %v after %v", err, took)
			}
			if err := <-writeErr; !errors.Is(err, ErrLockTimeout) && !errors.Is(err, ErrClosed) {
				t.Errorf("write waiting when its store closed: %v; want ErrLockTimeout or ErrClosed", err)
			}

			release()
			// Once the holder is gone, calls succeed at once, and the writes
			// refused above were never applied.
			err, took := relTimed(func() error { return s.SetCheckpoint(ctx, relLockCheckpoint("2", 1), nil) })
			if err != nil || took > 2*time.Second {
				t.Fatalf("SetCheckpoint after the holder left: %v after %v", err, took)
			}
			cps, err := s.ListCheckpoints(ctx, relLockNS, relLockHub, relLockGroup, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(cps) != 2 || *cps[0].SequenceNumber != 1 {
				t.Fatalf("after the hold: %v; a refused write was applied, or an acknowledged one lost", relShowCheckpoints(cps))
			}
			owns, err := s.ListOwnership(ctx, relLockNS, relLockHub, relLockGroup, nil)
			if err != nil || len(owns) != 0 {
				t.Fatalf("a refused claim was applied: %+v, %v", owns, err)
			}
			if err := s.Check(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func relShowCheckpoints(cps []azeventhubs.Checkpoint) string {
	var parts []string
	for _, cp := range cps {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", cp.PartitionID, relShowPtr(cp.Offset), relShowPtr(cp.SequenceNumber)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestReliabilityLockHandover has a boltstore in another process write as
// fast as it can, and this process use the same file meanwhile: the busy
// holder must hand the file over, so no call here times out, and both
// processes make progress.
func TestReliabilityLockHandover(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "handover.db")
	s := openTestStore(t, path, nil) // default options, LockTimeout 10s
	if err := s.SetCheckpoint(ctx, relLockCheckpoint("0", 1), nil); err != nil {
		t.Fatal(err)
	}
	busyFor := 3 * time.Second
	cmd := relChildCmd("busy-store", path, busyFor.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := relReadLines(stdout)
	if !lines.waitFor(func(l string) bool { return l == "busy" }) {
		cmd.Wait()
		t.Fatalf("busy store did not start:\n%s", relHead(stderr.Bytes(), 3000))
	}

	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      []error
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(busyFor - 500*time.Millisecond)
	for g := range 4 {
		wg.Go(func() {
			var etag *azcore.ETag
			for n := int64(1); time.Now().Before(deadline); n++ {
				var err error
				start := time.Now()
				switch n % 3 {
				case 0:
					err = s.SetCheckpoint(ctx, relLockCheckpoint("parent-"+strconv.Itoa(g), n), nil)
				case 1:
					var won []azeventhubs.Ownership
					won, err = s.ClaimOwnership(ctx, []azeventhubs.Ownership{relLockOwnership("parent-"+strconv.Itoa(g), "parent", etag)}, nil)
					if err == nil && len(won) == 1 {
						etag = won[0].ETag
					} else if err == nil {
						err = fmt.Errorf("renewing its own claim lost")
					}
				default:
					_, err = s.ListOwnership(ctx, relLockNS, relLockHub, relLockGroup, nil)
				}
				mu.Lock()
				latencies = append(latencies, time.Since(start))
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	out := lines.all()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("busy store: %v\n%s%s", err, lines.other.String(), relHead(stderr.Bytes(), 3000))
	}
	for _, err := range errs[:min(len(errs), 5)] {
		t.Errorf("call while another process was busy with the file: %v", err)
	}
	childWrites := 0
	for _, l := range out {
		if n, ok := strings.CutPrefix(l, "writes "); ok {
			childWrites, _ = strconv.Atoi(n)
		}
	}
	slices.Sort(latencies)
	if len(latencies) < 20 || childWrites < 20 {
		t.Fatalf("no progress: %d calls here, %d writes in the busy process", len(latencies), childWrites)
	}
	// Well below LockTimeout: a holder that kept the file until it went
	// idle would make calls here wait seconds.
	if worst := latencies[len(latencies)-1]; worst > 3*time.Second {
		t.Errorf("a call waited %v for the busy process to hand the file over", worst)
	}
	t.Logf("%d calls here while the other process made %d writes; latency p50 %v, p99 %v, max %v; %d errors",
		len(latencies), childWrites, latencies[len(latencies)/2], latencies[len(latencies)*99/100], latencies[len(latencies)-1], len(errs))
}

// relBusyStore is the child side of TestReliabilityLockHandover: eight
// goroutines checkpoint as fast as they can for the given time.
func relBusyStore(t *testing.T, args []string) {
	busyFor, err := time.ParseDuration(args[1])
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(args[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	relPrintf("busy")
	var (
		mu     sync.Mutex
		writes int
		wg     sync.WaitGroup
	)
	deadline := time.Now().Add(busyFor)
	for g := range 8 {
		wg.Go(func() {
			for n := int64(1); time.Now().Before(deadline); n++ {
				if err := s.SetCheckpoint(context.Background(), relLockCheckpoint("child-"+strconv.Itoa(g), n), nil); err != nil {
					t.Errorf("busy store: %v", err)
					return
				}
				mu.Lock()
				writes++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	relPrintf(fmt.Sprintf("writes %d", writes))
}

// TestCloseLetsGoOfTheFile: when Close returns, the file is free for the
// next process, also when a call was still reading it (Close used to leave
// that call to close the file after it).
func TestCloseLetsGoOfTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	// Enough records that Check, the call Close races, takes a while.
	var claims []azeventhubs.Ownership
	for p := range 5000 {
		claims = append(claims, ownership(strconv.Itoa(p), "owner", nil))
	}
	if _, err := s.ClaimOwnership(ctx, claims, nil); err != nil {
		t.Fatal(err)
	}
	probe, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for round := range 20 {
		s := openTestStore(t, path, nil)
		checked := make(chan error)
		go func() { checked <- s.Check(ctx) }()
		time.Sleep(time.Duration(round%4) * 500 * time.Microsecond) // Check under way, mostly
		s.Close()
		if err := filelock.TryLock(probe); err != nil {
			t.Fatalf("round %d: after Close returned the file was still locked: %v", round, err)
		}
		if err := filelock.Unlock(probe); err != nil {
			t.Fatal(err)
		}
		if err := <-checked; err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("round %d: Check beside Close: %v", round, err)
		}
	}
}

// TestCloseStopsAWaitForTheFile: Close does not wait out a call that waits
// for another process's lock; the call ends with ErrClosed.
func TestCloseStopsAWaitForTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, &Options{IdleRelease: time.Millisecond, LockTimeout: 20 * time.Second})
	if err := relWaitUnlocked(path); err != nil {
		t.Fatal(err)
	}
	other, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := filelock.TryLock(other); err != nil {
		t.Fatal(err)
	}
	listed := make(chan error)
	go func() {
		_, err := s.ListOwnership(context.Background(), testNS, testHub, testGroup, nil)
		listed <- err
	}()
	time.Sleep(20 * time.Millisecond) // the list is waiting for the lock
	s.Close()
	if err := <-listed; !errors.Is(err, ErrClosed) {
		t.Fatalf("a list waiting for the file while the store closed: %v, want ErrClosed", err)
	}
}
