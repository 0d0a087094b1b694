package main

import (
	"bytes"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func init() { registerVerb(newWatchCmd) }

// clearScreen moves the cursor home and clears the terminal (ANSI), so each
// refresh of watch replaces the previous one in place.
const clearScreen = "\x1b[H\x1b[2J"

func newWatchCmd(a *app) *cobra.Command {
	var o showOptions
	var interval time.Duration
	var count int
	cmd := &cobra.Command{
		Use:   "watch FILE",
		Short: "Show the partitions, refreshed in place until interrupted",
		Long: `watch redraws the table of 'show' every --interval until you press Ctrl-C
or it gets SIGTERM (either exits with status 0, also while it still waits
for the file) or, with --count, after that many refreshes.
A refresh that fails shows its error and watch goes on. With --json it
prints one JSON document per refresh instead of redrawing, for scripts.
When its output is not a terminal, it appends each refresh, headed by its
time, instead of clearing the screen.

watch takes its turn on the file only while it reads, so processors that
share the file are not slowed down.`,
		Example: `  ehcheckpoints watch checkpoints.db --hub orders
  ehcheckpoints watch checkpoints.db --interval 500ms --expiry 30s`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usagef("--interval must be positive")
			}
			if count < 0 {
				return usagef("--count must not be negative")
			}
			ctx := cmd.Context()
			s, err := a.openStore(ctx, args[0], readFile)
			if err != nil {
				if ctx.Err() != nil {
					return nil // stopped while waiting for the file: as later
				}
				return err
			}
			defer s.Close()
			ticker := time.NewTicker(interval)
			defer ticker.Stop()
			clear := ""
			if canRedraw(a.stdout) {
				clear = clearScreen
			}
			for n := 1; ; n++ {
				var frame bytes.Buffer
				if !o.json {
					if clear == "" && n > 1 {
						frame.WriteString("\n")
					}
					fmt.Fprintf(&frame, "%sEvery %s: %s    %s\n\n", clear, interval, args[0], a.now().Format(time.DateTime))
				}
				if err := o.render(ctx, a, s, &frame, &frame); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					fmt.Fprintf(&frame, "error: %v\n", err)
				}
				if _, err := a.stdout.Write(frame.Bytes()); err != nil {
					return err
				}
				if n == count {
					return nil
				}
				select {
				case <-ctx.Done():
					// Interrupted: the way to stop watching, not an error.
					return nil
				case <-ticker.C:
				}
			}
		},
	}
	o.addFlags(cmd)
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between refreshes")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many refreshes (0: until interrupted)")
	return cmd
}
