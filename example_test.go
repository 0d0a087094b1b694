package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
)

// A processor uses the store like any other checkpoint store. The consumer
// client here points at a local emulator address; creating it and the
// processor does not connect, Run does.
func Example() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := boltstore.Open(filepath.Join(dir, "checkpoints.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	const connectionString = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=orders;UseDevelopmentEmulator=true"
	consumerClient, err := azeventhubs.NewConsumerClientFromConnectionString(connectionString, "", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer consumerClient.Close(context.Background())

	processor, err := azeventhubs.NewProcessor(consumerClient, store, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Start it with processor.Run(ctx) and serve partitions from
	// processor.NextPartitionClient(ctx), as with the Blob checkpoint store.
	fmt.Println(processor != nil)
	// Output: true
}

// Claims are optimistic: a claim names the etag it last saw, and only one
// claimant wins. The loser is left out of the result.
func ExampleStore_ClaimOwnership() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "checkpoints.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()

	partition := azeventhubs.Ownership{
		FullyQualifiedNamespace: "example.servicebus.windows.net",
		EventHubName:            "orders",
		ConsumerGroup:           "$Default",
		PartitionID:             "0",
	}
	// Two instances saw no record (nil ETag): only the first create wins.
	first, second := partition, partition
	first.OwnerID, second.OwnerID = "instance-a", "instance-b"
	won, _ := store.ClaimOwnership(ctx, []azeventhubs.Ownership{first}, nil)
	lost, _ := store.ClaimOwnership(ctx, []azeventhubs.Ownership{second}, nil)
	fmt.Println(len(won), len(lost))

	// instance-b takes over with the etag it listed.
	listed, _ := store.ListOwnership(ctx, partition.FullyQualifiedNamespace, partition.EventHubName, "$default", nil)
	second.ETag = listed[0].ETag
	won, _ = store.ClaimOwnership(ctx, []azeventhubs.Ownership{second}, nil)
	fmt.Println(won[0].OwnerID, *won[0].ETag != *listed[0].ETag)
	// Output:
	// 1 0
	// instance-b true
}

// A tool that edits a live file decides on what it read, and makes its
// edit conditional on that: a processor that renewed the partition in
// between makes the edit fail rather than be overwritten by it.
func ExampleOwnershipsAsRead() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "checkpoints.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()

	claim := azeventhubs.Ownership{FullyQualifiedNamespace: "example.servicebus.windows.net", EventHubName: "orders", ConsumerGroup: "$Default", PartitionID: "0", OwnerID: "instance-a"}
	owned, _ := store.ClaimOwnership(ctx, []azeventhubs.Ownership{claim}, nil)
	read, _ := store.Records(ctx, boltstore.Scope{EventHub: "orders"})

	// The owner renews before the tool writes.
	_, _ = store.ClaimOwnership(ctx, owned, nil)

	sequence := int64(1199)
	reset := boltstore.Record{Type: boltstore.RecordCheckpoint, Namespace: "example.servicebus.windows.net", EventHub: "orders", ConsumerGroup: "$default", PartitionID: "0", SequenceNumber: &sequence, WrittenAt: time.Now()}
	err = store.PutRecords(ctx, []boltstore.Record{reset}, boltstore.OwnershipsAsRead(read))
	fmt.Println(errors.Is(err, boltstore.ErrChanged))
	// Output: true
}
