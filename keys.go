package boltstore

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/bits"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// File layout. Every name below is a bbolt bucket unless marked as a key.
//
//	boltstore                  format marker
//	  format   (key)           one byte: FormatVersion
//	g                          consumer groups
//	  <group key>  (key)       the group's id (appendGroupID)
//	o                          ownership records
//	  <group id><partition key>   (key) codec.go: ownership record
//	c                          checkpoint records
//	  <group id><partition key>   (key) codec.go: checkpoint record
//
// A group key is the namespace, event hub and consumer group, each folded
// to lower case and ended by a zero byte, which no name may contain. The
// records lie in two flat buckets rather than in a bucket per name,
// because every bucket on a record's path is one more page that each
// commit writes and syncs: a checkpoint's commit writes four pages, not
// eight as in the nested layout of format versions 1 and 2 (migrate.go).
// Records are keyed by a short group id rather than the group key so
// that a group's 32 ownerships fit one page, and a claim writes no more.
// The id's encoding is prefix-free, so each group's records are one run of
// keys, and sorts as the ids do, so that a new group's records, and a
// conversion's, are appended to the end of the buckets: bbolt inserts into
// the middle of a large node by moving the rest of it.
// A record's checksum covers its group's names, not its id: a record under
// the wrong id fails it.
//
// Namespace, event hub and consumer group are case-insensitive in Event
// Hubs, so they are keyed folded, and lists answer with the caller's
// spelling. Partition ids keep their spelling. A partition key sorts
// numeric ids in numeric order: a canonical decimal id ("0", "17") is 0x00,
// its length, its digits; any other id is 0x01 followed by its bytes, after
// all numeric ones.
const (
	// FormatVersion is the format of the store files this boltstore
	// writes. Open converts a file of an older format and refuses a newer
	// one (ErrUnsupportedFormat).
	FormatVersion = 3
	// oldestFormatVersion is the oldest version this boltstore reads: 1,
	// written before commit records (commit.go). Versions 1 and 2 keep
	// records in nested buckets; they are converted to version 3 when the
	// store opens them (migrate.go).
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
	bucketGroups     = []byte("g")
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
	if err := checkCoordinate("FullyQualifiedNamespace", namespace); err != nil {
		return err
	}
	if err := checkCoordinate("EventHubName", hub); err != nil {
		return err
	}
	return checkCoordinate("ConsumerGroup", group)
}

// checkCoordinate validates a name the store keeps folded to lower case.
// Folding can lengthen a name (U+023A is two bytes, its lower case three),
// so the bound applies to the folded name too: what is stored must read
// back valid, or export, import and salvage would refuse it.
func checkCoordinate(what, s string) error {
	if err := checkName(what, s, true); err != nil {
		return err
	}
	// A rune's lower case is never more than twice as long in UTF-8 (ASCII
	// stays ASCII, and no rune takes more than four bytes), so only a name
	// longer than half the bound can outgrow it.
	if len(s) <= maxNameLen/2 {
		return nil
	}
	if n := foldedLen(s); n > maxNameLen {
		return fmt.Errorf("%w: %s is %d bytes long in lower case, more than %d", ErrInvalidArgument, what, n, maxNameLen)
	}
	return nil
}

// recordKinds are the kinds of record, in the order walks visit them.
var recordKinds = [...]recordKind{kindOwnership, kindCheckpoint}

// layoutBuckets are the buckets that hold the groups and records.
var layoutBuckets = [...][]byte{bucketGroups, bucketOwnership, bucketCheckpoint}

// groupKey is a consumer group's folded coordinates: key is the group key,
// and namespace, hub and group are the names in it.
type groupKey struct {
	key                   []byte
	namespace, hub, group []byte
}

// newGroupKey folds validated coordinates into a group key.
func newGroupKey(namespace, hub, group string) groupKey {
	key := make([]byte, 0, len(namespace)+len(hub)+len(group)+3)
	key = append(appendFolded(key, namespace), 0)
	key = append(appendFolded(key, hub), 0)
	key = append(appendFolded(key, group), 0)
	g, _ := splitGroupKey(key)
	return g
}

// groupKeyOf makes the group key of names already folded, as a nested
// bucket path of the older layout holds them.
func groupKeyOf(namespace, hub, group []byte) groupKey {
	key := make([]byte, 0, len(namespace)+len(hub)+len(group)+3)
	key = append(append(key, namespace...), 0)
	key = append(append(key, hub...), 0)
	key = append(append(key, group...), 0)
	g, _ := splitGroupKey(key)
	return g
}

// splitGroupKey reads the three names of a group key, as slices of k; ok
// is false unless k is three names, each ended by a zero byte.
func splitGroupKey(k []byte) (g groupKey, ok bool) {
	rest := k
	var names [3][]byte
	for i := range names {
		end := bytes.IndexByte(rest, 0)
		if end < 0 {
			return groupKey{}, false
		}
		names[i], rest = rest[:end:end], rest[end+1:]
	}
	return groupKey{key: k, namespace: names[0], hub: names[1], group: names[2]}, len(rest) == 0
}

// recordKey returns the key of a group's record for a partition key, in a
// new slice: bbolt keeps the key of a Put until the commit.
func recordKey(groupID, partitionKey []byte) []byte {
	return append(append(make([]byte, 0, len(groupID)+len(partitionKey)), groupID...), partitionKey...)
}

// splitRecordKey splits a record key into its group id and partition key;
// ok is false when k does not begin with a group id.
func splitRecordKey(k []byte) (groupID uint64, partitionKey []byte, ok bool) {
	id, n := readGroupID(k)
	if n == 0 {
		return 0, nil, false
	}
	return id, k[n:], true
}

