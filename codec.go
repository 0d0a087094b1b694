package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Record encoding. A stored value is
//
//	crc32c (4 bytes, big endian) | msgpack array
//
// The checksum covers the record's group and kind (groupKey.checksumPrefix),
// its partition key and the msgpack bytes, so damage anywhere in a record,
// or a record under the wrong key, is detected. The array is
//
//	ownership:  [recordVersion, ownerID string, etag string, lastModified int]
//	checkpoint: [recordVersion, offset string|nil, sequenceNumber int|nil, writtenAt int]
//
// with times in Unix nanoseconds, UTC. Encoding uses msgpack's encoder; the
// list path decodes by hand, because it is hot and the shape is fixed.
const (
	recordVersion = 1
	recordFields  = 4
	checksumLen   = 4
)

// ownershipRecord is the stored form of an ownership.
type ownershipRecord struct {
	ownerID, etag string
	modified      int64
}

// checkpointRecord is the stored form of a checkpoint.
type checkpointRecord struct {
	offset    *string
	sequence  *int64
	writtenAt int64
}

// recordEncoder encodes records into one reusable buffer.
type recordEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
	// slab holds the values finish hands out: bbolt keeps each until the
	// commit, and one allocation per slab costs less than one per record.
	slab []byte
}

// slabSize bounds a slab: a batch of 32 checkpoints, or most of 32
// ownerships.
const slabSize = 4096

func newRecordEncoder() *recordEncoder {
	e := &recordEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}

func (e *recordEncoder) begin() {
	e.buf.Reset()
	e.buf.Write(make([]byte, checksumLen))
	// Writes to a bytes.Buffer cannot fail, so the encoder's errors are nil.
	_ = e.enc.EncodeArrayLen(recordFields)
	_ = e.enc.EncodeUint(recordVersion)
}

// finish seals the record with its checksum and returns a copy the caller
// may hand to bbolt, which keeps the slice until commit. The copy lies in
// the slab, which newSlab leaves to the values already handed out.
func (e *recordEncoder) finish(prefix uint32, partitionKey []byte) []byte {
	n := e.buf.Len()
	if cap(e.slab)-len(e.slab) < n {
		// Small for a transaction of one write, doubling for a batch.
		e.slab = make([]byte, 0, max(n, min(slabSize, max(8*n, 2*cap(e.slab)))))
	}
	start := len(e.slab)
	e.slab = append(e.slab, e.buf.Bytes()...)
	value := e.slab[start:len(e.slab):len(e.slab)]
	binary.BigEndian.PutUint32(value, recordChecksum(prefix, partitionKey, value[checksumLen:]))
	return value
}

// newSlab starts a new slab for the next transaction's values.
func (e *recordEncoder) newSlab() { e.slab = nil }

func (e *recordEncoder) ownership(prefix uint32, partitionKey []byte, r ownershipRecord) []byte {
	e.begin()
	_ = e.enc.EncodeString(r.ownerID)
	_ = e.enc.EncodeString(r.etag)
	_ = e.enc.EncodeInt(r.modified)
	return e.finish(prefix, partitionKey)
}

func (e *recordEncoder) checkpoint(prefix uint32, partitionKey []byte, r checkpointRecord) []byte {
	e.begin()
	if r.offset != nil {
		_ = e.enc.EncodeString(*r.offset)
	} else {
		_ = e.enc.EncodeNil()
	}
	if r.sequence != nil {
		_ = e.enc.EncodeInt(*r.sequence)
	} else {
		_ = e.enc.EncodeNil()
	}
	_ = e.enc.EncodeInt(r.writtenAt)
	return e.finish(prefix, partitionKey)
}

func recordChecksum(prefix uint32, partitionKey, body []byte) uint32 {
	return crc32.Update(crc32.Update(prefix, castagnoli, partitionKey), castagnoli, body)
}

// openRecord verifies a stored value's checksum and version and returns a
// reader positioned at the first field after the version.
func openRecord(prefix uint32, partitionKey, value []byte) (msgReader, error) {
	if len(value) < checksumLen {
		return msgReader{}, fmt.Errorf("record of %d bytes is too short", len(value))
	}
	body := value[checksumLen:]
	if binary.BigEndian.Uint32(value) != recordChecksum(prefix, partitionKey, body) {
		return msgReader{}, fmt.Errorf("record checksum mismatch")
	}
	r := msgReader{b: body}
	if n := r.arrayLen(); n != recordFields {
		return msgReader{}, fmt.Errorf("record has %d fields, want %d", n, recordFields)
	}
	if v, ok := r.int(); !ok || v != recordVersion {
		return msgReader{}, fmt.Errorf("record version %d is not supported (written by a newer boltstore?)", v)
	}
	return r, nil
}

