package boltstore

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	bolt "go.etcd.io/bbolt"
)

// SetCheckpoint stores a partition's checkpoint, replacing the previous one
// whatever its sequence number (resets are legitimate). Like the official
// store it does not check ownership. A checkpoint needs an Offset, a
// SequenceNumber or both. The call returns after the write is on disk.
func (s *Store) SetCheckpoint(ctx context.Context, cp azeventhubs.Checkpoint, _ *azeventhubs.SetCheckpointOptions) error {
	if err := checkCheckpoint(cp); err != nil {
		return fmt.Errorf("%s: SetCheckpoint(%s): %w", s.path, coordinates(cp.FullyQualifiedNamespace, cp.EventHubName, cp.ConsumerGroup, cp.PartitionID), err)
	}
	g := newGroupKey(cp.FullyQualifiedNamespace, cp.EventHubName, cp.ConsumerGroup)
	rec := checkpointRecord{offset: cp.Offset, sequence: cp.SequenceNumber}
	return s.committer.write(ctx, s.checkpointWrite(g, appendPartitionKey(nil, cp.PartitionID), rec))
}

// checkpointWrite is the write of SetCheckpoint: rec as the checkpoint of
// a group's partition, stamped with the store's clock when it is applied.
func (s *Store) checkpointWrite(g groupKey, partitionKey []byte, rec checkpointRecord) applyFunc {
	return func(w *writeTx) (error, error) {
		id, err := w.groupID(g)
		if err != nil {
			return nil, err
		}
		b, err := w.recordBucket(kindCheckpoint)
		if err != nil {
			return nil, err
		}
		rec.writtenAt = s.now().UnixNano()
		return nil, b.Put(recordKey(id, partitionKey), w.enc.checkpoint(g.checksumPrefix(kindCheckpoint), partitionKey, rec))
	}
}

func checkCheckpoint(cp azeventhubs.Checkpoint) error {
	if err := checkGroup(cp.FullyQualifiedNamespace, cp.EventHubName, cp.ConsumerGroup); err != nil {
		return err
	}
	if err := checkName("PartitionID", cp.PartitionID, true); err != nil {
		return err
	}
	if cp.Offset == nil && cp.SequenceNumber == nil {
		return fmt.Errorf("%w: checkpoint has neither Offset nor SequenceNumber", ErrInvalidArgument)
	}
	if cp.Offset != nil {
		return checkName("Offset", *cp.Offset, false)
	}
	return nil
}

// ListCheckpoints returns every checkpoint of one consumer group, in
// partition order, with the coordinates spelled as in the call. An unknown
// group gives an empty result.
func (s *Store) ListCheckpoints(ctx context.Context, namespace, hub, group string, _ *azeventhubs.ListCheckpointsOptions) ([]azeventhubs.Checkpoint, error) {
	if err := checkGroup(namespace, hub, group); err != nil {
		return nil, fmt.Errorf("%s: ListCheckpoints(%s): %w", s.path, coordinates(namespace, hub, group, ""), err)
	}
	g := newGroupKey(namespace, hub, group)
	var result []azeventhubs.Checkpoint
	err := s.view(ctx, func(tx *bolt.Tx) error {
		records, ok, err := groupRecords(tx, g, kindCheckpoint)
		if err != nil {
			return s.recordError("checkpoint", namespace, hub, group, "", err)
		}
		if !ok {
			return nil
		}
		n, size := countRecords(records)
		result = make([]azeventhubs.Checkpoint, 0, n)
		offsets := make([]string, n)
		sequences := make([]int64, n)
		text := newTextSlab(size)
		prefix := g.checksumPrefix(kindCheckpoint)
		for k, v := records.first(); k != nil; k, v = records.next() {
			id, ok := partitionIDBytes(k)
			if !ok {
				return s.recordError("checkpoint", namespace, hub, group, fmt.Sprintf("%x", k), fmt.Errorf("malformed partition key"))
			}
			offset, hasOffset, sequence, hasSequence, _, err := decodeCheckpoint(prefix, k, v)
			if err != nil {
				return s.recordError("checkpoint", namespace, hub, group, string(id), err)
			}
			i := len(result)
			cp := azeventhubs.Checkpoint{
				FullyQualifiedNamespace: namespace,
				EventHubName:            hub,
				ConsumerGroup:           group,
				PartitionID:             text.add(id),
			}
			if hasOffset {
				offsets[i] = text.add(offset)
				cp.Offset = &offsets[i]
			}
			if hasSequence {
				sequences[i] = sequence
				cp.SequenceNumber = &sequences[i]
			}
			result = append(result, cp)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}
