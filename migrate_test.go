package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// legacyRecords are the records of the nested-layout files below: two
// groups, numeric and other partition ids, both kinds, in the order
// Records returns them.
func legacyRecords() []Record {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	offset := "4096"
	var records []Record
	for _, group := range []string{"$default", "other"} {
		for _, typ := range []RecordType{RecordOwnership, RecordCheckpoint} {
			for _, id := range []string{"0", "2", "10", "x"} {
				r := Record{Type: typ, Namespace: "ns.servicebus.windows.net", EventHub: "hub", ConsumerGroup: group, PartitionID: id}
				if typ == RecordOwnership {
					r.OwnerID, r.ETag, r.LastModifiedTime = "owner-"+id, "etag-"+id, at
				} else {
					seq := int64(len(id) + len(group))
					r.Offset, r.SequenceNumber, r.WrittenAt = &offset, &seq, at
				}
				records = append(records, r)
			}
		}
	}
	return records
}

// writeLegacyFile writes a store file as boltstore format versions 1 and
// 2 laid it out: records nested in data / namespace / hub / group / kind.
// A version 2 file also carries the commit record those versions wrote.
// damage, if not nil, changes the nested buckets before the commit.
func writeLegacyFile(t testing.TB, path string, version byte, records []Record, damage func(data *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc := newRecordEncoder()
	err = db.Update(func(tx *bolt.Tx) error {
		marker, err := tx.CreateBucket(bucketMarker)
		if err != nil {
			return err
		}
		if err := marker.Put(keyFormat, []byte{1}); err != nil {
			return err
		}
		data, err := tx.CreateBucket(bucketData)
		if err != nil {
			return err
		}
		for _, r := range records {
			kind, _ := r.Type.kind()
			g := newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup)
			b := data
			for _, name := range [][]byte{g.namespace, g.hub, g.group, kind.bucket()} {
				if b, err = b.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			key := appendPartitionKey(nil, r.PartitionID)
			var value []byte
			if kind == kindOwnership {
				value = enc.ownership(g.checksumPrefix(kind), key, ownershipRecord{ownerID: r.OwnerID, etag: r.ETag, modified: r.LastModifiedTime.UnixNano()})
			} else {
				value = enc.checkpoint(g.checksumPrefix(kind), key, checkpointRecord{offset: r.Offset, sequence: r.SequenceNumber, writtenAt: r.WrittenAt.UnixNano()})
			}
			if err := b.Put(key, value); err != nil {
				return err
			}
		}
		if damage != nil {
			return damage(data)
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if version == 2 {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, relSetFormat(data, 2), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// fileFormat reads the format marker and top-level buckets of the file at
// path with bbolt alone.
func fileFormat(t *testing.T, path string) (version byte, buckets []string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		version = tx.Bucket(bucketMarker).Get(keyFormat)[0]
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			buckets = append(buckets, string(name))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return version, buckets
}

// assertFileHolds fails t unless the file at path holds data: a refused
// conversion must leave the file as it was.
func assertFileHolds(t *testing.T, path string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the refused conversion changed the file")
	}
}

// TestNestedLayoutIsConvertedAtOpen opens files of format versions 1 and 2,
// whose records lie in nested buckets: the store converts them to the flat
// layout in one commit, keeps every record as it was, and older boltstores,
// which read only the nested layout, refuse the converted file by its
// format version.
func TestNestedLayoutIsConvertedAtOpen(t *testing.T) {
	for _, version := range []byte{1, 2} {
		t.Run(fmt.Sprint("version=", version), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "cp.db")
			want := legacyRecords()
			writeLegacyFile(t, path, version, want, nil)

			// Converting is a write: a read-only store refuses the file
			// and leaves it as it was, and so does a store told to keep
			// the format.
			legacy, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, &Options{ReadOnly: true}); !errors.Is(err, ErrReadOnly) || !errors.Is(err, ErrOlderFormat) {
				t.Fatalf("read-only Open of format %d: %v, want ErrReadOnly and ErrOlderFormat", version, err)
			}
			if _, err := Open(path, &Options{KeepOlderFormat: true}); !errors.Is(err, ErrOlderFormat) || errors.Is(err, ErrReadOnly) {
				t.Fatalf("Open of format %d with KeepOlderFormat: %v, want ErrOlderFormat alone", version, err)
			}
			if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, legacy) {
				t.Fatalf("the read-only Open changed the file (%v)", err)
			}

			s := openTestStore(t, path, nil)
			if from, ok := s.ConvertedFrom(); !ok || from != int(version) {
				t.Errorf("ConvertedFrom after opening format %d: %d, %v", version, from, ok)
			}
			got, err := s.Records(ctx, Scope{})
			if err != nil {
				t.Fatal(err)
			}
			if d := relRecordsDiff(got, want); d != "" {
				t.Fatalf("records after the conversion: %s", d)
			}
			cps := listCheckpoints(t, s, "NS.servicebus.windows.net", "Hub", "Other")
			if len(cps) != 4 || cps[0].PartitionID != "0" || cps[1].PartitionID != "2" || cps[2].PartitionID != "10" || cps[3].PartitionID != "x" {
				t.Fatalf("ListCheckpoints after the conversion: %+v, want partitions 0, 2, 10, x", cps)
			}
			if err := s.Check(ctx); err != nil {
				t.Fatalf("Check after the conversion: %v", err)
			}
			s.Close()
			v, buckets := fileFormat(t, path)
			if v != FormatVersion || fmt.Sprint(buckets) != "[boltstore c g o]" {
				t.Fatalf("after the conversion: format %d, buckets %v; want %d, [boltstore c g o]", v, buckets, FormatVersion)
			}
			s = openTestStore(t, path, nil)
			if from, ok := s.ConvertedFrom(); ok {
				t.Errorf("ConvertedFrom after opening the converted file again: %d, want none", from)
			}
			seq := int64(99)
			if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
				t.Fatalf("SetCheckpoint on the converted file: %v", err)
			}
		})
	}
}

