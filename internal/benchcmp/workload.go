package benchcmp

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
	bolt "go.etcd.io/bbolt"
)

// The workload. Every case works on one consumer group of Partitions
// partitions, as a processor of a 32-partition event hub would. The Go
// benchmarks of the root package use the same helpers, so `go test -bench`
// and the harness measure the same calls.
const (
	Namespace     = "bench.servicebus.windows.net"
	EventHub      = "orders"
	ConsumerGroup = "$Default"
	Partitions    = 32
	// OwnerID is the processor that owns every partition.
	OwnerID = "processor-0f8fad5b-d9cb-469f-a165-70867728950e"
)

// Checkpoint returns a checkpoint of partition with an offset and sequence
// number shaped like the ones Event Hubs hands out.
func Checkpoint(partition int, seq int64) azeventhubs.Checkpoint {
	offset := strconv.FormatInt(4096+seq*512, 10)
	return azeventhubs.Checkpoint{
		FullyQualifiedNamespace: Namespace,
		EventHubName:            EventHub,
		ConsumerGroup:           ConsumerGroup,
		PartitionID:             strconv.Itoa(partition),
		Offset:                  &offset,
		SequenceNumber:          &seq,
	}
}

// Ownerships returns first claims (no etag) of partitions 0..n-1 for
// OwnerID.
func Ownerships(n int) []azeventhubs.Ownership {
	out := make([]azeventhubs.Ownership, n)
	for i := range out {
		out[i] = azeventhubs.Ownership{
			FullyQualifiedNamespace: Namespace,
			EventHubName:            EventHub,
			ConsumerGroup:           ConsumerGroup,
			PartitionID:             strconv.Itoa(i),
			OwnerID:                 OwnerID,
		}
	}
	return out
}

// Claim claims ownerships and fails unless every claim wins, which is what
// a processor renewing its own partitions expects. It returns the claimed
// ownerships, whose etags the next renewal must name.
func Claim(ctx context.Context, s azeventhubs.CheckpointStore, ownerships []azeventhubs.Ownership) ([]azeventhubs.Ownership, error) {
	won, err := s.ClaimOwnership(ctx, ownerships, nil)
	if err != nil {
		return nil, err
	}
	if len(won) != len(ownerships) {
		return nil, fmt.Errorf("benchcmp: %d of %d claims won; a renewal with current etags must win them all", len(won), len(ownerships))
	}
	return won, nil
}

// Fill gives the consumer group Partitions ownerships and checkpoints, so
// that lists have something to return. It returns the ownerships as
// claimed, ready for renewal.
func Fill(ctx context.Context, s azeventhubs.CheckpointStore) ([]azeventhubs.Ownership, error) {
	for p := range Partitions {
		if err := s.SetCheckpoint(ctx, Checkpoint(p, 1), nil); err != nil {
			return nil, err
		}
	}
	return Claim(ctx, s, Ownerships(Partitions))
}

// ListOwnership lists the group's ownerships and checks that all
// Partitions are there.
func ListOwnership(ctx context.Context, s azeventhubs.CheckpointStore) error {
	got, err := s.ListOwnership(ctx, Namespace, EventHub, ConsumerGroup, nil)
	if err == nil && len(got) != Partitions {
		err = fmt.Errorf("benchcmp: ListOwnership returned %d ownerships, want %d", len(got), Partitions)
	}
	return err
}

// ListCheckpoints lists the group's checkpoints and checks that all
// Partitions are there.
func ListCheckpoints(ctx context.Context, s azeventhubs.CheckpointStore) error {
	got, err := s.ListCheckpoints(ctx, Namespace, EventHub, ConsumerGroup, nil)
	if err == nil && len(got) != Partitions {
		err = fmt.Errorf("benchcmp: ListCheckpoints returned %d checkpoints, want %d", len(got), Partitions)
	}
	return err
}

