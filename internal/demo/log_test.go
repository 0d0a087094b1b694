package demo

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// TestLogReader checks that a reader returns each entry once, and an entry
// whose line is still being written only once it is complete.
func TestLogReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log := newLogger(f)
	log.write(Entry{Kind: KindOpen, Partition: "3"})
	log.write(Entry{Kind: KindEvent, Partition: "3", Seq: 0})
	if _, err := f.WriteString(`{"kind":"event","p":"3",`); err != nil {
		t.Fatal(err)
	}

	r := NewLogReader(path)
	got, err := r.Next()
	if err != nil || len(got) != 2 || got[0].Kind != KindOpen || got[1].Seq != 0 {
		t.Fatalf("first read: %+v, %v; want open and event 0", got, err)
	}
	if _, err := f.WriteString(`"seq":1}` + "\n"); err != nil {
		t.Fatal(err)
	}
	got, err = r.Next()
	if err != nil || len(got) != 1 || got[0].Kind != KindEvent || got[0].Seq != 1 {
		t.Fatalf("second read: %+v, %v; want event 1", got, err)
	}
	if got, err := r.Next(); err != nil || len(got) != 0 {
		t.Fatalf("third read: %+v, %v; want nothing", got, err)
	}
}

// TestSessions checks how a log splits into sessions and what they tell.
func TestSessions(t *testing.T) {
	at := func(ms int) time.Time { return time.UnixMilli(int64(ms)) }
	a := Sessions("a", []Entry{
		{Time: at(1), Kind: KindOpen, Partition: "0"},
		{Time: at(2), Kind: KindOpen, Partition: "1"},
		{Time: at(3), Kind: KindEvent, Partition: "0", Seq: 0},
		{Time: at(4), Kind: KindEvent, Partition: "1", Seq: 5},
		{Time: at(5), Kind: KindEvent, Partition: "0", Seq: 1},
		{Time: at(6), Kind: KindCheckpoint, Partition: "0", Seq: 1},
		{Time: at(9), Kind: KindCheckpointed, Partition: "0", Seq: 1},
		{Time: at(10), Kind: KindEvent, Partition: "0", Seq: 2},
		{Time: at(11), Kind: KindLost, Partition: "1"},
		// the process dies with partition 0 open
	})
	b := Sessions("b", []Entry{
		{Time: at(20), Kind: KindOpen, Partition: "0"},
		{Time: at(21), Kind: KindEvent, Partition: "0", Seq: 2},
		{Time: at(22), Kind: KindEvent, Partition: "0", Seq: 3},
		{Time: at(23), Kind: KindClose, Partition: "0"},
	})
	if len(a) != 2 || len(b) != 1 {
		t.Fatalf("%d and %d sessions, want 2 and 1", len(a), len(b))
	}
	s := a[0]
	if s.Partition != "0" || !slices.Equal(s.Events, []int64{0, 1, 2}) || s.End != "" || s.LastCheckpointed() != 1 ||
		!slices.Equal(s.CheckpointLatencies, []time.Duration{3 * time.Millisecond}) {
		t.Errorf("a's partition 0: %+v", s)
	}
	if s := a[1]; s.End != KindLost || !s.Ended.Equal(at(11)) || s.LastCheckpointed() != -1 {
		t.Errorf("a's partition 1: %+v", s)
	}
	byPartition := ByPartition(append(b, a...))
	if ss := byPartition["0"]; len(ss) != 2 || ss[0].Owner != "a" || Duplicates(ss) != 1 {
		t.Errorf("partition 0: sessions %+v, %d duplicates; want a's then b's, 1 duplicate", ss, Duplicates(ss))
	}
}

// TestBalanced checks the view of a processor's load balancer: expired
// and relinquished ownerships count for nobody.
func TestBalanced(t *testing.T) {
	now := time.Now()
	own := func(p, owner string, age time.Duration) azeventhubs.Ownership {
		return azeventhubs.Ownership{PartitionID: p, OwnerID: owner, LastModifiedTime: now.Add(-age)}
	}
	owners := Owners([]azeventhubs.Ownership{
		own("10", "a", 0), own("2", "a", 0), own("0", "b", 0), own("1", "b", time.Minute), own("3", "", 0),
	}, now, time.Second)
	if !slices.Equal(owners["a"], []string{"2", "10"}) || !slices.Equal(owners["b"], []string{"0"}) || len(owners) != 2 {
		t.Fatalf("owners %v", owners)
	}
	if Balanced(owners, []string{"a", "b"}, 5) {
		t.Error("balanced with partitions free")
	}
	if !Balanced(owners, []string{"a", "b"}, 3) {
		t.Error("2 and 1 of 3 partitions not balanced")
	}
	if Balanced(owners, []string{"a", "b", "c"}, 3) {
		t.Error("balanced without c")
	}
}
