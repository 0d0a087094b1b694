package boltstore

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/google/uuid"
)

// referenceStore is a trivially correct in-memory checkpoint store. The
// conformance suite runs against it too, which shows the suite asserts the
// contract and not boltstore's quirks.
type referenceStore struct {
	mu          sync.Mutex
	ownerships  map[string]azeventhubs.Ownership
	checkpoints map[string]azeventhubs.Checkpoint
}

func newReferenceStore() *referenceStore {
	return &referenceStore{ownerships: map[string]azeventhubs.Ownership{}, checkpoints: map[string]azeventhubs.Checkpoint{}}
}

var errReferenceInvalid = errors.New("reference store: invalid argument")

func referenceGroupKey(ns, hub, group string) string {
	return strings.ToLower(ns) + "\x00" + strings.ToLower(hub) + "\x00" + strings.ToLower(group) + "\x00"
}

func (r *referenceStore) ClaimOwnership(_ context.Context, ownerships []azeventhubs.Ownership, _ *azeventhubs.ClaimOwnershipOptions) ([]azeventhubs.Ownership, error) {
	for _, o := range ownerships {
		if o.FullyQualifiedNamespace == "" || o.EventHubName == "" || o.ConsumerGroup == "" || o.PartitionID == "" {
			return nil, errReferenceInvalid
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var claimed []azeventhubs.Ownership
	for _, o := range ownerships {
		key := referenceGroupKey(o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup) + o.PartitionID
		current, exists := r.ownerships[key]
		if o.ETag == nil || *o.ETag == "" {
			if exists {
				continue
			}
		} else if !exists || *current.ETag != *o.ETag {
			continue
		}
		etag := azcore.ETag(uuid.NewString())
		o.ETag, o.LastModifiedTime = &etag, time.Unix(0, time.Now().UnixNano()).UTC()
		r.ownerships[key] = o
		claimed = append(claimed, o)
	}
	return claimed, nil
}

func (r *referenceStore) SetCheckpoint(_ context.Context, cp azeventhubs.Checkpoint, _ *azeventhubs.SetCheckpointOptions) error {
	if cp.FullyQualifiedNamespace == "" || cp.EventHubName == "" || cp.ConsumerGroup == "" || cp.PartitionID == "" || (cp.Offset == nil && cp.SequenceNumber == nil) {
		return errReferenceInvalid
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checkpoints[referenceGroupKey(cp.FullyQualifiedNamespace, cp.EventHubName, cp.ConsumerGroup)+cp.PartitionID] = cp
	return nil
}

func (r *referenceStore) ListOwnership(_ context.Context, ns, hub, group string, _ *azeventhubs.ListOwnershipOptions) ([]azeventhubs.Ownership, error) {
	if ns == "" || hub == "" || group == "" {
		return nil, errReferenceInvalid
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var list []azeventhubs.Ownership
	for key, o := range r.ownerships {
		if strings.HasPrefix(key, referenceGroupKey(ns, hub, group)) {
			o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup = ns, hub, group
			list = append(list, o)
		}
	}
	slices.SortFunc(list, func(a, b azeventhubs.Ownership) int { return comparePartitionIDs(a.PartitionID, b.PartitionID) })
	return list, nil
}

func (r *referenceStore) ListCheckpoints(_ context.Context, ns, hub, group string, _ *azeventhubs.ListCheckpointsOptions) ([]azeventhubs.Checkpoint, error) {
	if ns == "" || hub == "" || group == "" {
		return nil, errReferenceInvalid
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var list []azeventhubs.Checkpoint
	for key, cp := range r.checkpoints {
		if strings.HasPrefix(key, referenceGroupKey(ns, hub, group)) {
			cp.FullyQualifiedNamespace, cp.EventHubName, cp.ConsumerGroup = ns, hub, group
			list = append(list, cp)
		}
	}
	slices.SortFunc(list, func(a, b azeventhubs.Checkpoint) int { return comparePartitionIDs(a.PartitionID, b.PartitionID) })
	return list, nil
}

// comparePartitionIDs orders numeric ids numerically, before all others,
// which sort bytewise: the order the contract's suite expects.
func comparePartitionIDs(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 63)
	nb, errB := strconv.ParseUint(b, 10, 63)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(na, nb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}