// SeedOtherGroups adds groups other consumer groups of the same event hub,
// each with partitions ownerships and checkpoints, so that lists can be
// measured in a file where the benchmarked group is one among many. It
// writes through PutRecords, a few thousand records per transaction,
// because one durable commit per record would take minutes.
func SeedOtherGroups(ctx context.Context, s *boltstore.Store, groups, partitions int) error {
	const perCommit = 8192
	now := time.Now()
	batch := make([]boltstore.Record, 0, perCommit)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.PutRecords(ctx, batch)
		batch = batch[:0]
		return err
	}
	for g := range groups {
		group := fmt.Sprintf("group-%05d", g)
		for p := range partitions {
			id := strconv.Itoa(p)
			seq := int64(g*partitions + p)
			offset := strconv.FormatInt(4096+seq*512, 10)
			batch = append(batch,
				boltstore.Record{
					Type: boltstore.RecordOwnership, Namespace: Namespace, EventHub: EventHub, ConsumerGroup: group, PartitionID: id,
					OwnerID: OwnerID, ETag: fmt.Sprintf("00000000-0000-4000-8000-%012d", seq), LastModifiedTime: now,
				},
				boltstore.Record{
					Type: boltstore.RecordCheckpoint, Namespace: Namespace, EventHub: EventHub, ConsumerGroup: group, PartitionID: id,
					Offset: &offset, SequenceNumber: &seq, WrittenAt: now,
				})
			if len(batch) >= perCommit {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// PlainBolt is the reference for the store's own cost: bbolt's Update with
// one Put of a checkpoint-sized value per commit, with bbolt's default
// options, as a naive store would do it. Its bucket is either a top-level
// one holding that one value (bbolt keeps it inline: the cheapest commit
// bbolt makes) or one bucket per name, as a naive store nests its records
// (and format 2 of the store did), among as many values as a group holds.
type PlainBolt struct {
	db     *bolt.DB
	bucket [][]byte // the path to the bucket written to
	value  []byte
}

var (
	plainBucket = [][]byte{[]byte("checkpoints")}
	// nestedBuckets is one bucket per name: data, namespace, event hub,
	// consumer group, kind, as format 2 of the store nested them.
	nestedBuckets = [][]byte{[]byte("data"), []byte(strings.ToLower(Namespace)), []byte(strings.ToLower(EventHub)), []byte(strings.ToLower(ConsumerGroup)), []byte("c")}
	// nestedSibling holds a group's ownership records beside nestedBuckets.
	nestedSibling = [][]byte{[]byte("data"), []byte(strings.ToLower(Namespace)), []byte(strings.ToLower(EventHub)), []byte(strings.ToLower(ConsumerGroup)), []byte("o")}
)

// checkpointValueSize is about the size of an encoded checkpoint record.
const checkpointValueSize = 40

func newPlainBolt(db *bolt.DB, bucket [][]byte) *PlainBolt {
	return &PlainBolt{db: db, bucket: bucket, value: make([]byte, checkpointValueSize)}
}

// OpenPlainBolt opens (creating) a plain bbolt file at path, written to
// with one value in a top-level bucket.
func OpenPlainBolt(path string) (*PlainBolt, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, err
	}
	return newPlainBolt(db, plainBucket), nil
}

// OpenNestedBolt opens (creating) a plain bbolt file at path whose buckets
// are nested one per name, as format 2 of the store nested them, holding
// Partitions values in each of two sibling buckets as a group holds
// ownerships and checkpoints.
func OpenNestedBolt(path string) (*PlainBolt, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return nil, err
	}
	p := newPlainBolt(db, nestedBuckets)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, path := range [][][]byte{nestedSibling, nestedBuckets} {
			b, err := createBuckets(tx, path)
			if err != nil {
				return err
			}
			for i := range Partitions {
				if err := b.Put([]byte(strconv.Itoa(i)), p.value); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

func createBuckets(tx *bolt.Tx, path [][]byte) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(path[0])
	for _, name := range path[1:] {
		if err != nil {
			return nil, err
		}
		b, err = b.CreateBucketIfNotExists(name)
	}
	return b, err
}

// Put commits one Put of partition 0's value in its own transaction.
func (p *PlainBolt) Put(i int) error {
	return p.db.Update(func(tx *bolt.Tx) error {
		b, err := createBuckets(tx, p.bucket)
		if err != nil {
			return err
		}
		p.value[0] = byte(i)
		return b.Put([]byte("0"), p.value)
	})
}

// Close closes the file.
func (p *PlainBolt) Close() error { return p.db.Close() }
