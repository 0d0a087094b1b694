package testhub

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// TestProcessorsShare32Partitions runs two balanced processors over 32
// partitions while events are published, as a multi-process test would:
// the second starts after the first (greedy) owns every partition and
// steals half of them. Every event must be processed at least once.
func TestProcessorsShare32Partitions(t *testing.T) {
	const partitions, perPartition = 32, 300
	h := startHub(t, partitions)
	ctx := testCtx(t)
	store := newMemCheckpointStore()

	var mu sync.Mutex
	seen := map[string]map[int64]bool{}
	total := 0
	allSeen := make(chan struct{})
	record := func(id string, evs []*azeventhubs.ReceivedEventData) {
		mu.Lock()
		defer mu.Unlock()
		if seen[id] == nil {
			seen[id] = map[int64]bool{}
		}
		for _, e := range evs {
			if !seen[id][e.SequenceNumber] {
				seen[id][e.SequenceNumber] = true
				if total++; total == partitions*perPartition {
					close(allSeen)
				}
			}
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var stolen atomic.Int32
	startProcessor := func(strategy azeventhubs.ProcessorStrategy) {
		proc, err := azeventhubs.NewProcessor(newConsumer(t, h), store, &azeventhubs.ProcessorOptions{
			LoadBalancingStrategy: strategy,
			UpdateInterval:        50 * time.Millisecond,
			StartPositions:        azeventhubs.StartPositions{Default: earliest()},
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := proc.Run(runCtx); err != nil {
				t.Errorf("processor: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			for pc := proc.NextPartitionClient(runCtx); pc != nil; pc = proc.NextPartitionClient(runCtx) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer pc.Close(context.Background())
					for runCtx.Err() == nil {
						recvCtx, cancelRecv := context.WithTimeout(runCtx, 50*time.Millisecond)
						evs, err := pc.ReceiveEvents(recvCtx, 100, nil)
						cancelRecv()
						record(pc.PartitionID(), evs)
						if len(evs) > 0 {
							_ = pc.UpdateCheckpoint(ctx, evs[len(evs)-1], nil)
						}
						var ehErr *azeventhubs.Error
						if errors.As(err, &ehErr) && ehErr.Code == azeventhubs.ErrorCodeOwnershipLost {
							stolen.Add(1)
							return
						}
					}
				}()
			}
		}()
	}

	start := time.Now()
	prod := newProducer(t, h)
	publish := func(half int) {
		for p := half; p < partitions; p += 2 {
			id := strconv.Itoa(p)
			var bodies [][]byte
			for i := 0; i < perPartition; i++ {
				bodies = append(bodies, []byte(id+"/"+strconv.Itoa(i)+"/padding-padding-padding-padding"))
			}
			if half == 0 {
				sendBatch(ctx, t, prod, &azeventhubs.EventDataBatchOptions{PartitionID: &id}, bodies...)
			} else if err := h.Publish(id, bodies...); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0)
	startProcessor(azeventhubs.ProcessorStrategyGreedy)
	time.Sleep(300 * time.Millisecond)
	startProcessor(azeventhubs.ProcessorStrategyBalanced)
	publish(1)
	select {
	case <-allSeen:
		t.Logf("%d events over %d partitions processed in %v, %d partition clients lost ownership",
			partitions*perPartition, partitions, time.Since(start), stolen.Load())
	case <-ctx.Done():
		mu.Lock()
		t.Errorf("timed out: %d of %d events processed", total, partitions*perPartition)
		mu.Unlock()
	}
	cancel()
	wg.Wait()
}