// TestDamagedNestedLayoutIsRefused: a plain value where a bucket of the
// nested layout belongs hides the records below it, so the conversion
// refuses the file as damaged, naming it, and leaves it as it was for
// Salvage, which still reads the nested layout.
func TestDamagedNestedLayoutIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	records := legacyRecords()
	writeLegacyFile(t, path, 2, records, func(data *bolt.Bucket) error {
		return data.Bucket([]byte("ns.servicebus.windows.net")).Bucket([]byte("hub")).Put([]byte("lost-group"), []byte("not a bucket"))
	})
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err == nil {
		s.Close()
		t.Fatal("Open converted a nested layout with a damaged bucket flag")
	}
	if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(path)) || !bytes.Contains([]byte(err.Error()), []byte("lost-group")) {
		t.Fatalf("Open: %v; want ErrCorrupt naming the file and the damaged bucket", err)
	}
	assertFileHolds(t, path, before)
	salvaged, lost, err := Salvage(context.Background(), path)
	if err != nil || len(lost) != 0 || len(salvaged) != len(records) {
		t.Fatalf("Salvage of the nested layout: %d records, lost %v, err %v; want %d, none lost", len(salvaged), lost, err, len(records))
	}
}

// TestDamagedNestedFileIsNotConverted damages files of format 2 as rot
// would: a branch page that points at itself, which bbolt would follow
// forever, and a record whose checksum fails. Open must refuse each as
// ErrCorrupt without converting it, so the file stays as it was for
// Salvage, a backup, or the boltstore that wrote it.
func TestDamagedNestedFileIsNotConverted(t *testing.T) {
	const pageSize = 4096
	var many []Record
	for p := range 600 {
		seq := int64(p)
		many = append(many, Record{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: testGroup, PartitionID: fmt.Sprint(p), SequenceNumber: &seq, WrittenAt: time.Unix(0, int64(p))})
	}
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string, data []byte)
	}{
		{"branch page points at itself", func(t *testing.T, path string, data []byte) {
			reachable := reachablePages(t, path)
			for id := 2; (id+1)*pageSize <= len(data); id++ {
				if reachable[uint64(id)] && binary.NativeEndian.Uint16(data[id*pageSize+8:]) == branchPageFlag {
					binary.NativeEndian.PutUint64(data[id*pageSize+pageHeaderSize+8:], uint64(id))
					return
				}
			}
			t.Fatal("the nested file has no branch page")
		}},
		{"record checksum", func(t *testing.T, path string, data []byte) {
			enc := newRecordEncoder()
			g := newGroupKey(testNS, testHub, testGroup)
			r := many[300]
			value := enc.checkpoint(g.checksumPrefix(kindCheckpoint), appendPartitionKey(nil, r.PartitionID), checkpointRecord{sequence: r.SequenceNumber, writtenAt: r.WrittenAt.UnixNano()})
			at := bytes.Index(data, value)
			if at < 0 {
				t.Fatal("record 300 is not in the file")
			}
			data[at+len(value)-1] ^= 0x01
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.db")
			writeLegacyFile(t, path, 2, many, nil)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c.damage(t, path, data)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			opened := make(chan error, 1)
			go func() {
				s, err := Open(path, nil)
				if err == nil {
					s.Close()
				}
				opened <- err
			}()
			select {
			case err = <-opened:
			case <-time.After(time.Minute):
				t.Fatal("Open of the damaged nested file did not return within a minute")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: %v; want ErrCorrupt naming the file", err)
			}
			assertFileHolds(t, path, data)
		})
	}
}

// BenchmarkConvertNestedLayout is Open of a format 2 file of 2,000 groups
// of 32 ownerships and 32 checkpoints, which converts it: the records go
// into the flat buckets in key order, so the conversion costs in
// proportion to the file's size.
func BenchmarkConvertNestedLayout(b *testing.B) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	offset := "4096"
	var records []Record
	for g := range 2000 {
		for p := range 32 {
			seq := int64(p)
			group, id := fmt.Sprintf("group-%04d", g), fmt.Sprint(p)
			records = append(records,
				Record{Type: RecordOwnership, Namespace: testNS, EventHub: testHub, ConsumerGroup: group, PartitionID: id, OwnerID: "owner", ETag: "etag", LastModifiedTime: at},
				Record{Type: RecordCheckpoint, Namespace: testNS, EventHub: testHub, ConsumerGroup: group, PartitionID: id, Offset: &offset, SequenceNumber: &seq, WrittenAt: at})
		}
	}
	legacy := filepath.Join(b.TempDir(), "legacy.db")
	writeLegacyFile(b, legacy, 2, records, nil)
	data, err := os.ReadFile(legacy)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "cp.db")
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, err := Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
