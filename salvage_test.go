package boltstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	bolt "go.etcd.io/bbolt"
)

// TestSalvageLosesOnlyTheDamagedPage zeroes a page of checkpoints: Open
// refuses the file, and Salvage returns every record that was not on it,
// exactly, and says which bucket it lost part of.
func TestSalvageLosesOnlyTheDamagedPage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	groups := []string{"alpha", "bravo", "charlie"}
	for _, g := range groups {
		for p := range 40 {
			offset := "offset-of-" + g
			seq := int64(p)
			cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: g, PartitionID: strconv.Itoa(p), Offset: &offset, SequenceNumber: &seq}
			if err := s.SetCheckpoint(ctx, cp, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: g, PartitionID: "0", OwnerID: "me"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Records(ctx, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	if got, lost, err := Salvage(ctx, path); err != nil || len(lost) > 0 || len(got) != len(all) {
		t.Fatalf("Salvage of a healthy file: %d of %d records, lost %v, err %v", len(got), len(all), lost, err)
	}
	s.Close()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	at := bytes.Index(data, []byte("offset-of-bravo"))
	if at < 0 {
		t.Fatal("bravo's checkpoints are not in the file")
	}
	damaged := data[at/page*page : (at/page+1)*page]
	// The records on that page: it holds part of the checkpoint bucket,
	// from bravo and perhaps from a neighbouring group. Each record's value
	// is unique, as it holds the time it was written.
	var want []Record
	onPage := 0
	enc := newRecordEncoder()
	for _, r := range all {
		g := newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup)
		value := enc.checkpoint(g.checksumPrefix(kindCheckpoint), appendPartitionKey(nil, r.PartitionID), checkpointRecord{offset: r.Offset, sequence: r.SequenceNumber, writtenAt: r.WrittenAt.UnixNano()})
		if r.Type == RecordCheckpoint && bytes.Contains(damaged, value) {
			onPage++
			continue
		}
		want = append(want, r)
	}
	if onPage == 0 {
		t.Fatal("found no record key on the page that holds bravo's checkpoints")
	}
	clear(damaged)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of the damaged file: %v, want ErrCorrupt", err)
	}

	got, lost, err := Salvage(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	key := func(r Record) string { return relRecordKey(r) }
	slices.SortFunc(got, func(a, b Record) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(want, func(a, b Record) int { return strings.Compare(key(a), key(b)) })
	if d := relRecordsDiff(got, want); d != "" {
		t.Errorf("Salvage of the damaged file (%d records on the page): %s", onPage, d)
	}
	if len(lost) != 1 || !strings.Contains(lost[0].Error(), path) || !strings.Contains(lost[0].Error(), `bucket "c"`) {
		t.Errorf("Salvage reported %v, want one loss naming the file and the checkpoint bucket", lost)
	}
}

// TestSalvageFindsTheGroupOfADamagedID changes a group's id in the groups
// bucket: no group has the id its records carry any more, but their
// checksums name their group, so Salvage must return every record.
func TestSalvageFindsTheGroupOfADamagedID(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	for _, group := range []string{"alpha", "bravo"} {
		for p := range 3 {
			seq := int64(p)
			cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: group, PartitionID: strconv.Itoa(p), SequenceNumber: &seq}
			if err := s.SetCheckpoint(ctx, cp, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := s.Records(ctx, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	err = relUpdateAsStore(path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).Put(newGroupKey(testNS, testHub, "alpha").key, []byte{0x05})
	})
	if err != nil {
		t.Fatal(err)
	}
	got, lost, err := Salvage(ctx, path)
	if err != nil || len(lost) > 0 {
		t.Fatalf("Salvage: %v, lost %v", err, lost)
	}
	key := func(r Record) string { return relRecordKey(r) }
	slices.SortFunc(got, func(a, b Record) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(all, func(a, b Record) int { return strings.Compare(key(a), key(b)) })
	if d := relRecordsDiff(got, all); d != "" {
		t.Fatalf("Salvage: %s", d)
	}
}

func TestSalvageRefusesForeignFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "foreign")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a store "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Salvage(context.Background(), path); !errors.Is(err, ErrUnsupportedFormat) || !strings.Contains(err.Error(), path) {
		t.Errorf("Salvage of a foreign file: %v, want ErrUnsupportedFormat naming it", err)
	}
	if _, _, err := Salvage(context.Background(), path+".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Salvage of a missing file: %v, want os.ErrNotExist", err)
	}
}

// TestEmptyFileIsDamagedToOpenAndSalvage: a store file cut to nothing is
// damage to Open, which says how to start afresh if it was made empty on
// purpose, and leaves it empty; Salvage says the same rather than calling
// it a foreign file.
func TestEmptyFileIsDamagedToOpenAndSalvage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err == nil {
		s.Close()
	}
	assertError(t, err, ErrCorrupt, path, "if you created it empty, remove it")
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("after Open the empty file is %v, %v; want it left empty", fi, err)
	}
	_, _, err = Salvage(context.Background(), path)
	assertError(t, err, ErrCorrupt, path, "the file is empty")
}
