package boltstore

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Unchanged is a condition on an edit (PutRecords, DeleteRecords,
// DeleteScope): the edit is made only if no partition it names has changed
// owner since the caller read it. It closes the gap between a tool's
// reading the file, deciding that nobody owns a partition, and writing:
// a processor that claims or renews the partition meanwhile makes the
// edit fail with ErrChanged instead of being overwritten by it. Make one
// with OwnershipsAsRead; the zero Unchanged names no partition and always
// holds.
type Unchanged struct {
	partitions []readOwnership
	index      map[string]int // by partitionRef
}

// readOwnership is one partition's ownership as the caller read it.
type readOwnership struct {
	group     groupKey
	partition string
	etag      string
	owned     bool // an ownership record was read
}

// OwnershipsAsRead returns the condition that every partition with a
// record among records (of either type: only the coordinates count) still
// has the ownership record among them, with its etag, or still has none if
// none is among them. Pass the records an edit was decided on, as Records
// returned them.
func OwnershipsAsRead(records []Record) Unchanged {
	u := Unchanged{index: map[string]int{}}
	for _, r := range records {
		g := newGroupKey(r.Namespace, r.EventHub, r.ConsumerGroup)
		ref := partitionRef(g, []byte(r.PartitionID))
		i, seen := u.index[ref]
		if !seen {
			i = len(u.partitions)
			u.index[ref] = i
			u.partitions = append(u.partitions, readOwnership{group: g, partition: r.PartitionID})
		}
		if r.Type == RecordOwnership {
			u.partitions[i].etag, u.partitions[i].owned = r.ETag, true
		}
	}
	return u
}

// check reports, as changed (ErrChanged), the first partition whose
// ownership is no longer as read; a damaged record is fatal (ErrCorrupt).
func (u Unchanged) check(tx *bolt.Tx, path string) (changed, fatal error) {
	for _, p := range u.partitions {
		g := p.group
		where := coordinates(string(g.namespace), string(g.hub), string(g.group), p.partition)
		records, ok, err := groupRecords(tx, g, kindOwnership)
		if err != nil {
			return nil, corruptError(path, fmt.Sprintf("ownership record of %s: %v", where, err))
		}
		var etag []byte
		exists := false
		if ok {
			partitionKey := appendPartitionKey(nil, p.partition)
			key := recordKey(records.groupID, partitionKey)
			if k, value := records.c.Seek(key); value != nil && bytes.Equal(k, key) {
				if _, etag, _, err = decodeOwnership(g.checksumPrefix(kindOwnership), partitionKey, value); err != nil {
					return nil, corruptError(path, fmt.Sprintf("ownership record of %s: %v", where, err))
				}
				exists = true
			}
		}
		switch {
		case exists && !p.owned:
			return fmt.Errorf("%s: %s: %w: it was claimed", path, where, ErrChanged), nil
		case !exists && p.owned:
			return fmt.Errorf("%s: %s: %w: its ownership was deleted", path, where, ErrChanged), nil
		case exists && string(etag) != p.etag:
			return fmt.Errorf("%s: %s: %w: its etag is %q, not %q as read", path, where, ErrChanged, etag, p.etag), nil
		}
	}
	return nil, nil
}

// partitionRef identifies a partition of group g in Unchanged's index.
func partitionRef(g groupKey, partitionID []byte) string {
	return string(g.key) + "\x00" + string(partitionID)
}

// names reports whether u names partition partitionID of group g.
func (u Unchanged) names(g groupKey, partitionID []byte) bool {
	_, ok := u.index[partitionRef(g, partitionID)]
	return ok
}

// checkAll checks every one of conditions, as check does.
func checkAll(tx *bolt.Tx, path string, conditions []Unchanged) (changed, fatal error) {
	for _, u := range conditions {
		if changed, fatal = u.check(tx, path); changed != nil || fatal != nil {
			return changed, fatal
		}
	}
	return nil, nil
}
