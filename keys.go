package boltstore

import (
	"fmt"
	"hash/crc32"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// File layout. Every name below is a bbolt bucket unless marked as a key.
//
//	boltstore                  format marker
//	  format   (key)           one byte: formatVersion (1: no commit records)
//	data
//	  <namespace>              folded to lower case
//	    <event hub>            folded to lower case
//	      <consumer group>     folded to lower case
//	        o                  ownership records
//	          <partition key>  (key) codec.go: ownership record
//	        c                  checkpoint records
//	          <partition key>  (key) codec.go: checkpoint record
//
// Namespace, event hub and consumer group are case-insensitive in Event Hubs,
// so they are keyed folded, and lists answer with the caller's spelling.
// Partition ids keep their spelling. A partition key sorts numeric ids in
// numeric order: a canonical decimal id ("0", "17") is 0x00, its length, its
// digits; any other id is 0x01 followed by its bytes, after all numeric ones.
const (
	formatVersion byte = 2
	// oldestFormatVersion is the oldest version this boltstore reads: 1,
	// written before commit records (commit.go), which a file gets on its
	// first commit by this version.
	oldestFormatVersion byte = 1

	// maxNameLen bounds each coordinate and OwnerID. Event Hubs names are far
	// shorter; the bound keeps keys well inside bbolt's 32 KiB key limit.
	maxNameLen = 1024

	partitionNumeric byte = 0x00
	partitionOther   byte = 0x01
	// maxNumericDigits keeps numeric ids within int64 without parsing them.
	maxNumericDigits = 18
)

var (
	bucketMarker     = []byte("boltstore")
	keyFormat        = []byte("format")
	bucketData       = []byte("data")
	bucketOwnership  = []byte("o")
	bucketCheckpoint = []byte("c")
)

// recordKind tells ownership and checkpoint records apart in checksums.
type recordKind byte

const (
	kindOwnership  recordKind = 'o'
	kindCheckpoint recordKind = 'c'
)

func (k recordKind) bucket() []byte {
	if k == kindOwnership {
		return bucketOwnership
	}
	return bucketCheckpoint
}

// groupKey is a consumer group's folded coordinates, the bucket path below
// data.
type groupKey struct {
	namespace, hub, group []byte
}

// checkName validates one coordinate or owner id. what names the field for
// the error message.
func checkName(what, s string, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%w: %s is empty", ErrInvalidArgument, what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%w: %s is %d bytes long, more than %d", ErrInvalidArgument, what, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidArgument, what, s)
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s %q contains control character %U", ErrInvalidArgument, what, s, rune(c))
		} else if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return nil
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q contains control character %U", ErrInvalidArgument, what, s, r)
		}
	}
	return nil
}

// checkGroup validates the three coordinates of a consumer group.
func checkGroup(namespace, hub, group string) error {
	if err := checkName("FullyQualifiedNamespace", namespace, true); err != nil {
		return err
	}
	if err := checkName("EventHubName", hub, true); err != nil {
		return err
	}
	return checkName("ConsumerGroup", group, true)
}

// newGroupKey folds validated coordinates into their bucket names.
func newGroupKey(namespace, hub, group string) groupKey {
	return groupKey{
		namespace: appendFolded(nil, namespace),
		hub:       appendFolded(nil, hub),
		group:     appendFolded(nil, group),
	}
}

// appendFolded appends s in lower case. ASCII, which is all Event Hubs
// allows, takes the fast path.
func appendFolded(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			for _, r := range s[i:] {
				dst = utf8.AppendRune(dst, unicode.ToLower(r))
			}
			return dst
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendPartitionKey appends the sortable key of a partition id.
func appendPartitionKey(dst []byte, id string) []byte {
	if isCanonicalNumber(id) {
		dst = append(dst, partitionNumeric, byte(len(id)))
		return append(dst, id...)
	}
	dst = append(dst, partitionOther)
	return append(dst, id...)
}

func isCanonicalNumber(s string) bool {
	if len(s) == 0 || len(s) > maxNumericDigits || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// partitionIDBytes returns the id stored in a partition key, or false if the
// key is malformed.
func partitionIDBytes(key []byte) ([]byte, bool) {
	if len(key) < 2 {
		return nil, false
	}
	switch key[0] {
	case partitionNumeric:
		id := key[2:]
		return id, int(key[1]) == len(id) && isCanonicalNumber(string(id))
	case partitionOther:
		id := key[1:]
		return id, !isCanonicalNumber(string(id))
	}
	return nil, false
}

// castagnoli is CRC-32C, which has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksumPrefix is the running checksum over a record's group and kind.
// Covering the coordinates means a record that lands under the wrong key
// through damage fails its checksum.
func (g groupKey) checksumPrefix(kind recordKind) uint32 {
	crc := crc32.Update(0, castagnoli, g.namespace)
	crc = crc32.Update(crc, castagnoli, separator)
	crc = crc32.Update(crc, castagnoli, g.hub)
	crc = crc32.Update(crc, castagnoli, separator)
	crc = crc32.Update(crc, castagnoli, g.group)
	crc = crc32.Update(crc, castagnoli, separator)
	return crc32.Update(crc, castagnoli, kind.bucket())
}

// separator ends each name in a checksum; a package variable, because a
// slice literal passed to crc32 escapes and costs an allocation per call.
var separator = []byte{0}

// recordBucket returns the bucket of one kind of record of a group, or nil
// when the group has none (see childBucket for damage).
func recordBucket(tx *bolt.Tx, g groupKey, kind recordKind) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketData)
	for _, name := range [][]byte{g.namespace, g.hub, g.group, kind.bucket()} {
		if b == nil {
			return nil, nil
		}
		var err error
		if b, err = childBucket(b, name); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// childBucket returns parent's child bucket name, or nil if there is none.
// A plain value where a bucket belongs is a damaged bucket flag, which
// would otherwise hide the records below it.
func childBucket(parent *bolt.Bucket, name []byte) (*bolt.Bucket, error) {
	child := parent.Bucket(name)
	if child == nil && parent.Get(name) != nil {
		return nil, fmt.Errorf("bucket %q is stored as a plain value", name)
	}
	return child, nil
}

// createRecordBucket is recordBucket for writers: it creates what is missing.
func createRecordBucket(tx *bolt.Tx, g groupKey, kind recordKind) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(bucketData)
	for _, name := range [][]byte{g.namespace, g.hub, g.group, kind.bucket()} {
		if err != nil {
			return nil, err
		}
		b, err = b.CreateBucketIfNotExists(name)
	}
	return b, err
}
