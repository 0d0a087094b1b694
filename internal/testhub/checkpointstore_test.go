package testhub

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// memCheckpointStore is a map-based azeventhubs.CheckpointStore. Ownership
// claims succeed only when the caller's ETag matches the stored one (or the
// partition is unowned and no ETag is given), like the blob store.
type memCheckpointStore struct {
	mu          sync.Mutex
	etag        int
	ownerships  map[string]azeventhubs.Ownership
	checkpoints map[string]azeventhubs.Checkpoint
}

func newMemCheckpointStore() *memCheckpointStore {
	return &memCheckpointStore{ownerships: map[string]azeventhubs.Ownership{}, checkpoints: map[string]azeventhubs.Checkpoint{}}
}

func storeKey(ns, hub, group, partition string) string {
	return strings.Join([]string{ns, hub, strings.ToLower(group), partition}, "/")
}

func (s *memCheckpointStore) ClaimOwnership(_ context.Context, claims []azeventhubs.Ownership, _ *azeventhubs.ClaimOwnershipOptions) ([]azeventhubs.Ownership, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var won []azeventhubs.Ownership
	for _, o := range claims {
		key := storeKey(o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup, o.PartitionID)
		cur, exists := s.ownerships[key]
		switch {
		case !exists && o.ETag != nil:
			continue
		case exists && (o.ETag == nil || *o.ETag != *cur.ETag):
			continue
		}
		s.etag++
		tag := azcore.ETag(strconv.Itoa(s.etag))
		o.ETag, o.LastModifiedTime = &tag, time.Now().UTC()
		s.ownerships[key] = o
		won = append(won, o)
	}
	return won, nil
}

func (s *memCheckpointStore) ListCheckpoints(_ context.Context, ns, hub, group string, _ *azeventhubs.ListCheckpointsOptions) ([]azeventhubs.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := storeKey(ns, hub, group, "")
	var out []azeventhubs.Checkpoint
	for k, c := range s.checkpoints {
		if strings.HasPrefix(k, prefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *memCheckpointStore) ListOwnership(_ context.Context, ns, hub, group string, _ *azeventhubs.ListOwnershipOptions) ([]azeventhubs.Ownership, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := storeKey(ns, hub, group, "")
	var out []azeventhubs.Ownership
	for k, o := range s.ownerships {
		if strings.HasPrefix(k, prefix) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *memCheckpointStore) SetCheckpoint(_ context.Context, c azeventhubs.Checkpoint, _ *azeventhubs.SetCheckpointOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoints[storeKey(c.FullyQualifiedNamespace, c.EventHubName, c.ConsumerGroup, c.PartitionID)] = c
	return nil
}
