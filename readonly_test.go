package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/filelock"
	bolt "go.etcd.io/bbolt"
)

// TestReadOnlyStoreReadsAndWritesNothing: a store opened ReadOnly reads
// what the file holds and checks it, every write fails with ErrReadOnly
// naming the file, and the file is not changed by a byte.
func TestReadOnlyStoreReadsAndWritesNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	w := openTestStore(t, path, nil)
	seq := int64(42)
	if _, err := w.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership("0", "processor", nil)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	r := openTestStore(t, path, &Options{ReadOnly: true})
	owned, err := r.ListOwnership(ctx, testNS, testHub, testGroup, nil)
	if err != nil || len(owned) != 1 || owned[0].OwnerID != "processor" {
		t.Fatalf("ListOwnership: %+v, %v", owned, err)
	}
	if got := listCheckpoints(t, r, testNS, testHub, testGroup); len(got) != 1 || *got[0].SequenceNumber != seq {
		t.Fatalf("ListCheckpoints: %+v", got)
	}
	if err := r.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	writes := map[string]func() error{
		"SetCheckpoint": func() error { return r.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil) },
		"ClaimOwnership": func() error {
			_, err := r.ClaimOwnership(ctx, owned, nil)
			return err
		},
		"PutRecords": func() error {
			return r.PutRecords(ctx, []Record{{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup, PartitionID: "1", SequenceNumber: &seq, WrittenAt: time.Now()}})
		},
		"DeleteScope": func() error {
			_, err := r.DeleteScope(ctx, Scope{Namespace: testNS})
			return err
		},
	}
	for name, write := range writes {
		if err := write(); !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly naming the file", name, err)
		}
	}
	if err := r.Backup(ctx, filepath.Join(t.TempDir(), "backup.db")); err != nil {
		t.Errorf("Backup of a read-only store: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("a read-only store changed the file")
	}

	missing := filepath.Join(t.TempDir(), "missing.db")
	if _, err := Open(missing, &Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Error("read-only Open created the file")
	}
}

// TestReadOnlyStoreTakesTurnsWithAWriter: a read-only store shares the
// file with a store that writes it, each handing the file over when the
// other waits, and it reads every commit the writer made before.
func TestReadOnlyStoreTakesTurnsWithAWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	// Both would keep the file for an hour if nobody asked for it.
	held := &Options{IdleRelease: time.Hour, LockTimeout: 10 * time.Second}
	w := openTestStore(t, path, held)
	readOnly := *held
	readOnly.ReadOnly = true
	r := openTestStore(t, path, &readOnly)
	r2 := openTestStore(t, path, &readOnly)
	for i := range int64(20) {
		if err := w.SetCheckpoint(ctx, checkpoint("0", nil, &i), nil); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		for _, s := range []*Store{r, r2} {
			got := listCheckpoints(t, s, testNS, testHub, testGroup)
			if len(got) != 1 || *got[0].SequenceNumber != i {
				t.Fatalf("after write %d a read-only store lists %+v", i, got)
			}
		}
	}
}

// holdInRead starts a read on s that lasts until end is called, or the
// test ends, and returns once the read holds the file.
func holdInRead(t *testing.T, s *Store) (end func()) {
	inRead, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	end = func() { once.Do(func() { close(release) }) }
	t.Cleanup(end) // registered after the store's, so it runs before s closes
	go func() {
		_ = s.view(context.Background(), func(*bolt.Tx) error {
			close(inRead)
			<-release
			return nil
		})
	}()
	<-inRead
	return end
}

// TestReadOnlyStoresReadAtOnce: a read-only store reads while another is
// in the middle of a read, rather than waiting for it to hand the file
// over: both hold the flock shared.
func TestReadOnlyStoresReadAtOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	seq := int64(1)
	w := openTestStore(t, path, nil)
	if err := w.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	opts := &Options{ReadOnly: true, LockTimeout: time.Minute}
	r1, r2 := openTestStore(t, path, opts), openTestStore(t, path, opts)
	holdInRead(t, r1) // until the test ends
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := r2.ListCheckpoints(readCtx, testNS, testHub, testGroup, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("a read beside another store's read: %+v, %v; want it to share the file", got, err)
	}
}

// TestWaitingWriterGoesBeforeReaders: while a writer waits for the file,
// a read-only store does not take the shared flock beside one that holds
// it, or readers that take turns would keep the writer out for good. The
// read waits for the write, and sees it.
func TestWaitingWriterGoesBeforeReaders(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	held := &Options{IdleRelease: time.Hour, LockTimeout: 10 * time.Second}
	w := openTestStore(t, path, held)
	readOnly := *held
	readOnly.ReadOnly = true
	r1, r2 := openTestStore(t, path, &readOnly), openTestStore(t, path, &readOnly)
	end := holdInRead(t, r1)
	seq := int64(5)
	written := make(chan error, 1)
	go func() { written <- w.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil) }()
	// Once the writer waits, r1 ends its read and hands the file over.
	probe, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for waiting := false; !waiting; {
		if waiting, err = filelock.WriterWaiting(probe); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	read := make(chan []azeventhubs.Checkpoint, 1)
	go func() {
		got, err := r2.ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
		if err != nil {
			t.Error(err)
		}
		read <- got
	}()
	time.Sleep(20 * time.Millisecond) // r2 would share r1's flock by now
	end()
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if got := <-read; len(got) != 1 || *got[0].SequenceNumber != seq {
		t.Fatalf("the read beside the waiting writer gave %+v, want the write it waited for", got)
	}
}

// TestReadOnlyCheckAlongsideReads runs Check on a read-only store while
// other calls read, on a DB the store has just reopened: bbolt must not
// load the freelist in Check, unlocked, while those reads use it (the race
// detector tells).
func TestReadOnlyCheckAlongsideReads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	w := openTestStore(t, path, nil)
	if _, err := w.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership("0", "processor", nil)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openTestStore(t, path, &Options{ReadOnly: true, IdleRelease: time.Millisecond})
	for range 10 {
		time.Sleep(5 * time.Millisecond) // the store lets go of the file
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 20 {
					if owned, err := r.ListOwnership(ctx, testNS, testHub, testGroup, nil); err != nil || len(owned) != 1 {
						t.Errorf("ListOwnership: %+v, %v", owned, err)
						return
					}
				}
			})
		}
		if err := r.Check(ctx); err != nil {
			t.Errorf("Check: %v", err)
		}
		wg.Wait()
	}
}

// TestReaderAmongBusyWriters: two writers that keep writing take turns on
// the file, so one of them always waits; a reader, which lets waiting
// writers go first, must still get in, rather than time out.
func TestReaderAmongBusyWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	writers := []*Store{openTestStore(t, path, nil), openTestStore(t, path, nil)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Go(func() {
			for seq := int64(0); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := w.SetCheckpoint(ctx, checkpoint(fmt.Sprint(i), nil, &seq), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	time.Sleep(50 * time.Millisecond) // both writing
	r, err := Open(path, &Options{ReadOnly: true, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("a read-only Open among busy writers: %v", err)
	}
	defer r.Close()
	if _, err := r.ListCheckpoints(ctx, testNS, testHub, testGroup, nil); err != nil {
		t.Fatalf("a read among busy writers: %v", err)
	}
}
