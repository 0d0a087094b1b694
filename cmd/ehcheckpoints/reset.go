package main

import (
	"fmt"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newResetCmd) }

func newResetCmd(a *app) *cobra.Command {
	var sel selectOptions
	var edit editOptions
	cmd := &cobra.Command{
		Use:   "reset FILE (--partition ID... | --all)",
		Short: "Delete partitions' checkpoints so processors use their start position",
		Long: `reset deletes the checkpoints of the given partitions, or of every partition
in scope with --all. A processor that then claims such a partition starts
from the start position it is configured with (by default the latest
event). Ownerships stay.

The scope flags can be left out when the file holds one consumer group;
with --all they may select several groups. reset refuses partitions whose
owner is live unless --force: a running owner keeps reading from where it is
and checkpoints again. All deletions happen in one transaction.`,
		Example: `  ehcheckpoints reset checkpoints.db --partition 0,1 --dry-run
  ehcheckpoints reset checkpoints.db --hub orders --group billing --all`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := exactlyOneFlag(cmd, "partition", "all"); err != nil {
				return err
			}
			s, targets, err := sel.open(cmd.Context(), a, args[0], edit.use(), false)
			if err != nil {
				return err
			}
			defer s.Close()
			var changed []target
			var deletes []boltstore.Record
			for _, t := range targets {
				if t.partition.checkpoint == nil {
					fmt.Fprintf(a.stderr, "ehcheckpoints: %s has no checkpoint\n", t)
					continue
				}
				changed = append(changed, t)
				deletes = append(deletes, *t.partition.checkpoint)
			}
			if err := edit.checkNotOwned(changed, a.now(), ownersOverwrite); err != nil {
				return err
			}
			verb := "reset"
			if edit.dryRun {
				verb = "would reset"
			} else if _, err := s.DeleteRecords(cmd.Context(), deletes, edit.unchanged(changed)...); err != nil {
				return err
			}
			for _, t := range changed {
				fmt.Fprintf(a.stdout, "%s %s (was %s)\n", verb, t, describeCheckpoint(t.partition.checkpoint))
			}
			return nil
		},
	}
	sel.addFlags(cmd)
	edit.addFlags(cmd)
	return cmd
}
