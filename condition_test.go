package boltstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// TestEditsOnConditionFailWhenOwnershipChanged: an edit made on the
// ownerships a tool read fails with ErrChanged, writing nothing, when a
// processor claimed, renewed or released one of its partitions since; it
// is made when nothing changed, and changes to partitions it does not name
// do not stop it. DeleteScope is decided on the whole scope as read, and a
// partition claimed in it since, which the read did not see, stops it too.
func TestEditsOnConditionFailWhenOwnershipChanged(t *testing.T) {
	ctx := context.Background()
	seq := int64(7)
	renew := func(t *testing.T, s *Store, partition string) {
		t.Helper()
		owned, err := s.ListOwnership(ctx, testNS, testHub, testGroup, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range owned {
			if o.PartitionID == partition {
				if won, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{o}, nil); err != nil || len(won) != 1 {
					t.Fatalf("renewing partition %s: %v, %d won", partition, err, len(won))
				}
				return
			}
		}
		t.Fatalf("partition %s has no owner to renew", partition)
	}
	claim := func(t *testing.T, s *Store, partition string) {
		t.Helper()
		if won, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership(partition, "processor", nil)}, nil); err != nil || len(won) != 1 {
			t.Fatalf("claiming partition %s: %v, %d won", partition, err, len(won))
		}
	}
	deleteOwnership := func(t *testing.T, s *Store, partition string) {
		t.Helper()
		if _, err := s.DeleteRecords(ctx, []Record{{Type: RecordOwnership, Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup, PartitionID: partition}}); err != nil {
			t.Fatal(err)
		}
	}
	edits := map[string]func(s *Store, partition string, u Unchanged) error{
		"PutRecords": func(s *Store, partition string, u Unchanged) error {
			offset := "1234"
			return s.PutRecords(ctx, []Record{{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup, PartitionID: partition, Offset: &offset, WrittenAt: time.Now()}}, u)
		},
		"DeleteRecords": func(s *Store, partition string, u Unchanged) error {
			_, err := s.DeleteRecords(ctx, []Record{{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup, PartitionID: partition}}, u)
			return err
		},
		"DeleteScope": func(s *Store, _ string, u Unchanged) error {
			_, err := s.DeleteScope(ctx, Scope{Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup}, u)
			return err
		},
	}
	for name, edit := range edits {
		for _, change := range []struct {
			name      string
			partition string // the one the edit is decided on
			touched   string // the one the change touches
			apply     func(t *testing.T, s *Store)
			// changed: for an edit of the partition; scopeChanged: for
			// DeleteScope, decided on every partition read
			changed, scopeChanged bool
		}{
			{"nothing", "0", "", func(*testing.T, *Store) {}, false, false},
			{"renewed", "0", "0", func(t *testing.T, s *Store) { renew(t, s, "0") }, true, true},
			{"claimed", "1", "1", func(t *testing.T, s *Store) { claim(t, s, "1") }, true, true},
			{"ownership deleted", "0", "0", func(t *testing.T, s *Store) { deleteOwnership(t, s, "0") }, true, true},
			{"other partition renewed", "1", "0", func(t *testing.T, s *Store) { renew(t, s, "0") }, false, true},
			{"unseen partition claimed", "0", "2", func(t *testing.T, s *Store) { claim(t, s, "2") }, false, true},
		} {
			t.Run(name+"/"+change.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "cp.db")
				s := openTestStore(t, path, nil)
				claim(t, s, "0")
				for _, p := range []string{"0", "1"} {
					if err := s.SetCheckpoint(ctx, checkpoint(p, nil, &seq), nil); err != nil {
						t.Fatal(err)
					}
				}
				read, err := s.Records(ctx, Scope{})
				if err != nil {
					t.Fatal(err)
				}
				decidedOn, changed := read, change.scopeChanged
				if name != "DeleteScope" {
					decidedOn, changed = nil, change.changed
					for _, r := range read {
						if r.PartitionID == change.partition {
							decidedOn = append(decidedOn, r)
						}
					}
				}
				change.apply(t, s)
				before, err := s.Records(ctx, Scope{})
				if err != nil {
					t.Fatal(err)
				}
				err = edit(s, change.partition, OwnershipsAsRead(decidedOn))
				after, readErr := s.Records(ctx, Scope{})
				if readErr != nil {
					t.Fatal(readErr)
				}
				if !changed {
					if err != nil {
						t.Fatalf("edit with its partition unchanged: %v", err)
					}
					if reflect.DeepEqual(after, before) {
						t.Fatalf("the edit changed nothing: %+v", after)
					}
					return
				}
				if !errors.Is(err, ErrChanged) {
					t.Fatalf("edit after the partition changed owner: %v, want ErrChanged", err)
				}
				for _, want := range []string{path, `partition "` + change.touched + `"`} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %s", err, want)
					}
				}
				if !reflect.DeepEqual(after, before) {
					t.Fatalf("a refused edit wrote:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}
	}
}

// TestConditionOnDamagedOwnershipIsCorrupt: a condition that cannot read an
// ownership record does not guess either way: the edit fails with
// ErrCorrupt.
func TestConditionOnDamagedOwnershipIsCorrupt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership("0", "processor", nil)}, nil); err != nil {
		t.Fatal(err)
	}
	read, err := s.Records(ctx, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	// Damaged while the store has the file open, which only the record's
	// checksum can tell: every copy of the owner id, in the file's pages,
	// gets one byte changed.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	owner, found := []byte("processor"), 0
	for at := 0; ; at++ {
		i := bytes.Index(data[at:], owner)
		if i < 0 {
			break
		}
		at += i
		if _, err := f.WriteAt([]byte("P"), int64(at)); err != nil {
			t.Fatal(err)
		}
		found++
	}
	if found == 0 {
		t.Fatal("the owner id is nowhere in the file")
	}
	offset := "1"
	put := []Record{{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup, PartitionID: "0", Offset: &offset, WrittenAt: time.Now()}}
	if err := s.PutRecords(ctx, put, OwnershipsAsRead(read)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `partition "0"`) {
		t.Fatalf("edit on a damaged ownership: %v, want ErrCorrupt naming the partition", err)
	}
}
