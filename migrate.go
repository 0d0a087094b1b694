package boltstore

import (
	"bytes"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Format versions 1 and 2 keep records in nested buckets, one per name:
//
//	data / <namespace> / <event hub> / <consumer group> / o or c / <partition key>
//
// The store converts such a file to the flat layout (keys.go) when it
// opens it, in one durable commit, so that no file is ever half converted.
// Record values move unchanged: their checksums cover the same
// coordinates in either layout.
var bucketData = []byte("data")

// migrateLayout converts a file of format version 1 or 2, open as db on
// the locked descriptor f, to the current layout. The file is verified
// first, and every record's checksum as it moves: a damaged file is
// refused as it is, for Salvage or a backup, not converted.
func migrateLayout(path string, db *bolt.DB, f *os.File, version byte) error {
	tx, err := db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after a commit
	if err := verifyStructure(path, tx); err != nil {
		return err
	}
	if err := moveNestedRecords(tx); err != nil {
		return corruptError(path, fmt.Sprintf("converting it from the nested layout of format version %d: %v", version, err))
	}
	// Older boltstores refuse a file of a newer version.
	if err := tx.Bucket(bucketMarker).Put(keyFormat, []byte{FormatVersion}); err != nil {
		return err
	}
	if err := commitDurably(tx, f, false, nil); err != nil {
		return fmt.Errorf("%s: converting it from the nested layout of format version %d: %w", path, version, err)
	}
	return nil
}

// moveNestedRecords moves every record below data into the flat record
// buckets and deletes data. Every key above the records must name a
// bucket: a plain value there is a damaged bucket flag, which would hide
// the records below it.
func moveNestedRecords(tx *bolt.Tx) error {
	for _, name := range layoutBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("bucket %q: %w", name, err)
		}
	}
	data, err := childBucket(tx.Cursor().Bucket(), bucketData)
	if err != nil || data == nil {
		return err
	}
	err = eachChild(data, func(namespace []byte, nsBucket *bolt.Bucket) error {
		return eachChild(nsBucket, func(hub []byte, hubBucket *bolt.Bucket) error {
			return eachChild(hubBucket, func(group []byte, groupBucket *bolt.Bucket) error {
				g := groupKeyOf(namespace, hub, group)
				id, err := groupIDFor(tx, g)
				if err != nil {
					return err
				}
				return eachChild(groupBucket, func(name []byte, records *bolt.Bucket) error {
					var kind recordKind
					switch {
					case bytes.Equal(name, bucketOwnership):
						kind = kindOwnership
					case bytes.Equal(name, bucketCheckpoint):
						kind = kindCheckpoint
					default:
						return fmt.Errorf("unexpected bucket %q in group %s", name, coordinates(string(namespace), string(hub), string(group), ""))
					}
					return records.ForEach(func(k, v []byte) error {
						if v == nil {
							return fmt.Errorf("unexpected bucket %q among the %s records of %s", k, kind.recordType(), coordinates(string(namespace), string(hub), string(group), ""))
						}
						if _, err := decodeRecord(g, kind, g.checksumPrefix(kind), k, v); err != nil {
							return err
						}
						// Cloned: the pages they lie on are freed below.
						return tx.Bucket(kind.bucket()).Put(recordKey(id, k), bytes.Clone(v))
					})
				})
			})
		})
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket(bucketData)
}

// eachChild calls fn for each child bucket of parent.
func eachChild(parent *bolt.Bucket, fn func(name []byte, child *bolt.Bucket) error) error {
	return parent.ForEach(func(name, v []byte) error {
		if v != nil {
			return fmt.Errorf("bucket %q is stored as a plain value", name)
		}
		return fn(name, parent.Bucket(name))
	})
}