// decodeOwnership decodes an ownership record. The byte slices point into
// value, which bbolt owns, so callers copy what they keep.
func decodeOwnership(prefix uint32, partitionKey, value []byte) (ownerID, etag []byte, modified int64, err error) {
	r, err := openRecord(prefix, partitionKey, value)
	if err != nil {
		return nil, nil, 0, err
	}
	ownerID, ok1 := r.str()
	etag, ok2 := r.str()
	modified, ok3 := r.int()
	if !(ok1 && ok2 && ok3) || !r.done() {
		return nil, nil, 0, fmt.Errorf("malformed ownership record")
	}
	return ownerID, etag, modified, nil
}

// decodeCheckpoint decodes a checkpoint record. offset is nil when absent;
// like decodeOwnership, it points into value.
func decodeCheckpoint(prefix uint32, partitionKey, value []byte) (offset []byte, hasOffset bool, sequence int64, hasSequence bool, writtenAt int64, err error) {
	r, err := openRecord(prefix, partitionKey, value)
	if err != nil {
		return nil, false, 0, false, 0, err
	}
	ok := true
	if hasOffset = !r.null(); hasOffset {
		offset, ok = r.str()
	}
	if hasSequence = !r.null(); hasSequence && ok {
		sequence, ok = r.int()
	}
	var ok3 bool
	writtenAt, ok3 = r.int()
	if !ok || !ok3 || !r.done() || !(hasOffset || hasSequence) {
		return nil, false, 0, false, 0, fmt.Errorf("malformed checkpoint record")
	}
	return offset, hasOffset, sequence, hasSequence, writtenAt, nil
}

// msgReader decodes the few msgpack types records use. Each method returns
// false on a type mismatch or short input instead of panicking.
type msgReader struct {
	b []byte
	i int
}

func (r *msgReader) done() bool { return r.i == len(r.b) }

func (r *msgReader) take(n int) ([]byte, bool) {
	if n < 0 || len(r.b)-r.i < n {
		return nil, false
	}
	s := r.b[r.i : r.i+n]
	r.i += n
	return s, true
}

func (r *msgReader) code() (byte, bool) {
	c, ok := r.take(1)
	if !ok {
		return 0, false
	}
	return c[0], true
}

func (r *msgReader) arrayLen() int {
	c, ok := r.code()
	switch {
	case !ok:
		return -1
	case msgpcode.IsFixedArray(c):
		return int(c & msgpcode.FixedArrayMask)
	case c == msgpcode.Array16:
		b, ok := r.take(2)
		if !ok {
			return -1
		}
		return int(binary.BigEndian.Uint16(b))
	}
	return -1
}

// null consumes a nil and reports whether there was one.
func (r *msgReader) null() bool {
	if r.i < len(r.b) && r.b[r.i] == msgpcode.Nil {
		r.i++
		return true
	}
	return false
}

func (r *msgReader) str() ([]byte, bool) {
	c, ok := r.code()
	if !ok {
		return nil, false
	}
	n := -1
	switch {
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8, c == msgpcode.Bin8:
		if b, ok := r.take(1); ok {
			n = int(b[0])
		}
	case c == msgpcode.Str16, c == msgpcode.Bin16:
		if b, ok := r.take(2); ok {
			n = int(binary.BigEndian.Uint16(b))
		}
	case c == msgpcode.Str32, c == msgpcode.Bin32:
		if b, ok := r.take(4); ok && binary.BigEndian.Uint32(b) <= math.MaxInt32 {
			n = int(binary.BigEndian.Uint32(b))
		}
	}
	return r.take(n)
}

func (r *msgReader) int() (int64, bool) {
	c, ok := r.code()
	if !ok {
		return 0, false
	}
	if msgpcode.IsFixedNum(c) {
		return int64(int8(c)), true
	}
	var size int
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		size = 1
	case msgpcode.Uint16, msgpcode.Int16:
		size = 2
	case msgpcode.Uint32, msgpcode.Int32:
		size = 4
	case msgpcode.Uint64, msgpcode.Int64:
		size = 8
	default:
		return 0, false
	}
	b, ok := r.take(size)
	if !ok {
		return 0, false
	}
	var u uint64
	for _, x := range b {
		u = u<<8 | uint64(x)
	}
	switch c {
	case msgpcode.Int8:
		return int64(int8(u)), true
	case msgpcode.Int16:
		return int64(int16(u)), true
	case msgpcode.Int32:
		return int64(int32(u)), true
	case msgpcode.Int64:
		return int64(u), true
	}
	return int64(u), u <= math.MaxInt64
}
