package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/fsync"
	bolt "go.etcd.io/bbolt"
)

// TestBatchGroupIDSurvivesDelete commits, in one batch, a write that
// makes the transaction remember its group's id, the deletion of that
// group, and a second write to it: the second must give the group a new id
// and be listed, not land under the deleted id, where no group would find
// it.
func TestBatchGroupIDSurvivesDelete(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	g := newGroupKey(testNS, testHub, testGroup)
	put := func(seq int64) applyFunc {
		return s.checkpointWrite(g, appendPartitionKey(nil, "0"), checkpointRecord{sequence: &seq})
	}
	deleteGroup := func(w *writeTx) (error, error) {
		_, err := s.deleteScope(w, Scope{Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup})
		return nil, err
	}
	var ops []*writeOp
	for _, apply := range []applyFunc{put(1), deleteGroup, put(2)} {
		ops = append(ops, &writeOp{apply: apply, deadline: time.Now().Add(time.Second), done: make(chan error, 1)})
	}
	s.committer.commit(ctx, nil, ops, nil)
	for _, op := range ops {
		if err := <-op.done; err != nil {
			t.Fatal(err)
		}
	}
	got := listCheckpoints(t, s, testNS, testHub, testGroup)
	if len(got) != 1 || *got[0].SequenceNumber != 2 {
		t.Fatalf("after put, delete, put in one batch: %+v, want sequence 2", got)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// TestWritesBehindAFailedOneSurvive: a commit applies its batch, and then
// the writes it gathers while it runs in lots, and any of them may fail
// the whole transaction, by an error or a panic. The writes it had not
// reached yet must go back to the queue for the next commit: taken but
// never answered, their callers would wait forever; answered with the
// failure, they would fail for another caller's write.
func TestWritesBehindAFailedOneSurvive(t *testing.T) {
	for _, failure := range []string{"error", "panic"} {
		for _, where := range []string{"batch", "gathered"} {
			t.Run(failure+"/"+where, func(t *testing.T) {
				ctx := context.Background()
				s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
				c := s.committer
				op := func(apply applyFunc) *writeOp {
					return &writeOp{apply: apply, deadline: time.Now().Add(time.Minute), done: make(chan error, 1)}
				}
				set := func(partition string) applyFunc {
					seq := int64(1)
					return s.checkpointWrite(newGroupKey(testNS, testHub, testGroup), appendPartitionKey(nil, partition), checkpointRecord{sequence: &seq})
				}
				first := op(set("0"))
				failing := op(func(*writeTx) (error, error) {
					if failure == "panic" {
						panic("apply failed")
					}
					return nil, errors.New("apply failed")
				})
				after := op(set("1"))
				if where == "batch" {
					c.commit(ctx, nil, []*writeOp{first, failing, after}, nil)
				} else {
					c.mu.Lock()
					c.queue = []*writeOp{failing, after}
					c.mu.Unlock()
					c.commit(ctx, nil, []*writeOp{first}, &gatherPlan{expected: 3, patience: time.Second})
				}
				for _, o := range []*writeOp{first, failing} {
					if err := <-o.done; err == nil {
						t.Fatal("a write of the failed commit succeeded")
					}
				}
				c.mu.Lock()
				requeued := len(c.queue) == 1 && c.queue[0] == after && after.pending()
				c.mu.Unlock()
				if !requeued {
					t.Fatal("the write behind the failing one is neither answered nor queued again")
				}
				c.commit(ctx, nil, c.take(), nil)
				if err := <-after.done; err != nil {
					t.Fatalf("the requeued write: %v", err)
				}
				if got := listCheckpoints(t, s, testNS, testHub, testGroup); len(got) != 1 || got[0].PartitionID != "1" {
					t.Fatalf("stored %+v, want only partition 1", got)
				}
			})
		}
	}
}

// TestGatherStopsWaitingWhenClosing: drain waits for the last commit's
// writers, but a closing store takes no more writes, so both waits, for
// the first write and for the rest of the batch, must end at once instead
// of running out their patience (here an hour).
func TestGatherStopsWaitingWhenClosing(t *testing.T) {
	c := &committer{closed: true, queue: []*writeOp{{}}}
	done := make(chan struct{})
	admitted := 0
	go func() {
		c.gather(0, gatherPlan{expected: 32, patience: time.Hour}, func(ops []*writeOp) (int, bool) {
			admitted += len(ops)
			return len(ops), true
		})
		(&committer{closed: true}).awaitWrite(time.Hour)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drain kept waiting for writes on a closing store")
	}
	if admitted != 1 {
		t.Fatalf("gather admitted %d writes, want the 1 queued", admitted)
	}
}

// TestCancelledWhileQueuedFailsOnlyItself holds a commit in its fsync so
// that later writes queue for the next one, then ends the contexts of some
// of them: those fail with their context's error and are never written;
// the rest of their batch is committed as if they had never been there.
func TestCancelledWhileQueuedFailsOnlyItself(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	seq := int64(1)
	if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	inSync, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	syncData = func(f *os.File) error {
		once.Do(func() {
			close(inSync)
			<-release
		})
		return fsync.Fdatasync(f)
	}
	t.Cleanup(func() { syncData = fsync.Fdatasync })

	results := make(chan string, 4)
	run := func(name string, call func() error) {
		go func() { results <- fmt.Sprintf("%s: %v", name, call()) }()
	}
	run("held", func() error { return s.SetCheckpoint(ctx, checkpoint("held", nil, &seq), nil) })
	<-inSync
	cpCtx, cancelCp := context.WithCancel(ctx)
	claimCtx, cancelClaim := context.WithCancel(ctx)
	run("cancelled checkpoint", func() error { return s.SetCheckpoint(cpCtx, checkpoint("cancelled", nil, &seq), nil) })
	run("kept", func() error { return s.SetCheckpoint(ctx, checkpoint("kept", nil, &seq), nil) })
	run("cancelled claim", func() error {
		_, err := s.ClaimOwnership(claimCtx, []azeventhubs.Ownership{ownership("cancelled", "me", nil)}, nil)
		return err
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n, _ := s.committer.queued(); n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writes did not queue behind the held commit")
		}
		time.Sleep(time.Millisecond)
	}
	cancelCp()
	cancelClaim()
	got := map[string]bool{}
	for range 2 {
		got[<-results] = true
	}
	for _, name := range []string{"cancelled checkpoint", "cancelled claim"} {
		want := fmt.Sprintf("%s: %s: %v (nothing was written)", name, s.Path(), context.Canceled)
		if !got[want] {
			t.Errorf("results %v, want %q", got, want)
		}
	}
	close(release)
	for range 2 {
		if r := <-results; r != "held: <nil>" && r != "kept: <nil>" {
			t.Errorf("a write beside the cancelled ones: %s", r)
		}
	}
	cps, err := s.ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, cp := range cps {
		stored = append(stored, cp.PartitionID)
	}
	if fmt.Sprint(stored) != "[0 held kept]" {
		t.Errorf("stored checkpoints of partitions %v, want [0 held kept]", stored)
	}
	if owns, err := s.ListOwnership(ctx, testNS, testHub, testGroup, nil); err != nil || len(owns) != 0 {
		t.Errorf("ownerships after the cancelled claim: %+v, %v; want none", owns, err)
	}
}

// TestLeaderGivesUpWaitingForCheck: a caller that finds no commit under way
// commits its own write, and a running Check makes that commit wait. When
// the caller's context ends meanwhile, the call ends, writing nothing, and
// likewise a Check that waits for a commit.
func TestLeaderGivesUpWaitingForCheck(t *testing.T) {
	ctx := context.Background()
	// The store keeps the file, so the calls wait for the commit lock, not
	// for reopening it.
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), &Options{IdleRelease: time.Hour})
	seq := int64(1)
	if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	// Hold what a running Check holds.
	if err := s.committer.lockCommit(ctx); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, call func(context.Context) error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), what) {
				t.Errorf("call waiting for the commit lock: %v, want %v and %q", err, context.DeadlineExceeded, what)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a call waiting for the commit lock did not end with its context")
		}
	}
	wait("nothing was written", func(ctx context.Context) error {
		return s.SetCheckpoint(ctx, checkpoint("0", nil, ptr(int64(2))), nil)
	})
	wait(s.Path(), s.Check)
	s.committer.unlockCommit()
	// Committed after the abandoned write, which went back to the queue
	// before it: once this returns, that one was skipped or committed.
	if err := s.SetCheckpoint(ctx, checkpoint("1", nil, ptr(int64(3))), nil); err != nil {
		t.Fatalf("a write after the lock was released: %v", err)
	}
	cps, err := s.ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || *cps[0].SequenceNumber != 1 || *cps[1].SequenceNumber != 3 {
		t.Errorf("checkpoints after the abandoned write: %+v, want partition 0 at 1 and partition 1 at 3", cps)
	}
}

