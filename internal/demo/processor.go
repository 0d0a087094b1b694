// Package demo runs unmodified azeventhubs Processors, each in its own
// process, on one boltstore file against the in-process Event Hubs test
// double (internal/testhub). The ehcheckpoints demo verb and the end-to-end
// tests (internal/e2e) share it: the processor program, the log it writes,
// the analysis of that log, and the control of the processes.
package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
)

// ProcessorConfig configures one processor process.
type ProcessorConfig struct {
	// ConnectionString is the event hub's, with its EntityPath.
	ConnectionString string
	// ConsumerGroup defaults to $Default.
	ConsumerGroup string
	// StorePath is the boltstore file, opened with default options.
	StorePath string
	// ID is the processor's owner id in the store (the consumer client's
	// InstanceID).
	ID string
	// CheckpointEvery is N: a partition is checkpointed after every N
	// events, and also when it has no new events or is closed, so a caught
	// up or stopped processor leaves nothing uncheckpointed.
	CheckpointEvery int
	// UpdateInterval and Expiration are the ProcessorOptions' UpdateInterval
	// and PartitionExpirationDuration.
	UpdateInterval, Expiration time.Duration
	// StopOnEOF makes the processor stop gracefully when its standard input
	// ends, as it does on SIGTERM. The parent keeps a pipe open for the
	// child's lifetime, so a child whose parent dies stops too, and
	// platforms without SIGTERM can stop it by closing the pipe.
	StopOnEOF bool
}

// Defaults of ProcessorConfig, chosen so processors balance and take over
// in seconds instead of the SDK's minutes.
const (
	DefaultCheckpointEvery = 10
	DefaultUpdateInterval  = 200 * time.Millisecond
	DefaultExpiration      = 2 * time.Second
)

// Args returns the command line that ParseProcessorArgs turns back into c.
func (c ProcessorConfig) Args() []string {
	args := []string{
		"-connection-string", c.ConnectionString,
		"-store", c.StorePath,
		"-id", c.ID,
		"-checkpoint-every", strconv.Itoa(c.CheckpointEvery),
		"-update-interval", c.UpdateInterval.String(),
		"-expiration", c.Expiration.String(),
	}
	if c.ConsumerGroup != "" {
		args = append(args, "-consumer-group", c.ConsumerGroup)
	}
	if c.StopOnEOF {
		args = append(args, "-stop-on-eof")
	}
	return args
}

// ParseProcessorArgs parses the processor program's command line.
func ParseProcessorArgs(args []string) (ProcessorConfig, error) {
	var c ProcessorConfig
	fs := flag.NewFlagSet("processor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.ConnectionString, "connection-string", "", "event hub connection string with EntityPath")
	fs.StringVar(&c.ConsumerGroup, "consumer-group", azeventhubs.DefaultConsumerGroup, "consumer group")
	fs.StringVar(&c.StorePath, "store", "", "boltstore file")
	fs.StringVar(&c.ID, "id", "", "owner id of this processor")
	fs.IntVar(&c.CheckpointEvery, "checkpoint-every", DefaultCheckpointEvery, "checkpoint after every N events of a partition")
	fs.DurationVar(&c.UpdateInterval, "update-interval", DefaultUpdateInterval, "load balancing interval")
	fs.DurationVar(&c.Expiration, "expiration", DefaultExpiration, "partition ownership expiration")
	fs.BoolVar(&c.StopOnEOF, "stop-on-eof", false, "stop gracefully when standard input ends")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.ConnectionString == "" || c.StorePath == "" || c.ID == "":
		return c, errors.New("-connection-string, -store and -id are required")
	case c.CheckpointEvery < 1 || c.UpdateInterval <= 0 || c.Expiration <= 0:
		return c, errors.New("-checkpoint-every, -update-interval and -expiration must be positive")
	}
	return c, nil
}

// StopOnEOF returns a context that is cancelled when ctx is, or when r
// reaches its end (or fails).
func StopOnEOF(ctx context.Context, r io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, r)
		cancel()
	}()
	return ctx, cancel
}

// Processing parameters of a partition client.
const (
	// receiveBatch is the most events one ReceiveEvents call returns.
	receiveBatch = 100
	// receiveWait is how long ReceiveEvents waits for a full batch. A call
	// that returns nothing in that time means the partition is caught up.
	receiveWait = 100 * time.Millisecond
	// checkpointTimeout bounds a checkpoint write, which is given time to
	// finish even while the processor stops.
	checkpointTimeout = 10 * time.Second
)

