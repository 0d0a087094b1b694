// Command processorproc is the processor program of the end-to-end tests:
// one unmodified azeventhubs.Processor on a boltstore file, which logs what
// it does as JSON lines on standard output (see demo.Entry). SIGTERM or
// SIGINT, or with -stop-on-eof the end of standard input, stops it
// gracefully.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ehcheckpoints/boltstore/internal/demo"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := demo.ParseProcessorArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "processorproc: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.StopOnEOF {
		var cancel context.CancelFunc
		ctx, cancel = demo.StopOnEOF(ctx, os.Stdin)
		defer cancel()
	}
	if err := demo.RunProcessor(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "processorproc: %v\n", err)
		return 1
	}
	return 0
}
