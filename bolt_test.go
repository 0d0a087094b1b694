package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBatchBucketCacheSurvivesDelete commits, in one batch, a write that
// caches its group's bucket, the deletion of that group, and a second
// write to it: the second must land in the new group, not in the deleted
// bucket the cache remembered.
func TestBatchBucketCacheSurvivesDelete(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	g := newGroupKey(testNS, testHub, testGroup)
	put := func(seq int64) applyFunc {
		return func(w *writeTx) (error, error) {
			b, err := w.recordBucket(g, kindCheckpoint)
			if err != nil {
				return nil, err
			}
			key := appendPartitionKey(nil, "0")
			return nil, b.Put(key, w.enc.checkpoint(g.checksumPrefix(kindCheckpoint), key, checkpointRecord{sequence: &seq}))
		}
	}
	deleteNamespace := func(w *writeTx) (error, error) {
		w.forgetBuckets()
		return nil, w.Bucket(bucketData).DeleteBucket(g.namespace)
	}
	var ops []*writeOp
	for _, apply := range []applyFunc{put(1), deleteNamespace, put(2)} {
		ops = append(ops, &writeOp{apply: apply, deadline: time.Now().Add(time.Second), done: make(chan error, 1)})
	}
	s.committer.commit(context.Background(), ops)
	for _, op := range ops {
		if err := <-op.done; err != nil {
			t.Fatal(err)
		}
	}
	got := listCheckpoints(t, s, testNS, testHub, testGroup)
	if len(got) != 1 || *got[0].SequenceNumber != 2 {
		t.Fatalf("after put, delete, put in one batch: %+v, want sequence 2", got)
	}
}

// TestGatherStopsWaitingWhenClosing: drain waits for the last commit's
// writers, but a closing store takes no more writes, so the wait must end
// at once instead of running out its patience (here an hour).
func TestGatherStopsWaitingWhenClosing(t *testing.T) {
	c := &committer{closed: true, queue: []*writeOp{{}}}
	done := make(chan struct{})
	go func() {
		c.gather(32, time.Hour)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("gather kept waiting for writes on a closing store")
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