// parseGroupID reads a group id as the groups bucket holds it.
func parseGroupID(v []byte) (uint64, bool) {
	id, n := readGroupID(v)
	return id, n > 0 && n == len(v)
}

// Group ids are encoded so that byte order is numeric order and no
// encoding is a prefix of another: an id below groupIDShort is one byte;
// a larger one is groupIDShort-1+n followed by its n big-endian bytes, n
// as few as hold it.
const groupIDShort = 0xF8

// appendGroupID appends the encoding of id to dst.
func appendGroupID(dst []byte, id uint64) []byte {
	if id < groupIDShort {
		return append(dst, byte(id))
	}
	n := (bits.Len64(id) + 7) / 8
	dst = append(dst, byte(groupIDShort-1+n))
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(id>>(8*i)))
	}
	return dst
}

// readGroupID reads the group id at the start of b and its length, 0 if
// there is none. Only the shortest encoding counts: lists find a group's
// records by its bytes, so a longer one would hide a record from them.
func readGroupID(b []byte) (id uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	if b[0] < groupIDShort {
		return uint64(b[0]), 1
	}
	size := int(b[0]) - (groupIDShort - 1)
	if len(b) < 1+size || b[1] == 0 {
		return 0, 0
	}
	for _, c := range b[1 : 1+size] {
		id = id<<8 | uint64(c)
	}
	if size == 1 && id < groupIDShort {
		return 0, 0
	}
	return id, 1 + size
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

// foldedLen is the length of appendFolded(nil, s).
func foldedLen(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			n := i
			for _, r := range s[i:] {
				n += utf8.RuneLen(unicode.ToLower(r))
			}
			return n
		}
	}
	return len(s)
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
// through damage fails its checksum. The group key ends each name with a
// zero byte, as the checksum always has.
func (g groupKey) checksumPrefix(kind recordKind) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, g.key), castagnoli, kind.bucket())
}

// recordBucket returns the bucket of one kind of record, or nil when the
// file has none. A plain value in its place is a damaged bucket flag,
// which would otherwise hide every record of the kind.
func recordBucket(tx *bolt.Tx, kind recordKind) (*bolt.Bucket, error) {
	return childBucket(tx.Cursor().Bucket(), kind.bucket())
}

// childBucket returns parent's child bucket name, or nil if there is none,
// and an error for a plain value where the bucket belongs.
func childBucket(parent *bolt.Bucket, name []byte) (*bolt.Bucket, error) {
	child := parent.Bucket(name)
	if child == nil && parent.Get(name) != nil {
		return nil, fmt.Errorf("bucket %q is stored as a plain value", name)
	}
	return child, nil
}

// lookupGroup returns a group's id as its records' keys begin with it, or
// nil if the group has no id: it never had records.
func lookupGroup(tx *bolt.Tx, g groupKey) ([]byte, error) {
	groups, err := childBucket(tx.Cursor().Bucket(), bucketGroups)
	if err != nil || groups == nil {
		return nil, err
	}
	id := groups.Get(g.key)
	if id == nil {
		if groups.Bucket(g.key) != nil {
			// A damaged flag made the entry a bucket; the group's
			// records would seem to be gone.
			return nil, fmt.Errorf("the group's entry is stored as a bucket")
		}
		return nil, nil
	}
	if _, ok := parseGroupID(id); !ok {
		return nil, fmt.Errorf("the group id %x is malformed", id)
	}
	return id, nil
}

// groupIDFor returns a group's id, giving it the next one if it has none.
func groupIDFor(tx *bolt.Tx, g groupKey) ([]byte, error) {
	id, err := lookupGroup(tx, g)
	if err != nil || id != nil {
		return id, err
	}
	groups, err := tx.CreateBucketIfNotExists(bucketGroups)
	if err != nil {
		return nil, err
	}
	next, err := groups.NextSequence()
	if err != nil {
		return nil, err
	}
	id = appendGroupID(nil, next)
	// Ids are never reused, so records under the new one mean that the
	// sequence is damaged: the group would take over their records.
	for _, kind := range recordKinds {
		if b := tx.Bucket(kind.bucket()); b != nil {
			if k, _ := b.Cursor().Seek(id); bytes.HasPrefix(k, id) {
				return nil, fmt.Errorf("the next group id, %d, has %s records already: the groups bucket's sequence is damaged", next, kind.recordType())
			}
		}
	}
	return id, groups.Put(bytes.Clone(g.key), id)
}

// groupCursor walks the records of one group in a record bucket, handing
// out partition keys.
type groupCursor struct {
	c       *bolt.Cursor
	groupID []byte
}

// groupRecords returns a cursor over one kind of record of group g; ok is
// false when the group has none.
func groupRecords(tx *bolt.Tx, g groupKey, kind recordKind) (records groupCursor, ok bool, err error) {
	id, err := lookupGroup(tx, g)
	if err != nil || id == nil {
		return groupCursor{}, false, err
	}
	b, err := recordBucket(tx, kind)
	if err != nil || b == nil {
		return groupCursor{}, false, err
	}
	return groupCursor{c: b.Cursor(), groupID: id}, true, nil
}

// first returns the group's first record, or a nil key if it has none.
func (gc groupCursor) first() (partitionKey, value []byte) { return gc.within(gc.c.Seek(gc.groupID)) }

// next returns the group's next record, or a nil key after its last.
func (gc groupCursor) next() (partitionKey, value []byte) { return gc.within(gc.c.Next()) }

func (gc groupCursor) within(k, v []byte) ([]byte, []byte) {
	if !bytes.HasPrefix(k, gc.groupID) {
		return nil, nil
	}
	return k[len(gc.groupID):], v
}
