package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"time"

	"github.com/ehcheckpoints/boltstore/internal/fsync"
	bolt "go.etcd.io/bbolt"
)

// The API in this file serves tools that inspect and repair a store, such
// as the ehcheckpoints command. Processors need only the CheckpointStore
// methods.

// RecordType tells the two kinds of Record apart.
type RecordType string

// Record types, spelled as in ehcheckpoints export.
const (
	RecordOwnership  RecordType = "ownership"
	RecordCheckpoint RecordType = "checkpoint"
)

// Record is one stored ownership or checkpoint with everything the store
// keeps about it. Namespace, EventHub and ConsumerGroup are as stored,
// folded to lower case.
type Record struct {
	Type                                            RecordType
	Namespace, EventHub, ConsumerGroup, PartitionID string

	// Ownership records.
	OwnerID          string
	ETag             string
	LastModifiedTime time.Time

	// Checkpoint records. WrittenAt is when the store wrote the checkpoint,
	// by its clock. PutRecords stores both times as given, so it refuses a
	// zero one (Validate).
	Offset         *string
	SequenceNumber *int64
	WrittenAt      time.Time
}

// Scope selects the records of a namespace, event hub or consumer group.
// Empty fields match anything; matching ignores case.
type Scope struct {
	Namespace, EventHub, ConsumerGroup string
}

// folded returns the scope's names folded, nil where any name matches.
func (sc Scope) folded() [3][]byte {
	var names [3][]byte
	for i, name := range [...]string{sc.Namespace, sc.EventHub, sc.ConsumerGroup} {
		if name != "" {
			names[i] = appendFolded(nil, name)
		}
	}
	return names
}

