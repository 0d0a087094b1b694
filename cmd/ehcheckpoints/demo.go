package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ehcheckpoints/boltstore/internal/demo"
	"github.com/spf13/cobra"
)

func init() {
	registerVerb(newDemoCmd)
	registerVerb(newDemoProcessorCmd)
}

// demoProcessorVerb is the hidden verb that runs one processor of the
// demo. The demo starts its own executable with it, so that `go run` needs
// no second program.
const demoProcessorVerb = "demo-processor"

// Limits of the demo's flags: a demo on a laptop, not a load test.
const (
	maxDemoProcessors = 16
	maxDemoPartitions = 1024 // the test double's limit
	maxDemoEvents     = 100_000
)

func newDemoCmd(a *app) *cobra.Command {
	var (
		processors, partitions, events int
		keep, noColor                  bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Watch processors share a store file, lose one and recover, with no Azure",
		Long: `demo shows boltstore at work on this machine alone, without an Azure
subscription, Docker or an emulator. It starts an Event Hubs test double in
its own process and --processors processes that each run the unmodified
azeventhubs Processor on one temporary store file, and publishes --events
events. It shows each partition's owner and checkpoint while the
processors balance the partitions, kills one of them with SIGKILL, shows
the others take over its partitions from its checkpoints, stops them, and
prints a summary: events processed and processed twice, the time to
balance and to take over, and checkpoints per second.

On a terminal the table is redrawn in place; otherwise demo prints what
happens line by line, with the table at each step. --keep keeps the store
file and prints the commands to inspect it.`,
		Example: `  go run ./cmd/ehcheckpoints demo
  ehcheckpoints demo --processors 4 --partitions 16 --events 20000
  ehcheckpoints demo --keep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case partitions < 2 || partitions > maxDemoPartitions:
				return usagef("--partitions must be between 2 and %d", maxDemoPartitions)
			case processors < 2 || processors > min(partitions, maxDemoProcessors):
				return usagef("--processors must be between 2 (one to kill, one to take over) and %d (and at most --partitions)", maxDemoProcessors)
			case events < 1 || events > maxDemoEvents:
				return usagef("--events must be between 1 and %d", maxDemoEvents)
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			live := canRedraw(a.stdout)
			err = demo.Run(cmd.Context(), demo.Options{
				Processors: processors,
				Partitions: partitions,
				Events:     events,
				Keep:       keep,
				Executable: exe,
				Args:       []string{demoProcessorVerb},
				CLI:        cliName(),
				Out:        a.stdout,
				Live:       live,
				// https://no-color.org
				Color: live && !noColor && os.Getenv("NO_COLOR") == "",
				Table: writeDemoTable,
			})
			if cmd.Context().Err() != nil {
				return errors.New("interrupted")
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&processors, "processors", 3, "processor processes to start")
	f.IntVar(&partitions, "partitions", 12, "partitions of the event hub (each processor claims one per half second, so 200 among 3 balance in about 35s)")
	f.IntVar(&events, "events", 10_000, "events to publish")
	f.BoolVar(&keep, "keep", false, "keep the store file and print its path and the commands to inspect it")
	f.BoolVar(&noColor, "no-color", false, "no colors on a terminal (also: NO_COLOR=1)")
	return cmd
}

func newDemoProcessorCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    demoProcessorVerb + " FLAGS",
		Short:  "Run one processor of the demo (used by demo)",
		Hidden: true,
		// The processor program parses its own flags (demo.ProcessorConfig).
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := demo.ParseProcessorArgs(args)
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			if cfg.StopOnEOF {
				var cancel func()
				ctx, cancel = demo.StopOnEOF(ctx, a.stdin)
				defer cancel()
			}
			return demo.RunProcessor(ctx, cfg, a.stdout)
		},
	}
}

// cliName is how the user ran this command, for the commands the demo
// suggests: `go run ./cmd/ehcheckpoints` builds into a go-build directory.
func cliName() string {
	name := os.Args[0]
	if strings.Contains(filepath.ToSlash(name), "/go-build") {
		return "go run ./cmd/ehcheckpoints"
	}
	return name
}

// writeDemoTable writes the live table of the demo: the columns of show
// that change while processors run (the etag and offset would only make
// it too wide for a terminal), every partition of the event hub even
// before it has records, and LAG, the events after the checkpoint.
func writeDemoTable(w io.Writer, s demo.Snapshot) error {
	g := &group{}
	if groups := groupRecords(s.Records); len(groups) > 0 {
		g = groups[0] // the demo has one consumer group
		fmt.Fprintf(w, "%s / %s / %s\n", g.Namespace, g.EventHub, g.ConsumerGroup)
	}
	for id := range s.Last {
		g.partition(id)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tRENEWED\tEXPIRED\tSEQUENCE\tCHECKPOINTED\tLAG")
	for _, p := range g.partitions {
		owner, renewed, expired := "-", "-", "-"
		if own := p.ownership; own != nil {
			owner, renewed = own.OwnerID, ago(s.Now, own.LastModifiedTime)
			if owner == "" {
				owner = "(released)"
			} else if p.owned(s.Now, s.Expiry) {
				expired = "no"
			} else {
				expired = "yes"
			}
		}
		sequence, written, next := "-", "-", int64(0)
		if cp := p.checkpoint; cp != nil && cp.SequenceNumber != nil {
			sequence, written, next = strconv.FormatInt(*cp.SequenceNumber, 10), ago(s.Now, cp.WrittenAt), *cp.SequenceNumber+1
		}
		lag := "-"
		if last, ok := s.Last[p.id]; ok {
			lag = strconv.FormatInt(max(0, last+1-next), 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.id, owner, renewed, expired, sequence, written, lag)
	}
	return tw.Flush()
}
