package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
)

// Salvage reads every record it can from the store file at path, for a
// file that Open refuses as damaged and that has no backup. It does not
// open the file with bbolt, which trusts its pages: it walks the pages
// itself from the newest intact meta page, skips any page that is out of
// range, referenced twice or malformed (and everything below it), and keeps
// only records whose checksum holds, so what it returns is never wrong,
// only possibly incomplete. lost describes each part it had to skip: first
// of all a damaged last commit that the store had noted as acknowledged,
// whose intact pages are still read, or, if its meta page is gone, the
// commit before it instead. err is set when nothing could be read: the
// file is missing, locked by a store for longer than the deadline, empty
// (ErrCorrupt), not a bbolt file (ErrUnsupportedFormat), or has no intact
// meta page (ErrCorrupt).
//
// Salvage takes the file's lock while it reads, so stores that have the
// file open hand it over first (waiting at most until ctx's deadline or
// DefaultLockTimeout).
func Salvage(ctx context.Context, path string) (records []Record, lost []error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fileError(path, err)
	}
	defer f.Close()
	deadline := time.Now().Add(DefaultLockTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := waitForFlock(ctx, nil, f, false, deadline, time.Time{}); err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fileError(path, err)
	}
	_, sawMagic := newestMeta(f)
	meta, damage, err := openableMeta(f)
	switch {
	case err != nil:
		return nil, nil, fileError(path, err)
	case info.Size() == 0:
		// As Open says: a store cut to nothing, not a foreign file.
		return nil, nil, corruptError(path, "the file is empty; nothing is left to salvage")
	case !sawMagic:
		return nil, nil, fmt.Errorf("%s: %w: not a boltstore file (no bbolt header)", path, ErrUnsupportedFormat)
	case meta == nil:
		return nil, nil, corruptError(path, "both bbolt meta pages are damaged; nothing leads to the records")
	}
	s := &salvager{pageReader: newPageReader(f, metaPageSize(meta), metaHighWater(meta)), groups: map[uint64][]groupKey{}}
	if damage != "" {
		s.lost = append(s.lost, errors.New(damage))
	}
	s.walk(binary.NativeEndian.Uint64(meta[metaRootAt:]), nil, 0)
	s.resolve()
	for i, e := range s.lost {
		s.lost[i] = fmt.Errorf("%s: %w", path, e)
	}
	return s.records, s.lost, nil
}

// salvager walks a file's pages the way pageVerifier does, but goes on
// past damage, collecting the records below the buckets it can read.
type salvager struct {
	pageReader
	records []Record
	lost    []error
	groups  map[uint64][]groupKey // by id, from the groups bucket
	pending []pendingRecord
}

// walk reads the page id of the bucket at path (the bucket names from the
// root) and what lies below it.
func (s *salvager) walk(id uint64, path [][]byte, depth int) {
	if depth > maxTreeDepth {
		s.skip(path, fmt.Errorf("page %d: tree deeper than %d levels", id, maxTreeDepth))
		return
	}
	page, err := s.read(id)
	if err != nil {
		s.skip(path, err)
		return
	}
	s.page(id, page, path, depth)
}

// page reads one branch or leaf page of the bucket at path.
func (s *salvager) page(id uint64, page []byte, path [][]byte, depth int) {
	elems, err := parsePage(id, page)
	if err != nil {
		s.skip(path, err)
		return
	}
	for _, e := range elems {
		switch {
		case e.branch: // a page further down the same bucket
			s.walk(e.child, path, depth+1)
		case e.bucket && e.inline == nil:
			s.walk(e.child, append(path[:len(path):len(path)], e.key), depth+1)
		case e.bucket:
			s.page(0, e.inline, append(path[:len(path):len(path)], e.key), depth+1)
		default:
			s.record(path, e.key, e.value)
		}
	}
}