// TestPanicInWriteLeavesStoreUsable: a panic inside a write transaction
// (bbolt panics on some damaged pages) must fail that batch with
// ErrCorrupt and release bbolt's writer lock, not hang the store.
func TestPanicInWriteLeavesStoreUsable(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), &Options{NoSync: true})
	done := make(chan error, 1)
	go func() {
		done <- s.committer.write(context.Background(), func(*writeTx) (error, error) {
			var m map[string]int
			m["x"] = 1 // a nil map write panics
			return nil, nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("write that panicked returned %v, want ErrCorrupt", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write that panicked hung")
	}
	if err := s.SetCheckpoint(context.Background(), checkpoint("0", nil, ptr(int64(1))), nil); err != nil {
		t.Fatalf("the next write: %v", err)
	}
}

// TestForeignPageSize opens a store written with 16 KiB pages, as on
// macOS on Apple silicon: bbolt's second meta page is 16 KiB in, not at
// this machine's page size.
func TestForeignPageSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 16384})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(initBolt); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for round := range 3 {
		s, err := Open(path, &Options{NoSync: true})
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		err = s.SetCheckpoint(context.Background(), checkpoint("0", nil, ptr(int64(round))), nil)
		s.Close()
		if err != nil {
			t.Fatalf("round %d: SetCheckpoint: %v", round, err)
		}
	}
}

// TestCraftedMetaDoesNotPanic: meta pages with valid checksums but sizes
// chosen to overflow the arithmetic on them must give an error.
func TestCraftedMetaDoesNotPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	openTestStore(t, path, &Options{NoSync: true}).Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := os.Getpagesize()
	for _, at := range []int{0, pageSize} {
		meta := data[at : at+metaEnd]
		freelistPage := binary.NativeEndian.Uint64(meta[metaFreelistAt:])
		binary.NativeEndian.PutUint64(meta[metaHighWaterAt:], 1<<62) // × page size wraps to 0
		sum := fnv.New64a()
		sum.Write(meta[metaOffset:metaChecksumAt])
		binary.NativeEndian.PutUint64(meta[metaChecksumAt:], sum.Sum64())
		if freelistPage != noFreelist {
			page := data[int(freelistPage)*pageSize:]
			binary.NativeEndian.PutUint16(page[10:], 0xFFFF)
			binary.NativeEndian.PutUint64(page[16:], 1<<61) // 8 × count wraps
		}
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err == nil {
		s.Close()
	}
	assertError(t, err, ErrCorrupt, path, "")
}
