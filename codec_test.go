package boltstore

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRecordRoundTrip(t *testing.T) {
	g := newGroupKey("NS", "hub", "$Default")
	key := appendPartitionKey(nil, "12")
	enc := newRecordEncoder()
	own := enc.ownership(g.checksumPrefix(kindOwnership), key, ownershipRecord{ownerID: "owner", etag: "e-1", modified: -5})
	owner, etag, modified, err := decodeOwnership(g.checksumPrefix(kindOwnership), key, own)
	if err != nil || string(owner) != "owner" || string(etag) != "e-1" || modified != -5 {
		t.Fatalf("ownership: %q %q %d %v", owner, etag, modified, err)
	}
	for _, rec := range []checkpointRecord{
		{offset: ptr(""), writtenAt: 1},
		{sequence: ptr(int64(0)), writtenAt: 2},
		{offset: ptr("123"), sequence: ptr(int64(-1 << 63)), writtenAt: 1 << 62},
	} {
		value := enc.checkpoint(g.checksumPrefix(kindCheckpoint), key, rec)
		offset, hasOffset, seq, hasSeq, written, err := decodeCheckpoint(g.checksumPrefix(kindCheckpoint), key, value)
		if err != nil || hasOffset != (rec.offset != nil) || hasSeq != (rec.sequence != nil) || written != rec.writtenAt ||
			(hasOffset && string(offset) != *rec.offset) || (hasSeq && seq != *rec.sequence) {
			t.Fatalf("checkpoint %+v: %q %v %d %v %d %v", rec, offset, hasOffset, seq, hasSeq, written, err)
		}
	}
}

// TestChecksumCoversKeyAndGroup shows a record moved to another partition,
// group or kind fails its checksum instead of being read as data.
func TestChecksumCoversKeyAndGroup(t *testing.T) {
	g := newGroupKey("ns", "hub", "g")
	key := appendPartitionKey(nil, "1")
	value := newRecordEncoder().ownership(g.checksumPrefix(kindOwnership), key, ownershipRecord{ownerID: "o", etag: "e", modified: 1})
	moved := []struct {
		name   string
		prefix uint32
		key    []byte
	}{
		{"other partition", g.checksumPrefix(kindOwnership), appendPartitionKey(nil, "2")},
		{"other group", newGroupKey("ns", "hub", "h").checksumPrefix(kindOwnership), key},
		{"other hub", newGroupKey("ns", "hubg", "").checksumPrefix(kindOwnership), key},
		{"other kind", g.checksumPrefix(kindCheckpoint), key},
	}
	for _, m := range moved {
		if _, _, _, err := decodeOwnership(m.prefix, m.key, value); err == nil {
			t.Errorf("%s: a moved record decoded without error", m.name)
		}
	}
	for i := range value {
		damaged := bytes.Clone(value)
		damaged[i] ^= 0x40
		if _, _, _, err := decodeOwnership(g.checksumPrefix(kindOwnership), key, damaged); err == nil {
			t.Errorf("flipping a bit of byte %d went unnoticed", i)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary bytes, with a valid checksum so the
// decoder itself is exercised, to both decoders. They must not panic, and
// whatever they accept must agree with msgpack's own decoder.
func FuzzDecodeRecord(f *testing.F) {
	enc := newRecordEncoder()
	f.Add(enc.ownership(0, nil, ownershipRecord{ownerID: "owner", etag: "etag", modified: 1})[checksumLen:])
	f.Add(enc.checkpoint(0, nil, checkpointRecord{offset: ptr("1"), sequence: ptr(int64(300)), writtenAt: -1})[checksumLen:])
	f.Add(enc.checkpoint(0, nil, checkpointRecord{sequence: ptr(int64(1 << 40))})[checksumLen:])
	f.Add([]byte{0x94, 0x01, 0xc0, 0xc0, 0x00})
	f.Add([]byte{0x94, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		value := make([]byte, checksumLen, checksumLen+len(body))
		value = append(value, body...)
		binary.BigEndian.PutUint32(value, recordChecksum(0, nil, body))
		// msgpack's decoder runs only on what ours accepted: on arbitrary
		// input it may allocate whatever a length prefix claims.
		var fields []any
		var msgErr error
		unmarshal := func() { msgErr = msgpack.Unmarshal(body, &fields) }
		if owner, etag, modified, err := decodeOwnership(0, nil, value); err == nil {
			unmarshal()
			if msgErr != nil || len(fields) != recordFields || !sameString(fields[1], owner) || !sameString(fields[2], etag) || !sameInt(fields[3], modified) {
				t.Fatalf("ownership decoded as %q %q %d; msgpack says %v %v", owner, etag, modified, fields, msgErr)
			}
		}
		if offset, hasOffset, seq, hasSeq, written, err := decodeCheckpoint(0, nil, value); err == nil {
			unmarshal()
			if msgErr != nil || len(fields) != recordFields || !sameInt(fields[3], written) ||
				hasOffset != (fields[1] != nil) || (hasOffset && !sameString(fields[1], offset)) ||
				hasSeq != (fields[2] != nil) || (hasSeq && !sameInt(fields[2], seq)) {
				t.Fatalf("checkpoint decoded as %q/%v %d/%v %d; msgpack says %v %v", offset, hasOffset, seq, hasSeq, written, fields, msgErr)
			}
		}
	})
}

func sameString(v any, b []byte) bool {
	switch s := v.(type) {
	case string:
		return s == string(b)
	case []byte:
		return bytes.Equal(s, b)
	}
	return false
}

func sameInt(v any, n int64) bool {
	switch x := v.(type) {
	case int8:
		return int64(x) == n
	case int16:
		return int64(x) == n
	case int32:
		return int64(x) == n
	case int64:
		return x == n
	case uint8:
		return int64(x) == n
	case uint16:
		return int64(x) == n
	case uint32:
		return int64(x) == n
	case uint64:
		return n >= 0 && uint64(n) == x
	}
	return false
}
