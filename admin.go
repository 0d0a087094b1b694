package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
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
	// by its clock.
	Offset         *string
	SequenceNumber *int64
	WrittenAt      time.Time
}

// Scope selects the records of a namespace, event hub or consumer group.
// Empty fields match anything; matching ignores case.
type Scope struct {
	Namespace, EventHub, ConsumerGroup string
}

func (sc Scope) matches(level int, name []byte) bool {
	want := [...]string{sc.Namespace, sc.EventHub, sc.ConsumerGroup}[level]
	return want == "" || bytes.Equal(appendFolded(nil, want), name)
}

// Records returns the records in scope, ordered by namespace, event hub,
// consumer group, type (ownership first) and partition. A damaged record
// fails the call with ErrCorrupt.
func (s *Store) Records(ctx context.Context, scope Scope) ([]Record, error) {
	var records []Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return s.walkGroups(tx, scope, func(g groupKey, groupBucket *bolt.Bucket) error {
			for _, kind := range []recordKind{kindOwnership, kindCheckpoint} {
				b, err := s.kindBucket(groupBucket, kind)
				if err != nil {
					return err
				}
				if b == nil {
					continue
				}
				prefix := g.checksumPrefix(kind)
				err = b.ForEach(func(k, v []byte) error {
					rec, err := decodeRecord(g, kind, prefix, k, v)
					if err != nil {
						return corruptError(s.path, err.Error())
					}
					records = append(records, rec)
					return nil
				})
				if err != nil {
					return err
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

// walkGroups calls fn for each consumer group bucket in scope.
func (s *Store) walkGroups(tx *bolt.Tx, scope Scope, fn func(groupKey, *bolt.Bucket) error) error {
	data := tx.Bucket(bucketData)
	if data == nil {
		return corruptError(s.path, "the data bucket is missing")
	}
	return s.eachBucket(data, scope, 0, func(ns []byte, nsBucket *bolt.Bucket) error {
		return s.eachBucket(nsBucket, scope, 1, func(hub []byte, hubBucket *bolt.Bucket) error {
			return s.eachBucket(hubBucket, scope, 2, func(group []byte, groupBucket *bolt.Bucket) error {
				return fn(groupKey{namespace: ns, hub: hub, group: group}, groupBucket)
			})
		})
	})
}

// eachBucket calls fn for each child bucket of parent in scope. Every key
// at these levels names a bucket; a plain value is a damaged bucket flag,
// which would otherwise hide the bucket and everything below it.
func (s *Store) eachBucket(parent *bolt.Bucket, scope Scope, level int, fn func([]byte, *bolt.Bucket) error) error {
	return parent.ForEach(func(name, v []byte) error {
		if v != nil {
			return corruptError(s.path, fmt.Sprintf("bucket %q is stored as a plain value", name))
		}
		if !scope.matches(level, name) {
			return nil
		}
		return fn(name, parent.Bucket(name))
	})
}

// kindBucket returns a group's bucket of one kind of record, or nil when
// the group has none, with the same check as eachBucket.
func (s *Store) kindBucket(groupBucket *bolt.Bucket, kind recordKind) (*bolt.Bucket, error) {
	b, err := childBucket(groupBucket, kind.bucket())
	if err != nil {
		return nil, corruptError(s.path, err.Error())
	}
	return b, nil
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
// written in one transaction: either all are stored or none.
func (s *Store) PutRecords(ctx context.Context, records []Record) error {
	for i, r := range records {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%s: records[%d] (%s): %w", s.path, i, coordinates(r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID), err)
		}
	}
	return s.committer.write(ctx, func(w *writeTx) (error, error) {
		for _, r := range records {
			kind, _ := r.Type.kind()
			g := newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup)
			b, err := w.recordBucket(g, kind)
			if err != nil {
				return nil, err
			}
			key := appendPartitionKey(nil, r.PartitionID)
			prefix := g.checksumPrefix(kind)
			var value []byte
			if kind == kindOwnership {
				value = w.enc.ownership(prefix, key, ownershipRecord{ownerID: r.OwnerID, etag: r.ETag, modified: r.LastModifiedTime.UnixNano()})
			} else {
				value = w.enc.checkpoint(prefix, key, checkpointRecord{offset: r.Offset, sequence: r.SequenceNumber, writtenAt: r.WrittenAt.UnixNano()})
			}
			if err := b.Put(key, value); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
}

// DeleteRecords deletes the records with the type and coordinates of the
// given ones (other fields are ignored) in one transaction, and returns how
// many existed.
func (s *Store) DeleteRecords(ctx context.Context, records []Record) (int, error) {
	for i, r := range records {
		if _, err := checkRecordKey(r); err != nil {
			return 0, fmt.Errorf("%s: records[%d] (%s): %w", s.path, i, coordinates(r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID), err)
		}
	}
	deleted := 0
	err := s.committer.write(ctx, func(w *writeTx) (error, error) {
		deleted = 0
		for _, r := range records {
			kind, _ := r.Type.kind()
			b, err := recordBucket(w.Tx, newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup), kind)
			if err != nil {
				return nil, s.recordError(string(r.Type), r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID, err)
			}
			key := appendPartitionKey(nil, r.PartitionID)
			if b == nil || b.Get(key) == nil {
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
// returns how many records it held. Fields of scope must be given from the
// left: a namespace, optionally an event hub, optionally a consumer group.
func (s *Store) DeleteScope(ctx context.Context, scope Scope) (int, error) {
	names := []string{scope.Namespace, scope.EventHub, scope.ConsumerGroup}
	for len(names) > 0 && names[len(names)-1] == "" {
		names = names[:len(names)-1]
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("%s: DeleteScope: %w: no namespace given", s.path, ErrInvalidArgument)
	}
	folded := make([][]byte, len(names))
	for i, name := range names {
		if err := checkName([...]string{"namespace", "event hub", "consumer group"}[i], name, true); err != nil {
			return 0, fmt.Errorf("%s: DeleteScope(%s): %w", s.path, coordinates(scope.Namespace, scope.EventHub, scope.ConsumerGroup, ""), err)
		}
		folded[i] = appendFolded(nil, name)
	}
	deleted := 0
	err := s.committer.write(ctx, func(w *writeTx) (error, error) {
		deleted = 0
		parent := w.Bucket(bucketData)
		for _, name := range folded[:len(folded)-1] {
			if parent == nil {
				return nil, nil
			}
			parent = parent.Bucket(name)
		}
		last := folded[len(folded)-1]
		if parent == nil || parent.Bucket(last) == nil {
			return nil, nil
		}
		deleted = countTree(parent.Bucket(last))
		w.forgetBuckets()
		return nil, parent.DeleteBucket(last)
	})
	if err != nil {
		// A call whose context ended may still be committing; do not
		// read what it writes.
		return 0, err
	}
	return deleted, nil
}

// countTree counts the records (non-bucket keys) below b.
func countTree(b *bolt.Bucket) int {
	n := 0
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil {
			n += countTree(b.Bucket(k))
		} else {
			n++
		}
		return nil
	})
	return n
}

// Check verifies the whole file: bbolt's page structure, the format marker,
// and the checksum and encoding of every record. It returns nil for a
// healthy file, or the problems found (at most maxCheckProblems), each an
// ErrCorrupt naming the file, joined with errors.Join. Writes wait while it
// runs; reads do not.
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
		for err := range tx.Check() {
			if len(problems) < maxCheckProblems {
				problems = append(problems, checkProblem(s.path, err))
			}
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
// coordinates, this also finds a damaged bucket name: the records below it
// no longer match their path. A key in a group other than the two record
// buckets is a damaged kind bucket name, whose records lists would miss.
func (s *Store) recordProblems(tx *bolt.Tx, problems []error, max int) ([]error, error) {
	add := func(err error) {
		if len(problems) < max {
			problems = append(problems, checkProblem(s.path, err))
		}
	}
	err := s.walkGroups(tx, Scope{}, func(g groupKey, groupBucket *bolt.Bucket) error {
		_ = groupBucket.ForEach(func(name, _ []byte) error {
			if !bytes.Equal(name, bucketOwnership) && !bytes.Equal(name, bucketCheckpoint) {
				add(fmt.Errorf("%s: unexpected key %q in the group", coordinates(string(g.namespace), string(g.hub), string(g.group), ""), name))
			}
			return nil
		})
		for _, kind := range []recordKind{kindOwnership, kindCheckpoint} {
			b, err := s.kindBucket(groupBucket, kind)
			if err != nil {
				add(err)
			}
			if b == nil {
				continue
			}
			prefix := g.checksumPrefix(kind)
			_ = b.ForEach(func(k, v []byte) error {
				if _, err := decodeRecord(g, kind, prefix, k, v); err != nil {
					add(err)
				}
				return nil
			})
		}
		return nil
	})
	return problems, err
}

// checkProblem is one problem in Check's report: an ErrCorrupt naming the
// file, without the advice to run check that other errors carry.
func checkProblem(path string, err error) error {
	return fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
}

// maxCheckProblems bounds Check's report on a badly damaged file.
const maxCheckProblems = 100

// Backup writes a consistent copy of the store to dest, a path that must
// not exist yet, while the store stays in use. The copy is synced before
// Backup returns and has mode 0600.
func (s *Store) Backup(ctx context.Context, dest string) error {
	return writeNewFile(dest, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = s.view(ctx, func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(f)
			return err
		})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// Compact writes a compacted copy of the store to dest, a path that must
// not exist yet, leaving behind the space freed by deleted records.
func (s *Store) Compact(ctx context.Context, dest string) error {
	return writeNewFile(dest, func(tmp string) error {
		dst, err := bolt.Open(tmp, 0o600, nil)
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

// writeNewFile creates dest through a temporary file in its directory:
// fill writes the file at the temporary path, and only a complete file is
// synced and linked into place, so dest is either absent or whole. An
// existing dest is an error (fs.ErrExist).
func writeNewFile(dest string, fill func(tmp string) error) error {
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("%s: %w", dest, fs.ErrExist)
	}
	dir := filepath.Dir(dest)
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Close(); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := fsync.Path(tmp); err != nil {
		return err
	}
	if err := os.Link(tmp, dest); err != nil {
		return err
	}
	return fsync.Path(dir)
}
