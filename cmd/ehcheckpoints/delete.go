package main

import (
	"fmt"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newDeleteCmd) }

func newDeleteCmd(a *app) *cobra.Command {
	var scope boltstore.Scope
	var edit editOptions
	cmd := &cobra.Command{
		Use:   "delete FILE --namespace NS [--hub HUB [--group GROUP]]",
		Short: "Remove a consumer group, an event hub or a namespace",
		Long: `delete removes every ownership and checkpoint of a namespace, of one event
hub in it (--hub), or of one consumer group of that hub (--hub and --group),
in one transaction. Processors of a deleted group start over from their
configured start position.

delete refuses while an owner of a partition in scope is live unless
--force. A scope that the file does not hold, deleted already, is said on
stderr and is no failure, so a cleanup script can run again.`,
		Example: `  ehcheckpoints delete checkpoints.db --namespace myns.servicebus.windows.net --hub orders --group old-consumers --dry-run
  ehcheckpoints delete checkpoints.db --namespace myns.servicebus.windows.net --hub retired-hub`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case scope.Namespace == "":
				return usagef("give --namespace (and --hub, --group to delete less)")
			case scope.ConsumerGroup != "" && scope.EventHub == "":
				return usagef("--group needs --hub")
			}
			s, err := a.openStore(cmd.Context(), args[0], edit.use())
			if err != nil {
				return err
			}
			defer s.Close()
			records, err := s.Records(cmd.Context(), scope)
			if err != nil {
				return err
			}
			groups := groupRecords(records)
			if len(groups) == 0 {
				fmt.Fprintf(a.stderr, "ehcheckpoints: nothing in %s matches; nothing to delete\n", args[0])
				return nil
			}
			targets := allTargets(groups)
			if err := edit.checkNotOwned(targets, a.now(), ownersOverwrite); err != nil {
				return err
			}
			verb := "deleted"
			if edit.dryRun {
				verb = "would delete"
			} else if _, err := s.DeleteScope(cmd.Context(), scope, edit.unchanged(targets)...); err != nil {
				return err
			}
			for _, g := range groups {
				ownerships, checkpoints := g.counts()
				fmt.Fprintf(a.stdout, "%s %s: %d ownership(s), %d checkpoint(s)\n", verb, g, ownerships, checkpoints)
			}
			return nil
		},
	}
	addScopeFlags(cmd, &scope)
	edit.addFlags(cmd)
	return cmd
}
