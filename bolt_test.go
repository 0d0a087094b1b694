package boltstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"
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
