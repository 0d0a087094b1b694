package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/fsync"
)

// Check in a process whose processors keep writing: bbolt's own check, run
// beside a commit, read the freelist as the commit changed it (a fatal
// concurrent map access, which no recover catches), and the page walk
// compared the tree with a newer commit's freelist and reported damage.
func TestCheckWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := int64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				partition := fmt.Sprint(w*8 + int(i%8))
				var err error
				if i%4 == 0 {
					_, err = s.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership(partition, "owner", nil)}, nil)
				} else {
					err = s.SetCheckpoint(ctx, checkpoint(partition, nil, &i), nil)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	checks := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) || checks < 20; checks++ {
		if err := s.Check(ctx); err != nil {
			t.Errorf("Check %d, beside writers: %v", checks, err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check after the writers: %v", err)
	}
}

// A commit whose sync fails is reverted after bbolt has let go of its
// writer lock. Check must see the file either before that commit or after
// its revert, on a DB reopened at the commit before: never the revert
// happening beneath it, which made it report damage that was not there.
func TestCheckBesideAFailedCommit(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	t.Cleanup(func() { syncData = fsync.Fdatasync })
	// Enough records that Check takes a while, for the revert to land in it.
	var claims []azeventhubs.Ownership
	for p := range 5000 {
		claims = append(claims, ownership(fmt.Sprint(p), "owner", nil))
	}
	if _, err := s.ClaimOwnership(ctx, claims, nil); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		seq := int64(round)
		if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
			t.Fatal(err)
		}
		syncing, fail := make(chan struct{}), make(chan struct{})
		syncData = func(*os.File) error {
			syncData = fsync.Fdatasync
			close(syncing)
			<-fail
			return syscall.EIO
		}
		failed := make(chan error)
		go func() { failed <- s.SetCheckpoint(ctx, checkpoint("1", nil, &seq), nil) }()
		<-syncing
		checked := make(chan error)
		go func() { checked <- s.Check(ctx) }()
		time.Sleep(time.Duration(round%5) * 200 * time.Microsecond) // Check under way
		close(fail)
		if err := <-failed; !errors.Is(err, syscall.EIO) {
			t.Fatalf("round %d: SetCheckpoint whose sync failed: %v", round, err)
		}
		if err := <-checked; err != nil {
			t.Fatalf("round %d: Check beside the failed commit: %v", round, err)
		}
	}
}

// TestPutRecordsKeyOrderKeepsTheLastDuplicate: PutRecords puts in key
// order, for speed; of two records with one key in a call, the later must
// still win, also when the group is spelled in another case. Groups made
// by the call get ids on both sides of groupIDShort, where their encoding
// grows a byte, and each lists only its own records.
func TestPutRecordsKeyOrderKeepsTheLastDuplicate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	// Move the groups' sequence near groupIDShort.
	err := s.committer.write(ctx, func(w *writeTx) (error, error) {
		b, err := w.CreateBucketIfNotExists(bucketGroups)
		if err != nil {
			return nil, err
		}
		return nil, b.SetSequence(groupIDShort - 3)
	})
	if err != nil {
		t.Fatal(err)
	}
	record := func(group, partition string, seq int64) Record {
		return Record{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: group, PartitionID: partition, SequenceNumber: &seq, WrittenAt: time.Unix(0, seq)}
	}
	var records []Record
	for g := range 6 {
		group := fmt.Sprint("g", 5-g) // created in reverse name order
		records = append(records, record(group, "1", int64(10*g)), record(group, "0", int64(10*g+1)))
	}
	records = append(records, record("G3", "0", 999)) // the same key as g3/0, later
	if err := s.PutRecords(ctx, records); err != nil {
		t.Fatal(err)
	}
	for g := range 6 {
		group := fmt.Sprint("g", g)
		cps := listCheckpoints(t, s, testNS, testHub, group)
		want0, want1 := int64(10*(5-g)+1), int64(10*(5-g))
		if g == 3 {
			want0 = 999
		}
		if len(cps) != 2 || cps[0].PartitionID != "0" || *cps[0].SequenceNumber != want0 || *cps[1].SequenceNumber != want1 {
			t.Fatalf("group %s: %+v, want partitions 0 (sequence %d) and 1 (sequence %d)", group, cps, want0, want1)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// TestCopyFile copies a file of an older boltstore byte for byte, which
// Backup could not without converting it; waits while a store holds the
// file, which hands it over; gives up with ErrLockTimeout on a lock that
// is never let go; and never replaces an existing file.
func TestCopyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "old.db")
	writeLegacyFile(t, path, 2, legacyRecords(), nil)
	legacy, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "copy.db")
	if err := CopyFile(ctx, path, dest, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, legacy) {
		t.Fatalf("the copy differs from the file (%v)", err)
	}
	if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, legacy) {
		t.Fatalf("CopyFile changed the file (%v)", err)
	}
	if err := CopyFile(ctx, path, dest, nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CopyFile over an existing file: %v, want fs.ErrExist", err)
	}

	// A store that holds the file hands it over.
	current := filepath.Join(dir, "current.db")
	s := openTestStore(t, current, &Options{IdleRelease: time.Hour})
	seq := int64(5)
	if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	if err := CopyFile(ctx, current, filepath.Join(dir, "current-copy.db"), &Options{LockTimeout: 10 * time.Second}); err != nil {
		t.Fatalf("CopyFile of a file a store holds: %v", err)
	}
	copied := openTestStore(t, filepath.Join(dir, "current-copy.db"), nil)
	if cps := listCheckpoints(t, copied, testNS, testHub, testGroup); len(cps) != 1 || *cps[0].SequenceNumber != seq {
		t.Fatalf("the copy's checkpoints: %+v", cps)
	}

	// A lock that is never let go.
	release := relStartHolder(t, path, "flock")
	defer release()
	err = CopyFile(ctx, path, filepath.Join(dir, "never.db"), &Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("CopyFile of a file locked for good: %v, want ErrLockTimeout", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "never.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the timed-out copy left a file: %v", err)
	}
}
