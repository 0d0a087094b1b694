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
)

// TestSalvageLosesOnlyTheDamagedPage zeroes the page holding one consumer
// group's checkpoints: Open refuses the file, and Salvage returns every
// other record exactly, none of that group's checkpoints, and says which
// bucket it lost.
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
	clear(data[at/page*page : (at/page+1)*page])
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
	var want []Record
	for _, r := range all {
		if r.ConsumerGroup != "bravo" || r.Type != RecordCheckpoint {
			want = append(want, r)
		}
	}
	key := func(r Record) string { return relRecordKey(r) }
	slices.SortFunc(got, func(a, b Record) int { return strings.Compare(key(a), key(b)) })
	slices.SortFunc(want, func(a, b Record) int { return strings.Compare(key(a), key(b)) })
	if d := relRecordsDiff(got, want); d != "" {
		t.Errorf("Salvage of the damaged file: %s", d)
	}
	if len(lost) != 1 || !strings.Contains(lost[0].Error(), path) || !strings.Contains(lost[0].Error(), `bravo/c"`) {
		t.Errorf("Salvage reported %v, want one loss naming the file and bravo's checkpoint bucket", lost)
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
