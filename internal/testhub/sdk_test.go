package testhub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

func startHub(t *testing.T, partitions int) *Hub {
	t.Helper()
	h, err := Start(Options{Name: "hub1", Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newProducer(t *testing.T, h *Hub) *azeventhubs.ProducerClient {
	t.Helper()
	p, err := azeventhubs.NewProducerClientFromConnectionString(h.ConnectionString(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func newConsumer(t *testing.T, h *Hub) *azeventhubs.ConsumerClient {
	t.Helper()
	c, err := azeventhubs.NewConsumerClientFromConnectionString(h.ConnectionString(), "", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func newPartitionClient(t *testing.T, c *azeventhubs.ConsumerClient, id string, opts azeventhubs.PartitionClientOptions) *azeventhubs.PartitionClient {
	t.Helper()
	pc, err := c.NewPartitionClient(id, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close(context.Background()) })
	return pc
}

// sendBatch sends bodies as one batch, to partitionID when not empty.
func sendBatch(ctx context.Context, t *testing.T, p *azeventhubs.ProducerClient, opts *azeventhubs.EventDataBatchOptions, bodies ...[]byte) {
	t.Helper()
	batch, err := p.NewEventDataBatch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		if err := batch.AddEventData(&azeventhubs.EventData{Body: b, Properties: map[string]any{"len": int64(len(b))}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.SendEventDataBatch(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
}

func receive(ctx context.Context, t *testing.T, pc *azeventhubs.PartitionClient, n int) []*azeventhubs.ReceivedEventData {
	t.Helper()
	var out []*azeventhubs.ReceivedEventData
	for len(out) < n {
		evs, err := pc.ReceiveEvents(ctx, n-len(out), nil)
		if err != nil {
			t.Fatalf("ReceiveEvents after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, evs...)
	}
	return out
}

func earliest() azeventhubs.StartPosition {
	return azeventhubs.StartPosition{Earliest: to(true)}
}

func to[T any](v T) *T { return &v }

func TestProduceConsume(t *testing.T) {
	h := startHub(t, 4)
	ctx := testCtx(t)
	prod := newProducer(t, h)

	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // spans many frames both ways
	var bodies [][]byte
	for i := 0; i < 20; i++ {
		bodies = append(bodies, []byte(fmt.Sprintf("event-%d", i)))
	}
	sendBatch(ctx, t, prod, &azeventhubs.EventDataBatchOptions{PartitionID: to("1")}, bodies[:10]...)
	sendBatch(ctx, t, prod, &azeventhubs.EventDataBatchOptions{PartitionID: to("1")}, big)
	sendBatch(ctx, t, prod, &azeventhubs.EventDataBatchOptions{PartitionID: to("1")}, bodies[10:]...)
	want := append(append(append([][]byte{}, bodies[:10]...), big), bodies[10:]...)
	if got := h.LastSequenceNumber("1"); got != int64(len(want)-1) {
		t.Fatalf("LastSequenceNumber = %d, want %d", got, len(want)-1)
	}
	if got := h.LastSequenceNumber("0"); got != -1 {
		t.Fatalf("LastSequenceNumber(0) = %d, want -1", got)
	}

	pc := newPartitionClient(t, newConsumer(t, h), "1", azeventhubs.PartitionClientOptions{StartPosition: earliest()})
	evs := receive(ctx, t, pc, len(want))
	prevOffset := int64(-1)
	for i, e := range evs {
		if e.SequenceNumber != int64(i) {
			t.Errorf("event %d: sequence number %d", i, e.SequenceNumber)
		}
		if !bytes.Equal(e.Body, want[i]) {
			t.Errorf("event %d: body %.20q, want %.20q", i, e.Body, want[i])
		}
		off, err := strconv.ParseInt(e.Offset, 10, 64)
		if err != nil || off <= prevOffset {
			t.Errorf("event %d: offset %q not increasing after %d", i, e.Offset, prevOffset)
		}
		prevOffset = off
		if e.EnqueuedTime == nil || time.Since(*e.EnqueuedTime) > time.Minute {
			t.Errorf("event %d: enqueued time %v", i, e.EnqueuedTime)
		}
		if e.Properties["len"] != int64(len(want[i])) || e.MessageID == nil {
			t.Errorf("event %d: properties %v, message ID %v", i, e.Properties, e.MessageID)
		}
	}
}

func TestFullBatch(t *testing.T) {
	h := startHub(t, 1)
	ctx := testCtx(t)
	prod := newProducer(t, h)
	batch, err := prod.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{PartitionID: to("0")})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("z"), 1000)
	for {
		err := batch.AddEventData(&azeventhubs.EventData{Body: body}, nil)
		if errors.Is(err, azeventhubs.ErrEventDataTooLarge) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if batch.NumBytes() < 1000<<10 {
		t.Fatalf("full batch holds only %d bytes", batch.NumBytes())
	}
	if err := prod.SendEventDataBatch(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	if got := h.LastSequenceNumber("0") + 1; got != int64(batch.NumEvents()) {
		t.Fatalf("hub stored %d events, batch had %d", got, batch.NumEvents())
	}
}

func TestPartitionKeyAndRoundRobin(t *testing.T) {
	h := startHub(t, 4)
	ctx := testCtx(t)
	prod := newProducer(t, h)
	for i := 0; i < 8; i++ {
		sendBatch(ctx, t, prod, nil, []byte("rr"), []byte("rr"))
	}
	for i := 0; i < 4; i++ {
		sendBatch(ctx, t, prod, &azeventhubs.EventDataBatchOptions{PartitionKey: to("device-7")}, []byte("keyed"))
	}
	total, keyed := int64(0), ""
	for i := 0; i < 4; i++ {
		id := strconv.Itoa(i)
		n := h.LastSequenceNumber(id) + 1
		total += n
		if n == 0 {
			t.Errorf("partition %s got no round-robin events", id)
		}
		if n == 4+4 {
			keyed = id
		}
	}
	if total != 20 || keyed == "" {
		t.Fatalf("total %d events, keyed partition %q", total, keyed)
	}
	pc := newPartitionClient(t, newConsumer(t, h), keyed, azeventhubs.PartitionClientOptions{StartPosition: earliest()})
	var sawKey int
	for _, e := range receive(ctx, t, pc, 8) {
		if e.PartitionKey != nil && *e.PartitionKey == "device-7" {
			sawKey++
		}
	}
	if sawKey != 4 {
		t.Fatalf("%d events carried the partition key, want 4", sawKey)
	}
}

func TestProperties(t *testing.T) {
	h := startHub(t, 3)
	ctx := testCtx(t)
	cons := newConsumer(t, h)
	props, err := cons.GetEventHubProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if props.Name != "hub1" || fmt.Sprint(props.PartitionIDs) != "[0 1 2]" || props.CreatedOn.IsZero() || props.GeoReplicationEnabled {
		t.Fatalf("event hub properties %+v", props)
	}
	pp, err := cons.GetPartitionProperties(ctx, "2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !pp.IsEmpty || pp.LastEnqueuedSequenceNumber != -1 || pp.PartitionID != "2" || pp.EventHubName != "hub1" {
		t.Fatalf("empty partition properties %+v", pp)
	}
	if err := h.Publish("2", []byte("a"), []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	pp, err = newProducer(t, h).GetPartitionProperties(ctx, "2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if pp.IsEmpty || pp.LastEnqueuedSequenceNumber != 2 || pp.BeginningSequenceNumber != 0 || pp.LastEnqueuedOffset == "" || pp.LastEnqueuedOn.IsZero() {
		t.Fatalf("partition properties %+v", pp)
	}
	if _, err := cons.GetPartitionProperties(ctx, "9", nil); err == nil {
		t.Fatal("properties of a missing partition: no error")
	}
}

func TestStartPositions(t *testing.T) {
	h := startHub(t, 1)
	ctx := testCtx(t)
	for i := 0; i < 10; i++ {
		if err := h.Publish("0", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cons := newConsumer(t, h)
	all := receive(ctx, t, newPartitionClient(t, cons, "0", azeventhubs.PartitionClientOptions{StartPosition: earliest()}), 10)

	for _, tc := range []struct {
		name string
		pos  azeventhubs.StartPosition
		want int64
	}{
		{"earliest", earliest(), 0},
		{"seq exclusive", azeventhubs.StartPosition{SequenceNumber: to(int64(3))}, 4},
		{"seq inclusive", azeventhubs.StartPosition{SequenceNumber: to(int64(3)), Inclusive: true}, 3},
		{"seq last", azeventhubs.StartPosition{SequenceNumber: to(int64(8))}, 9},
		{"offset exclusive", azeventhubs.StartPosition{Offset: to(all[5].Offset)}, 6},
		{"offset inclusive", azeventhubs.StartPosition{Offset: to(all[5].Offset), Inclusive: true}, 5},
		{"enqueued time", azeventhubs.StartPosition{EnqueuedTime: to(all[0].EnqueuedTime.Add(-time.Second))}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := newPartitionClient(t, cons, "0", azeventhubs.PartitionClientOptions{StartPosition: tc.pos})
			evs := receive(ctx, t, pc, 1)
			if evs[0].SequenceNumber != tc.want || evs[0].Body[0] != byte(tc.want) {
				t.Fatalf("first event %d (body %v), want %d", evs[0].SequenceNumber, evs[0].Body, tc.want)
			}
		})
	}

	t.Run("latest and live delivery", func(t *testing.T) {
		pc := newPartitionClient(t, cons, "0", azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Latest: to(true)}})
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		evs, err := pc.ReceiveEvents(short, 1, nil) // opens the link at the end of the partition
		cancel()
		if len(evs) != 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %d events, err %v; want none before publishing", len(evs), err)
		}
		go func() {
			time.Sleep(100 * time.Millisecond)
			_ = h.Publish("0", []byte{10}, []byte{11})
		}()
		evs = receive(ctx, t, pc, 2)
		if evs[0].SequenceNumber != 10 || evs[1].SequenceNumber != 11 {
			t.Fatalf("live events %d, %d; want 10, 11", evs[0].SequenceNumber, evs[1].SequenceNumber)
		}
	})

	t.Run("sequence number out of range", func(t *testing.T) {
		pc := newPartitionClient(t, cons, "0", azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{SequenceNumber: to(int64(100))}})
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if evs, err := pc.ReceiveEvents(short, 1, nil); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %d events, err %v; want an out of range error", len(evs), err)
		}
	})
}

func TestOwnershipLost(t *testing.T) {
	h := startHub(t, 2)
	ctx := testCtx(t)
	if err := h.Publish("1", []byte("first")); err != nil {
		t.Fatal(err)
	}
	cons := newConsumer(t, h)
	first := newPartitionClient(t, cons, "1", azeventhubs.PartitionClientOptions{StartPosition: earliest(), OwnerLevel: to(int64(1))})
	receive(ctx, t, first, 1)

	// a different connection steals the partition
	second := newPartitionClient(t, newConsumer(t, h), "1", azeventhubs.PartitionClientOptions{StartPosition: earliest(), OwnerLevel: to(int64(2))})
	if evs := receive(ctx, t, second, 1); string(evs[0].Body) != "first" {
		t.Fatalf("second receiver got %q", evs[0].Body)
	}
	_, err := first.ReceiveEvents(ctx, 1, nil)
	var ehErr *azeventhubs.Error
	if !errors.As(err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeOwnershipLost {
		t.Fatalf("first receiver: err %v, want code %s", err, azeventhubs.ErrorCodeOwnershipLost)
	}

	// a lower epoch cannot take it back; another consumer group is independent
	lower := newPartitionClient(t, cons, "1", azeventhubs.PartitionClientOptions{StartPosition: earliest(), OwnerLevel: to(int64(1))})
	if _, err := lower.ReceiveEvents(ctx, 1, nil); !errors.As(err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeOwnershipLost {
		t.Fatalf("lower epoch receiver: err %v, want code %s", err, azeventhubs.ErrorCodeOwnershipLost)
	}
	other, err := azeventhubs.NewConsumerClientFromConnectionString(h.ConnectionString(), "", "other", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	receive(ctx, t, newPartitionClient(t, other, "1", azeventhubs.PartitionClientOptions{StartPosition: earliest(), OwnerLevel: to(int64(0))}), 1)
	if err := h.Publish("1", []byte("second")); err != nil {
		t.Fatal(err)
	}
	if evs := receive(ctx, t, second, 1); string(evs[0].Body) != "second" {
		t.Fatalf("second receiver got %q", evs[0].Body)
	}
}

func TestProcessor(t *testing.T) {
	const partitions, perPartition = 4, 250
	h := startHub(t, partitions)
	ctx := testCtx(t)
	prod := newProducer(t, h)
	for p := 0; p < partitions; p++ {
		id := strconv.Itoa(p)
		var bodies [][]byte
		for i := 0; i < perPartition; i++ {
			bodies = append(bodies, []byte(id+"/"+strconv.Itoa(i)))
		}
		sendBatch(ctx, t, prod, &azeventhubs.EventDataBatchOptions{PartitionID: &id}, bodies[:perPartition/2]...)
		if err := h.Publish(id, bodies[perPartition/2:]...); err != nil {
			t.Fatal(err)
		}
	}

	store := newMemCheckpointStore()
	run := func(want int) map[string][]int64 {
		cons := newConsumer(t, h)
		proc, err := azeventhubs.NewProcessor(cons, store, &azeventhubs.ProcessorOptions{
			LoadBalancingStrategy: azeventhubs.ProcessorStrategyGreedy,
			UpdateInterval:        200 * time.Millisecond,
			StartPositions:        azeventhubs.StartPositions{Default: earliest()},
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		runErr := make(chan error, 1)
		go func() { runErr <- proc.Run(runCtx) }()

		var mu sync.Mutex
		got := map[string][]int64{}
		count := 0
		var wg sync.WaitGroup
		for pc := proc.NextPartitionClient(runCtx); pc != nil; pc = proc.NextPartitionClient(runCtx) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer pc.Close(context.Background())
				for runCtx.Err() == nil {
					recvCtx, cancelRecv := context.WithTimeout(runCtx, 100*time.Millisecond)
					evs, _ := pc.ReceiveEvents(recvCtx, 100, nil)
					cancelRecv()
					if len(evs) == 0 {
						continue
					}
					mu.Lock()
					for _, e := range evs {
						got[pc.PartitionID()] = append(got[pc.PartitionID()], e.SequenceNumber)
					}
					if count += len(evs); count == want {
						cancel()
					}
					mu.Unlock()
					if err := pc.UpdateCheckpoint(ctx, evs[len(evs)-1], nil); err != nil {
						t.Errorf("UpdateCheckpoint: %v", err)
					}
				}
			}()
		}
		wg.Wait()
		if err := <-runErr; err != nil {
			t.Fatalf("processor: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatalf("timed out with %d of %d events", count, want)
		}
		return got
	}

	got := run(partitions * perPartition)
	for p := 0; p < partitions; p++ {
		seqs := got[strconv.Itoa(p)]
		if len(seqs) != perPartition {
			t.Fatalf("partition %d: %d events, want %d", p, len(seqs), perPartition)
		}
		for i, s := range seqs {
			if s != int64(i) {
				t.Fatalf("partition %d: event %d has sequence number %d", p, i, s)
			}
		}
	}

	// a new processor resumes after the checkpoints
	for p := 0; p < partitions; p++ {
		if err := h.Publish(strconv.Itoa(p), []byte("late")); err != nil {
			t.Fatal(err)
		}
	}
	got = run(partitions)
	for p := 0; p < partitions; p++ {
		if seqs := got[strconv.Itoa(p)]; len(seqs) != 1 || seqs[0] != perPartition {
			t.Fatalf("partition %d after restart: sequence numbers %v, want [%d]", p, seqs, perPartition)
		}
	}
}

func TestCloseWithConnectedClients(t *testing.T) {
	h, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	cons := newConsumer(t, h)
	pc := newPartitionClient(t, cons, "0", azeventhubs.PartitionClientOptions{StartPosition: earliest()})
	if err := h.Publish("0", []byte("x")); err != nil {
		t.Fatal(err)
	}
	receive(ctx, t, pc, 1)
	done := make(chan error, 1)
	go func() { done <- h.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