// Records returns the records in scope, ordered by namespace, event hub,
// consumer group, type (ownership first) and partition. A damaged record
// fails the call with ErrCorrupt.
func (s *Store) Records(ctx context.Context, scope Scope) ([]Record, error) {
	var records []Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		records = nil
		return s.walkGroups(tx, scope, func(g groupKey, id []byte) error {
			for _, kind := range recordKinds {
				b, err := recordBucket(tx, kind)
				if err != nil {
					return corruptError(s.path, err.Error())
				}
				if b == nil {
					continue
				}
				prefix := g.checksumPrefix(kind)
				gc := groupCursor{c: b.Cursor(), groupID: id}
				for k, v := gc.first(); k != nil; k, v = gc.next() {
					rec, err := decodeRecord(g, kind, prefix, k, v)
					if err != nil {
						return corruptError(s.path, err.Error())
					}
					records = append(records, rec)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return records, nil
}

// walkGroups calls fn for each consumer group in scope, in key order, with
// its id. A group entry that does not parse is damage (ErrCorrupt).
func (s *Store) walkGroups(tx *bolt.Tx, scope Scope, fn func(g groupKey, id []byte) error) error {
	groups, err := childBucket(tx.Cursor().Bucket(), bucketGroups)
	if err != nil {
		return corruptError(s.path, err.Error())
	}
	if groups == nil {
		return nil
	}
	want := scope.folded()
	var prefix []byte // the names given from the left
	for _, name := range want {
		if name == nil {
			break
		}
		prefix = append(append(prefix, name...), 0)
	}
	c := groups.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := checkGroupEntry(k, v); err != nil {
			return corruptError(s.path, err.Error())
		}
		g, _ := splitGroupKey(k)
		if inScope(want, g) {
			if err := fn(g, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkGroupEntry reports what is wrong with an entry of the groups
// bucket, the key k and the value v.
func checkGroupEntry(k, v []byte) error {
	if _, ok := splitGroupKey(k); !ok {
		return fmt.Errorf("the consumer group key %q is malformed", k)
	}
	if _, ok := parseGroupID(v); !ok {
		return fmt.Errorf("consumer group %q: the group id %x is malformed", k, v)
	}
	return nil
}

// inScope reports whether g has every name want gives.
func inScope(want [3][]byte, g groupKey) bool {
	for i, name := range [...][]byte{g.namespace, g.hub, g.group} {
		if want[i] != nil && !bytes.Equal(want[i], name) {
			return false
		}
	}
	return true
}

// decodeRecord decodes a stored record for the admin API. Its error
// describes the damage and the record's coordinates; callers add the file.
func decodeRecord(g groupKey, kind recordKind, prefix uint32, k, v []byte) (Record, error) {
	rec := Record{Namespace: string(g.namespace), EventHub: string(g.hub), ConsumerGroup: string(g.group)}
	id, ok := partitionIDBytes(k)
	if !ok {
		return rec, fmt.Errorf("%s record of %s: malformed partition key", kind.recordType(), coordinates(rec.Namespace, rec.EventHub, rec.ConsumerGroup, fmt.Sprintf("%x", k)))
	}
	rec.PartitionID = string(id)
	rec.Type = kind.recordType()
	var err error
	if kind == kindOwnership {
		var owner, etag []byte
		var modified int64
		owner, etag, modified, err = decodeOwnership(prefix, k, v)
		rec.OwnerID, rec.ETag, rec.LastModifiedTime = string(owner), string(etag), time.Unix(0, modified).UTC()
	} else {
		var offset []byte
		var hasOffset, hasSequence bool
		var sequence, written int64
		offset, hasOffset, sequence, hasSequence, written, err = decodeCheckpoint(prefix, k, v)
		if hasOffset {
			o := string(offset)
			rec.Offset = &o
		}
		if hasSequence {
			rec.SequenceNumber = &sequence
		}
		rec.WrittenAt = time.Unix(0, written).UTC()
	}
	if err != nil {
		return rec, fmt.Errorf("%s record of %s: %v", rec.Type, coordinates(rec.Namespace, rec.EventHub, rec.ConsumerGroup, rec.PartitionID), err)
	}
	return rec, nil
}

func (k recordKind) recordType() RecordType {
	if k == kindOwnership {
		return RecordOwnership
	}
	return RecordCheckpoint
}

func (t RecordType) kind() (recordKind, error) {
	switch t {
	case RecordOwnership:
		return kindOwnership, nil
	case RecordCheckpoint:
		return kindCheckpoint, nil
	}
	return 0, fmt.Errorf("%w: record type %q is neither %q nor %q", ErrInvalidArgument, t, RecordOwnership, RecordCheckpoint)
}

// checkRecordKey validates a record's type and coordinates.
func checkRecordKey(r Record) (recordKind, error) {
	kind, err := r.Type.kind()
	if err != nil {
		return 0, err
	}
	if err := checkGroup(r.Namespace, r.EventHub, r.ConsumerGroup); err != nil {
		return 0, err
	}
	return kind, checkName("PartitionID", r.PartitionID, true)
}

// Validate reports, as ErrInvalidArgument, what PutRecords would refuse in
// r: a missing or invalid coordinate, type, owner, etag or offset, a
// checkpoint with neither offset nor sequence number, or a time outside
// the years 1678 to 2262 (records keep Unix nanoseconds in an int64).
func (r Record) Validate() error {
	kind, err := checkRecordKey(r)
	if err != nil {
		return err
	}
	if kind == kindOwnership {
		if err := checkName("OwnerID", r.OwnerID, false); err != nil {
			return err
		}
		if err := checkName("ETag", r.ETag, true); err != nil {
			return err
		}
		return checkTime("LastModifiedTime", r.LastModifiedTime)
	}
	if r.Offset == nil && r.SequenceNumber == nil {
		return fmt.Errorf("%w: checkpoint has neither offset nor sequence number", ErrInvalidArgument)
	}
	if r.Offset != nil {
		if err := checkName("Offset", *r.Offset, false); err != nil {
			return err
		}
	}
	return checkTime("WrittenAt", r.WrittenAt)
}

// checkTime refuses a time a record cannot hold. time.Time.UnixNano is
// undefined outside int64 nanoseconds, so the zero Time, for one, would be
// stored as a date in 1754.
func checkTime(what string, t time.Time) error {
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return fmt.Errorf("%w: %s %s is outside the years 1678 to 2262 that records hold", ErrInvalidArgument, what, t.Format(time.RFC3339))
	}
	return nil
}

// PutRecords writes records exactly as given, etags and times included,
// replacing records with the same coordinates. All are validated first and
// written in one transaction: either all are stored or none, and none if a
// condition does not hold (ErrChanged).
func (s *Store) PutRecords(ctx context.Context, records []Record, conditions ...Unchanged) error {
	for i, r := range records {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%s: records[%d] (%s): %w", s.path, i, coordinates(r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID), err)
		}
	}
	return s.committer.write(ctx, func(w *writeTx) (error, error) {
		if changed, fatal := checkAll(w.Tx, s.path, conditions); changed != nil || fatal != nil {
			return changed, fatal
		}
		type put struct {
			kind       recordKind
			key, value []byte
		}
		puts := make([]put, 0, len(records))
		for _, r := range records {
			kind, _ := r.Type.kind()
			g := newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup)
			id, err := w.groupID(g)
			if err != nil {
				return nil, err
			}
			partitionKey := appendPartitionKey(nil, r.PartitionID)
			prefix := g.checksumPrefix(kind)
			var value []byte
			if kind == kindOwnership {
				value = w.enc.ownership(prefix, partitionKey, ownershipRecord{ownerID: r.OwnerID, etag: r.ETag, modified: r.LastModifiedTime.UnixNano()})
			} else {
				value = w.enc.checkpoint(prefix, partitionKey, checkpointRecord{offset: r.Offset, sequence: r.SequenceNumber, writtenAt: r.WrittenAt.UnixNano()})
			}
			puts = append(puts, put{kind, recordKey(id, partitionKey), value})
		}
		// In key order: bbolt inserts into the middle of a node by moving
		// the rest of it, which for a large import, held in a few nodes
		// until the commit, would take time in the square of its size.
		// Stable, so that of two records with one key the later wins.
		slices.SortStableFunc(puts, func(a, b put) int {
			return cmp.Or(cmp.Compare(a.kind, b.kind), bytes.Compare(a.key, b.key))
		})
		for _, p := range puts {
			b, err := w.recordBucket(p.kind)
			if err != nil {
				return nil, err
			}
			if err := b.Put(p.key, p.value); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
}

// DeleteRecords deletes the records with the type and coordinates of the
// given ones (other fields are ignored) in one transaction, unless a
// condition does not hold (ErrChanged), and returns how many existed.
func (s *Store) DeleteRecords(ctx context.Context, records []Record, conditions ...Unchanged) (int, error) {
	for i, r := range records {
		if _, err := checkRecordKey(r); err != nil {
			return 0, fmt.Errorf("%s: records[%d] (%s): %w", s.path, i, coordinates(r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID), err)
		}
	}
	deleted := 0
	err := s.committer.write(ctx, func(w *writeTx) (error, error) {
		deleted = 0
		if changed, fatal := checkAll(w.Tx, s.path, conditions); changed != nil || fatal != nil {
			return changed, fatal
		}
		for _, r := range records {
			kind, _ := r.Type.kind()
			records, ok, err := groupRecords(w.Tx, newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup), kind)
			if err != nil {
				return nil, s.recordError(string(r.Type), r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID, err)
			}
			if !ok {
				continue
			}
			b := records.c.Bucket()
			key := recordKey(records.groupID, appendPartitionKey(nil, r.PartitionID))
			if b.Get(key) == nil {
				continue
			}
			if err := b.Delete(key); err != nil {
				return nil, err
			}
			deleted++
		}
		return nil, nil
	})
	if err != nil {
		// A call whose context ended may still be committing; do not
		// read what it writes.
		return 0, err
	}
	return deleted, nil
}

// DeleteScope removes a whole namespace, event hub or consumer group and
// returns how many records it held, unless a condition does not hold
// (ErrChanged): with conditions, that includes an ownership in scope of a
// partition none of them names, one claimed since the caller read the
// scope. Fields of scope must be given from the left: a namespace,
// optionally an event hub, optionally a consumer group.
func (s *Store) DeleteScope(ctx context.Context, scope Scope, conditions ...Unchanged) (int, error) {
	names := []string{scope.Namespace, scope.EventHub, scope.ConsumerGroup}
	for len(names) > 0 && names[len(names)-1] == "" {
		names = names[:len(names)-1]
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("%s: DeleteScope: %w: no namespace given", s.path, ErrInvalidArgument)
	}
	for i, name := range names {
		if err := checkName([...]string{"namespace", "event hub", "consumer group"}[i], name, true); err != nil {
			return 0, fmt.Errorf("%s: DeleteScope(%s): %w", s.path, coordinates(scope.Namespace, scope.EventHub, scope.ConsumerGroup, ""), err)
		}
	}
	deleted := 0
	err := s.committer.write(ctx, func(w *writeTx) (error, error) {
		if changed, fatal := checkAll(w.Tx, s.path, conditions); changed != nil || fatal != nil {
			return changed, fatal
		}
		if len(conditions) > 0 {
			if changed, fatal := s.unnamedOwnership(w.Tx, scope, conditions); changed != nil || fatal != nil {
				return changed, fatal
			}
		}
		var err error
		deleted, err = s.deleteScope(w, scope)
		return nil, err
	})
	if err != nil {
		// A call whose context ended may still be committing; do not
		// read what it writes.
		return 0, err
	}
	return deleted, nil
}

// unnamedOwnership reports, as changed (ErrChanged), an ownership in scope
// of a partition that none of conditions names.
func (s *Store) unnamedOwnership(tx *bolt.Tx, scope Scope, conditions []Unchanged) (changed, fatal error) {
	fatal = s.walkGroups(tx, scope, func(g groupKey, _ []byte) error {
		records, ok, err := groupRecords(tx, g, kindOwnership)
		if err != nil {
			return corruptError(s.path, err.Error())
		}
		for k, _ := records.first(); ok && k != nil && changed == nil; k, _ = records.next() {
			id, ok := partitionIDBytes(k)
			if !ok {
				return corruptError(s.path, fmt.Sprintf("ownership record of %s: malformed partition key %x", coordinates(string(g.namespace), string(g.hub), string(g.group), ""), k))
			}
			if !slices.ContainsFunc(conditions, func(u Unchanged) bool { return u.names(g, id) }) {
				where := coordinates(string(g.namespace), string(g.hub), string(g.group), string(id))
				changed = fmt.Errorf("%s: %s: %w: it was claimed", s.path, where, ErrChanged)
			}
		}
		return nil
	})
	return changed, fatal
}

// deleteScope deletes the groups in scope and their records in w, and
// returns how many records it deleted.
func (s *Store) deleteScope(w *writeTx, scope Scope) (int, error) {
	// Collected first: deleting under a cursor makes it skip keys.
	var groupKeys [][]byte
	var recordKeys [len(recordKinds)][][]byte
	err := s.walkGroups(w.Tx, scope, func(g groupKey, id []byte) error {
		groupKeys = append(groupKeys, bytes.Clone(g.key))
		for i, kind := range recordKinds {
			records, ok, err := groupRecords(w.Tx, g, kind)
			if err != nil {
				return corruptError(s.path, err.Error())
			}
			for k, _ := records.first(); ok && k != nil; k, _ = records.next() {
				recordKeys[i] = append(recordKeys[i], recordKey(id, k))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	w.forgetGroups()
	deleted := 0
	for i, kind := range recordKinds {
		for _, k := range recordKeys[i] {
			if err := w.Bucket(kind.bucket()).Delete(k); err != nil {
				return 0, err
			}
		}
		deleted += len(recordKeys[i])
	}
	for _, k := range groupKeys {
		if err := w.Bucket(bucketGroups).Delete(k); err != nil {
			return 0, err
		}
	}
	return deleted, nil
}

// Check verifies the whole file: bbolt's page structure, the record buckets,
// and the checksum and encoding of every record. It returns nil for a
// healthy file, or the problems found (the first 100), each an ErrCorrupt
// naming the file, joined with errors.Join. Writes wait while it runs;
// reads do not.
func (s *Store) Check(ctx context.Context) error {
	var problems []error
	err := s.viewAlone(ctx, func(tx *bolt.Tx) error {
		// bbolt's Check would crash on pages verifyPages rejects.
		if damage, err := verifyPages(s.path, tx); err != nil {
			return fileError(s.path, err)
		} else if damage != nil {
			problems = append(problems, checkProblem(s.path, damage))
			return nil
		}
		for _, p := range bboltProblems(tx, maxCheckProblems) {
			problems = append(problems, checkProblem(s.path, p))
		}
		var err error
		problems, err = s.recordProblems(tx, problems, maxCheckProblems)
		return err
	})
	if err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

// recordProblems decodes every record and appends what is damaged to
// problems, up to max in all. Because a record's checksum covers its
// group's names, this also finds a damaged key or group id. A record
// whose group id no group has would be missed by lists, and so would the
// records below a bucket other than the format marker, the groups and the
// two record buckets: a damaged bucket name.
func (s *Store) recordProblems(tx *bolt.Tx, problems []error, max int) ([]error, error) {
	add := func(err error) {
		if len(problems) < max {
			problems = append(problems, checkProblem(s.path, err))
		}
	}
	_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		switch {
		case bytes.Equal(name, bucketMarker), bytes.Equal(name, bucketGroups):
		case bytes.Equal(name, bucketOwnership), bytes.Equal(name, bucketCheckpoint):
		default:
			add(fmt.Errorf("unexpected bucket %q", name))
		}
		return nil
	})
	groups := map[uint64]groupKey{}
	if b, err := childBucket(tx.Cursor().Bucket(), bucketGroups); err != nil {
		add(err)
	} else if b != nil {
		_ = b.ForEach(func(k, v []byte) error {
			if err := checkGroupEntry(k, v); err != nil {
				add(err)
				return nil
			}
			id, _ := parseGroupID(v)
			g, _ := splitGroupKey(k)
			if other, taken := groups[id]; taken {
				add(fmt.Errorf("consumer groups %q and %q have the same id %d", other.key, k, id))
			}
			if id > b.Sequence() {
				// The next new group would be given it too.
				add(fmt.Errorf("consumer group %q has the id %d, beyond the last one given, %d", k, id, b.Sequence()))
			}
			groups[id] = g
			return nil
		})
	}
	for _, kind := range recordKinds {
		b, err := recordBucket(tx, kind)
		if err != nil {
			add(err)
		}
		if b == nil {
			continue
		}
		_ = b.ForEach(func(k, v []byte) error {
			id, partitionKey, ok := splitRecordKey(k)
			g, known := groups[id]
			switch {
			case !ok:
				add(fmt.Errorf("%s record key %x has no group id", kind.recordType(), k))
			case !known:
				add(fmt.Errorf("%s record key %x: no consumer group has the id %d", kind.recordType(), k, id))
			default:
				if _, err := decodeRecord(g, kind, g.checksumPrefix(kind), partitionKey, v); err != nil {
					add(err)
				}
			}
			return nil
		})
	}
	return problems, nil
}

// checkProblem is one problem in Check's report: an ErrCorrupt naming the
// file, without the advice to run check that other errors carry.
func checkProblem(path string, err error) error {
	return fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
}

// UndoneCommit reports the last commit that the store found incomplete
// when it opened the file, at Open or on taking the file back from another
// process, and undid: a process or the machine had stopped while that
// commit was being written, so its writes were never acknowledged, and
// the file went back to the commit before it. Damage to the newest
// commit's pages looks the same, and is undone the same way, when the
// commit's acknowledged note did not reach the disk (a machine crash soon
// after the commit). The next commit takes the undone one's transaction id
// again. ok is false if the store has undone no commit. An open that fails
// after undoing a commit says so in its error instead.
func (s *Store) UndoneCommit() (txid uint64, ok bool) {
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	return s.lease.undone, s.lease.undone != 0
}

// ConvertedFrom reports that Open found the file in the layout of an older
// boltstore, format (1 or 2), and converted it to the current one, after
// which older boltstores refuse the file. ok is false if it did not.
func (s *Store) ConvertedFrom() (format int, ok bool) {
	s.lease.mu.Lock()
	defer s.lease.mu.Unlock()
	return int(s.lease.convertedFrom), s.lease.convertedFrom != 0
}

// maxCheckProblems bounds Check's report on a badly damaged file; Check's
// documentation gives its value.
const maxCheckProblems = 100

// Backup writes a consistent copy of the store to dest, a path that must
// not exist yet, while the store stays in use. The copy is synced before
// Backup returns and has mode 0600.
func (s *Store) Backup(ctx context.Context, dest string) error {
	return fsync.NewFile(dest, func(f *os.File) error {
		return s.view(ctx, func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(f)
			return err
		})
	})
}

// CopyFile copies the store file at path to dest, a path that must not
// exist yet, byte for byte and whatever its format, without opening it as
// a store: for a file of an older boltstore, which opening converts
// (ErrOlderFormat), so that a copy taken before upgrading still opens
// with the older boltstore. It holds the file's lock, shared, while it
// copies, so no process writes the file meanwhile; it waits for the lock
// as a store does, at most opts.LockTimeout or until ctx ends. The copy is
// synced before CopyFile returns and has mode 0600.
func CopyFile(ctx context.Context, path, dest string, opts *Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return fileError(path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close() // and with it the lock
	if err := waitForFlock(ctx, nil, f, true, time.Now().Add(o.LockTimeout), time.Time{}); err != nil {
		return err
	}
	return fsync.NewFile(dest, func(out *os.File) error {
		_, err := io.Copy(out, f)
		return err
	})
}

// Compact writes a compacted copy of the store to dest, a path that must
// not exist yet, leaving behind the space freed by deleted records.
func (s *Store) Compact(ctx context.Context, dest string) error {
	return fsync.NewFile(dest, func(f *os.File) error {
		dst, err := openBoltOn(f)
		if err != nil {
			return err
		}
		err = s.view(ctx, func(tx *bolt.Tx) error {
			return bolt.Compact(dst, tx.DB(), compactTxSize)
		})
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// compactTxSize bounds the bytes Compact copies per transaction.
const compactTxSize = 64 << 20
