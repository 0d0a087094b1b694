// Package testhub is an in-process Azure Event Hubs test double. It speaks
// enough AMQP 1.0 over plain TCP on the loopback interface for the unmodified
// azeventhubs ProducerClient, ConsumerClient and Processor, using the
// connection string returned by [Hub.ConnectionString].
//
// Supported: SASL (any mechanism is accepted), sessions and links with flow
// control, multi-frame transfers, $cbs put-token, $management READ of the
// event hub and its partitions, batched and single-message sends to the hub
// (round robin, or by partition key hash) or to a partition, receivers on
// any consumer group with the SDK's start position filters (offset,
// sequence number, enqueued time, earliest, latest; inclusive or not), and
// owner levels: a receiver with an epoch at least as high as the current
// owner's steals the partition and the old link is detached with
// amqp:link:stolen, which the SDK reports as ErrorCodeOwnershipLost.
//
// Not supported: TLS, WebSockets and real authentication; retention (events
// live in memory forever); geo-replication offsets (offsets are decimal
// byte positions); idempotent publishing; the limit of five receivers per
// partition and consumer group; unsettled deliveries to clients and receiver
// settle mode second for clients' sends (every delivery is sent settled and
// every received message is accepted at once; attach answers say so).
package testhub

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Hub.
type Options struct {
	// Name is the event hub name (the EntityPath); default "testhub".
	Name string
	// Partitions is the number of partitions, IDs "0" to "Partitions-1"; default 4.
	Partitions int
	// Addr is the TCP listen address; default "127.0.0.1:0" (a free port).
	Addr string
}

// Hub is a running test double for one event hub. Any consumer group name
// is accepted and authentication always succeeds.
type Hub struct {
	name       string
	created    time.Time
	ln         net.Listener
	partitions []*partition
	roundRobin atomic.Uint64

	mu     sync.Mutex
	conns  map[*conn]struct{}
	owners map[string][]*link // consumer links by "group/partition"
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// Start listens on opts.Addr and serves clients until Close.
func Start(opts Options) (*Hub, error) {
	if opts.Name == "" {
		opts.Name = "testhub"
	}
	if opts.Partitions == 0 {
		opts.Partitions = 4
	}
	if opts.Partitions < 0 || opts.Partitions > 1024 {
		return nil, fmt.Errorf("testhub: partitions must be between 1 and 1024, got %d", opts.Partitions)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("testhub: %w", err)
	}
	h := &Hub{
		name:    opts.Name,
		created: time.Now().UTC().Truncate(time.Millisecond),
		ln:      ln,
		conns:   map[*conn]struct{}{},
		owners:  map[string][]*link{},
		done:    make(chan struct{}),
	}
	for i := 0; i < opts.Partitions; i++ {
		h.partitions = append(h.partitions, &partition{id: strconv.Itoa(i), waiters: map[*conn]int{}})
	}
	h.wg.Add(1)
	go h.accept()
	return h, nil
}

func (h *Hub) accept() {
	defer h.wg.Done()
	for {
		nc, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			nc.Close()
			return
		}
		c := newConn(h, nc)
		h.conns[c] = struct{}{}
		h.wg.Add(1)
		h.mu.Unlock()
		go c.serve()
	}
}

func (h *Hub) removeConn(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// ConnectionString returns an emulator connection string for the hub, for
// azeventhubs.NewProducerClientFromConnectionString and friends.
func (h *Hub) ConnectionString() string {
	return fmt.Sprintf("Endpoint=sb://%s;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=%s;UseDevelopmentEmulator=true",
		h.ln.Addr().String(), h.name)
}

// Name returns the event hub name.
func (h *Hub) Name() string { return h.name }

// Publish appends one event per body to a partition, bypassing AMQP, and
// wakes waiting receivers. It is the fast path for tests that need many events.
func (h *Hub) Publish(partitionID string, bodies ...[]byte) error {
	p := h.partition(partitionID)
	if p == nil {
		return fmt.Errorf("testhub: no partition %q in event hub %q", partitionID, h.name)
	}
	msgs := make([][]byte, len(bodies))
	for i, b := range bodies {
		msgs[i] = dataMessage(b)
	}
	return p.append(msgs, "")
}

// LastSequenceNumber returns the sequence number of the partition's last
// event, or -1 if the partition is empty or does not exist.
func (h *Hub) LastSequenceNumber(partitionID string) int64 {
	p := h.partition(partitionID)
	if p == nil {
		return -1
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return int64(len(p.events)) - 1
}

func (h *Hub) partition(id string) *partition {
	i, err := strconv.Atoi(id)
	if err != nil || i < 0 || i >= len(h.partitions) || strconv.Itoa(i) != id {
		return nil
	}
	return h.partitions[i]
}

// Close stops the listener, closes every client connection (sending AMQP
// close when the client is responsive) and waits for all goroutines.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.done)
	h.mu.Unlock()
	err := h.ln.Close()

	finished := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(time.Second): // a client that does not read blocks its writer
		h.mu.Lock()
		for c := range h.conns {
			c.nc.Close()
		}
		h.mu.Unlock()
		<-finished
	}
	return err
}