// record keeps a value found in a record bucket if its checksum holds, or
// a group's id. Records of the nested layout of format versions 1 and 2
// lie in data / namespace / hub / group / kind and are decoded at once;
// those of the current layout wait for the groups (resolve). Values
// elsewhere (the format marker) are not records.
func (s *salvager) record(path [][]byte, key, value []byte) {
	if len(path) == 1 && bytes.Equal(path[0], bucketGroups) {
		if err := checkGroupEntry(key, value); err != nil {
			s.lost = append(s.lost, err)
			return
		}
		id, _ := parseGroupID(value)
		g, _ := splitGroupKey(key)
		s.groups[id] = append(s.groups[id], g)
		return
	}
	if len(path) == 0 {
		return
	}
	var kind recordKind
	switch last := path[len(path)-1]; {
	case bytes.Equal(last, bucketOwnership):
		kind = kindOwnership
	case bytes.Equal(last, bucketCheckpoint):
		kind = kindCheckpoint
	default:
		return
	}
	switch {
	case len(path) == 1:
		id, partitionKey, ok := splitRecordKey(key)
		if !ok {
			s.lost = append(s.lost, fmt.Errorf("%s record key %x has no group id", kind.recordType(), key))
			return
		}
		s.pending = append(s.pending, pendingRecord{kind: kind, groupID: id, partitionKey: partitionKey, value: value})
	case len(path) == 5 && bytes.Equal(path[0], bucketData):
		s.keep(groupKeyOf(path[1], path[2], path[3]), kind, key, value)
	}
}

// pendingRecord is a record whose group is known only by its id.
type pendingRecord struct {
	kind                recordKind
	groupID             uint64
	partitionKey, value []byte
}

// resolve decodes the records that waited for their groups. Damage may
// have given two groups one id, or changed an id: the record's checksum,
// which covers its group's names, tells which group is its own, so a
// record no group of its id matches is tried against every group, and the
// group found serves the other records of that id first.
func (s *salvager) resolve() {
	var all []groupKey
	for _, groups := range s.groups {
		all = append(all, groups...)
	}
	found := map[uint64]groupKey{}
	for _, r := range s.pending {
		candidates := s.groups[r.groupID]
		if g, ok := found[r.groupID]; ok {
			candidates = append([]groupKey{g}, candidates...)
		}
		rec, g, err := decodeAmong(r, candidates)
		if err != nil {
			var matched error
			if rec, g, matched = decodeAmong(r, all); matched == nil {
				found[r.groupID] = g
				err = nil
			}
		}
		switch {
		case err != nil && len(s.groups[r.groupID]) == 0:
			s.lost = append(s.lost, fmt.Errorf("%s record of partition key %x: no consumer group has the id %d", r.kind.recordType(), r.partitionKey, r.groupID))
		case err != nil:
			s.lost = append(s.lost, err)
		default:
			s.records = append(s.records, rec)
		}
	}
}

// decodeAmong decodes r as a record of the first of groups whose names
// its checksum matches.
func decodeAmong(r pendingRecord, groups []groupKey) (Record, groupKey, error) {
	err := fmt.Errorf("%s record of partition key %x: no consumer group's names match its checksum", r.kind.recordType(), r.partitionKey)
	for _, g := range groups {
		var rec Record
		if rec, err = decodeRecord(g, r.kind, g.checksumPrefix(r.kind), r.partitionKey, r.value); err == nil {
			return rec, g, nil
		}
	}
	return Record{}, groupKey{}, err
}

// keep decodes a record of group g and keeps it if its checksum holds.
func (s *salvager) keep(g groupKey, kind recordKind, partitionKey, value []byte) {
	r, err := decodeRecord(g, kind, g.checksumPrefix(kind), partitionKey, value)
	if err != nil {
		s.lost = append(s.lost, err)
		return
	}
	s.records = append(s.records, r)
}

// skip notes a damaged page and that nothing below it was read.
func (s *salvager) skip(path [][]byte, err error) {
	where := "the root"
	if len(path) > 0 {
		where = fmt.Sprintf("bucket %q", bytes.Join(path, []byte("/")))
	}
	s.lost = append(s.lost, fmt.Errorf("%w: everything below it in %s is lost", err, where))
}