// RunProcessor runs an azeventhubs.Processor on the boltstore file until
// ctx ends, writing its log to w (see Entry). It starts partitions without a
// checkpoint at the earliest event. When ctx ends it stops gracefully:
// every partition client checkpoints its last event and closes, and then
// the Processor's Run returns, which relinquishes its ownerships.
func RunProcessor(ctx context.Context, cfg ProcessorConfig, w io.Writer) (err error) {
	log := newLogger(w)
	log.write(Entry{Kind: KindStart, Owner: cfg.ID})
	defer func() {
		e := Entry{Kind: KindStop}
		if err != nil {
			e.Error = err.Error()
		}
		log.write(e)
	}()

	store, err := boltstore.Open(cfg.StorePath, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	client, err := azeventhubs.NewConsumerClientFromConnectionString(cfg.ConnectionString, "", cfg.ConsumerGroup,
		&azeventhubs.ConsumerClientOptions{InstanceID: cfg.ID})
	if err != nil {
		return err
	}
	defer client.Close(context.Background())
	proc, err := azeventhubs.NewProcessor(client, store, &azeventhubs.ProcessorOptions{
		LoadBalancingStrategy:       azeventhubs.ProcessorStrategyBalanced,
		UpdateInterval:              cfg.UpdateInterval,
		PartitionExpirationDuration: cfg.Expiration,
		StartPositions:              azeventhubs.StartPositions{Default: azeventhubs.StartPosition{Earliest: to.Ptr(true)}},
	})
	if err != nil {
		return err
	}

	// Run gets its own context, cancelled only after the partition clients
	// have checkpointed and closed: Run relinquishes the ownerships as it
	// returns, and a partition relinquished before its last checkpoint
	// could be taken by another processor that then repeats events.
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(runCtx) }()

	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	var (
		mu       sync.Mutex
		stopping bool
		clients  sync.WaitGroup
	)
	go func() {
		for pc := proc.NextPartitionClient(runCtx); pc != nil; pc = proc.NextPartitionClient(runCtx) {
			mu.Lock()
			if stopping {
				mu.Unlock()
				_ = pc.Close(context.Background())
				continue
			}
			clients.Add(1)
			mu.Unlock()
			go func() {
				defer clients.Done()
				consume(consumeCtx, pc, cfg.CheckpointEvery, log)
			}()
		}
	}()

	stop := func() {
		stopConsuming()
		mu.Lock()
		stopping = true
		mu.Unlock()
		clients.Wait()
		cancelRun()
	}
	select {
	case <-ctx.Done():
		stop()
		return <-runErr
	case err := <-runErr: // Run ends on its own only when it fails
		stop()
		return err
	}
}

// consume processes a partition until ctx ends or the partition is lost.
// Processing an event means logging it.
func consume(ctx context.Context, pc *azeventhubs.ProcessorPartitionClient, every int, log *logger) {
	id := pc.PartitionID()
	log.write(Entry{Kind: KindOpen, Partition: id})
	defer pc.Close(context.Background())

	var last *azeventhubs.ReceivedEventData
	pending := 0 // events processed since the last checkpoint
	checkpoint := func() {
		log.write(Entry{Kind: KindCheckpoint, Partition: id, Seq: last.SequenceNumber})
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointTimeout)
		defer cancel()
		if err := pc.UpdateCheckpoint(cctx, last, nil); err != nil {
			// Not fatal: the events stay pending and the next checkpoint
			// covers them.
			log.write(Entry{Kind: KindCheckpointFailed, Partition: id, Seq: last.SequenceNumber, Error: err.Error()})
			return
		}
		log.write(Entry{Kind: KindCheckpointed, Partition: id, Seq: last.SequenceNumber})
		pending = 0
	}

	for {
		rctx, cancel := context.WithTimeout(ctx, receiveWait)
		events, err := pc.ReceiveEvents(rctx, receiveBatch, nil)
		cancel()
		for _, e := range events {
			log.write(Entry{Kind: KindEvent, Partition: id, Seq: e.SequenceNumber})
			last = e
			if pending++; pending == every {
				checkpoint()
			}
		}
		var ehErr *azeventhubs.Error
		switch {
		case ctx.Err() != nil:
			if pending > 0 {
				checkpoint()
			}
			log.write(Entry{Kind: KindClose, Partition: id})
			return
		case err == nil || errors.Is(err, context.DeadlineExceeded):
			if len(events) == 0 && pending > 0 {
				checkpoint() // caught up
			}
		case errors.As(err, &ehErr) && ehErr.Code == azeventhubs.ErrorCodeOwnershipLost:
			log.write(Entry{Kind: KindLost, Partition: id, Error: err.Error()})
			return
		default:
			// The Processor opens the partition again at its next load
			// balancing if it still owns it.
			log.write(Entry{Kind: KindError, Partition: id, Error: err.Error()})
			return
		}
	}
}
