package boltstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// ClaimOwnership claims each ownership whose ETag matches the stored one. A
// nil or empty ETag claims only a partition that has no ownership record
// yet. An empty OwnerID relinquishes the partition. Claims that lose are
// left out of the result; that is not an error. Each claim that wins gets a
// fresh etag and the store's clock as LastModifiedTime, and the result
// carries both. All claims of one call are decided and written in one
// transaction, also against other processes using the file; the call
// returns after the transaction is on disk.
func (s *Store) ClaimOwnership(ctx context.Context, ownerships []azeventhubs.Ownership, _ *azeventhubs.ClaimOwnershipOptions) ([]azeventhubs.Ownership, error) {
	if len(ownerships) == 0 {
		return nil, nil
	}
	claims := make([]claim, len(ownerships))
	keyBytes := 0
	for _, o := range ownerships {
		keyBytes += len(o.FullyQualifiedNamespace) + len(o.EventHubName) + len(o.ConsumerGroup) + 3 + 2 + len(o.PartitionID)
	}
	keys := make([]byte, 0, keyBytes)
	for i, o := range ownerships {
		// The claims of one call are nearly always of one group: check,
		// fold and checksum its coordinates once.
		repeated := i > 0 && sameGroup(ownerships[i-1], o)
		if err := checkOwnership(o, !repeated); err != nil {
			return nil, fmt.Errorf("%s: ownerships[%d] (%s): %w", s.path, i, coordinates(o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup, o.PartitionID), err)
		}
		c := &claims[i]
		c.ownership = o
		if repeated {
			p := &claims[i-1]
			c.group, c.prefix = p.group, p.prefix
		} else {
			c.group = newGroupKey(o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup)
			c.prefix = c.group.checksumPrefix(kindOwnership)
		}
		// Folding may lengthen a name and make keys grow elsewhere; the
		// keys taken before stay valid where they are.
		start := len(keys)
		keys = appendPartitionKey(append(keys, c.group.key...), o.PartitionID)
		c.key = keys[start:len(keys):len(keys)]
		c.partitionKey = c.key[len(c.group.key):]
	}
	linkRepeatedClaims(claims)
	claimed := make([]azeventhubs.Ownership, 0, len(claims))
	etags := make([]azcore.ETag, len(claims))
	fresh := newETags(len(claims)) // made here, not in the shared transaction
	err := s.committer.write(ctx, func(w *writeTx) (error, error) {
		claimed = claimed[:0]
		if err := s.decideClaims(w.Tx, claims); err != nil {
			return err, nil
		}
		now := s.now()
		b, err := w.recordBucket(kindOwnership)
		if err != nil {
			return nil, err
		}
		var id []byte
		idFor := -1 // the claim whose group id is
		for i := range claims {
			c := &claims[i]
			if !c.wins {
				continue
			}
			if idFor < 0 || !sameGroup(claims[idFor].ownership, c.ownership) {
				if id, err = w.groupID(c.group); err != nil {
					return nil, err
				}
				idFor = i
			}
			rec := ownershipRecord{ownerID: c.ownership.OwnerID, etag: fresh[i], modified: now.UnixNano()}
			if err := b.Put(recordKey(id, c.partitionKey), w.enc.ownership(c.prefix, c.partitionKey, rec)); err != nil {
				return nil, err
			}
			won := c.ownership
			etags[i] = azcore.ETag(rec.etag)
			won.ETag, won.LastModifiedTime = &etags[i], now
			claimed = append(claimed, won)
		}
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// claim is one ownership of a ClaimOwnership call on its way through the
// transaction.
type claim struct {
	ownership    azeventhubs.Ownership
	group        groupKey
	key          []byte // group key and partition key: the partition's name
	partitionKey []byte // the end of key
	prefix       uint32 // group.checksumPrefix(kindOwnership)
	earlier      int    // the last claim before this one on its partition, or -1
	wins         bool
	taken        bool // this claim or an earlier one on its partition wins
}

// linkRepeatedClaims points each claim at the last one before it on the
// same partition, if any: without a map, which would cost an allocation
// per claim, for a case that is rare.
func linkRepeatedClaims(claims []claim) {
	order := make([]int, len(claims))
	for i := range order {
		order[i] = i
		claims[i].earlier = -1
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(claims[a].key, claims[b].key) })
	for i := 1; i < len(order); i++ {
		if bytes.Equal(claims[order[i-1]].key, claims[order[i]].key) {
			claims[order[i]].earlier = order[i-1]
		}
	}
}

// sameGroup reports whether two ownerships are of the same consumer group,
// spelled alike.
func sameGroup(a, b azeventhubs.Ownership) bool {
	return a.ConsumerGroup == b.ConsumerGroup && a.EventHubName == b.EventHubName && a.FullyQualifiedNamespace == b.FullyQualifiedNamespace
}

// decideClaims compares every claim with the stored etag before anything
// is written. Claims of one call on the same partition are decided in
// order: a later one sees the etag an earlier winner will write, which no
// caller can know, so it loses.
func (s *Store) decideClaims(tx *bolt.Tx, claims []claim) error {
	b, err := recordBucket(tx, kindOwnership)
	if err != nil {
		o := claims[0].ownership
		return s.recordError("ownership", o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup, "", err)
	}
	var records *bolt.Cursor // one for all lookups: each Get would make its own
	if b != nil {
		records = b.Cursor()
	}
	var id, key []byte // the group id of claims[idFor], a record key
	idFor := -1
	for i := range claims {
		c := &claims[i]
		if c.earlier >= 0 && claims[c.earlier].taken {
			c.wins, c.taken = false, true
			continue
		}
		if idFor < 0 || !sameGroup(claims[idFor].ownership, c.ownership) {
			if id, err = lookupGroup(tx, c.group); err != nil {
				o := c.ownership
				return s.recordError("ownership", o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup, "", err)
			}
			idFor = i
		}
		var current []byte
		exists := false
		if records != nil && id != nil {
			key = append(append(key[:0], id...), c.partitionKey...)
			if k, value := records.Seek(key); value != nil && bytes.Equal(k, key) {
				_, etag, _, err := decodeOwnership(c.prefix, c.partitionKey, value)
				if err != nil {
					o := c.ownership
					return s.recordError("ownership", o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup, o.PartitionID, err)
				}
				current, exists = etag, true
			}
		}
		want := ""
		if c.ownership.ETag != nil {
			want = string(*c.ownership.ETag)
		}
		if want == "" {
			c.wins = !exists
		} else {
			c.wins = exists && string(current) == want
		}
		c.taken = c.wins
	}
	return nil
}

// newETags returns n fresh etags, random (version 4) UUIDs, from one read
// of the system's randomness rather than n.
func newETags(n int) []string {
	random := make([]byte, 16*n)
	_, _ = rand.Read(random) // crypto/rand.Read does not fail
	source := bytes.NewReader(random)
	etags := make([]string, n)
	for i := range etags {
		id, _ := uuid.NewRandomFromReader(source) // reads 16 of the bytes above
		etags[i] = id.String()
	}
	return etags
}

// checkOwnership validates a claim; its consumer group's coordinates only
// with checkCoordinates, as the previous claim's are already checked.
func checkOwnership(o azeventhubs.Ownership, checkCoordinates bool) error {
	if checkCoordinates {
		if err := checkGroup(o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup); err != nil {
			return err
		}
	}
	if err := checkName("PartitionID", o.PartitionID, true); err != nil {
		return err
	}
	// The etag is only compared with stored ones: one that no store gave
	// out loses the claim like a stale one, rather than failing the call's
	// other claims.
	return checkName("OwnerID", o.OwnerID, false)
}

// coordinates formats a record's address for error messages.
func coordinates(namespace, hub, group, partition string) string {
	if partition == "" {
		return fmt.Sprintf("namespace %q, event hub %q, consumer group %q", namespace, hub, group)
	}
	return fmt.Sprintf("namespace %q, event hub %q, consumer group %q, partition %q", namespace, hub, group, partition)
}

// recordError reports a damaged record with its coordinates.
func (s *Store) recordError(kind, namespace, hub, group, partition string, err error) error {
	return corruptError(s.path, fmt.Sprintf("%s record of %s: %v", kind, coordinates(namespace, hub, group, partition), err))
}

// ListOwnership returns every ownership record of one consumer group, in
// partition order (numeric ids numerically), with the coordinates spelled
// as in the call. An unknown group gives an empty result.
func (s *Store) ListOwnership(ctx context.Context, namespace, hub, group string, _ *azeventhubs.ListOwnershipOptions) ([]azeventhubs.Ownership, error) {
	if err := checkGroup(namespace, hub, group); err != nil {
		return nil, fmt.Errorf("%s: ListOwnership(%s): %w", s.path, coordinates(namespace, hub, group, ""), err)
	}
	g := newGroupKey(namespace, hub, group)
	var result []azeventhubs.Ownership
	err := s.view(ctx, func(tx *bolt.Tx) error {
		records, ok, err := groupRecords(tx, g, kindOwnership)
		if err != nil {
			return s.recordError("ownership", namespace, hub, group, "", err)
		}
		if !ok {
			return nil
		}
		n, size := countRecords(records)
		result = make([]azeventhubs.Ownership, 0, n)
		etags := make([]azcore.ETag, n)
		text := newTextSlab(size)
		prefix := g.checksumPrefix(kindOwnership)
		for k, v := records.first(); k != nil; k, v = records.next() {
			id, ok := partitionIDBytes(k)
			if !ok {
				return s.recordError("ownership", namespace, hub, group, fmt.Sprintf("%x", k), fmt.Errorf("malformed partition key"))
			}
			owner, etag, modified, err := decodeOwnership(prefix, k, v)
			if err != nil {
				return s.recordError("ownership", namespace, hub, group, string(id), err)
			}
			i := len(result)
			etags[i] = azcore.ETag(text.add(etag))
			result = append(result, azeventhubs.Ownership{
				FullyQualifiedNamespace: namespace,
				EventHubName:            hub,
				ConsumerGroup:           group,
				PartitionID:             text.add(id),
				OwnerID:                 text.addShared(owner),
				LastModifiedTime:        time.Unix(0, modified).UTC(),
				ETag:                    &etags[i],
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// countRecords counts a group's records and the bytes of their partition
// keys and values, which bound the text a list copies out of them.
func countRecords(records groupCursor) (n, size int) {
	for k, v := records.first(); k != nil; k, v = records.next() {
		n++
		size += len(k) + len(v)
	}
	return n, size
}

// textSlab copies the strings of one list into a single allocation. bbolt's
// bytes are only valid inside the transaction, so each string must be
// copied; one slab instead of one allocation per string keeps lists fast.
type textSlab struct {
	b      strings.Builder
	shared []string // repeated values (owner ids) are stored once
}

func newTextSlab(size int) *textSlab {
	t := &textSlab{}
	t.b.Grow(size)
	return t
}

// add copies p into the slab. The slab never outgrows the capacity given to
// newTextSlab, so strings handed out earlier stay valid.
func (t *textSlab) add(p []byte) string {
	start := t.b.Len()
	t.b.Write(p)
	return t.b.String()[start:]
}

// addShared is add for values that repeat across records.
func (t *textSlab) addShared(p []byte) string {
	for _, s := range t.shared {
		if s == string(p) {
			return s
		}
	}
	s := t.add(p)
	if len(t.shared) < 8 {
		t.shared = append(t.shared, s)
	}
	return s
}
