package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func init() { registerVerb(newCompactCmd) }

func newCompactCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "compact FILE DEST",
		Short: "Write a compacted copy of the file",
		Long: `compact writes a copy of FILE to DEST, a path that must not exist yet,
without the free pages that deleted records and rewritten checkpoints leave
behind. bbolt files never shrink on their own; use compact after deleting
many groups. FILE stays in use and unchanged (unless it comes from an
older boltstore: any verb converts such a file to the current format
first): to switch, stop the processors, move DEST over FILE, and start
them again.`,
		Example: `  ehcheckpoints compact checkpoints.db checkpoints.compact.db`,
		Args:    exactArgs("FILE", "DEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.Compact(cmd.Context(), args[1]); err != nil {
				return err
			}
			before, err := os.Stat(args[0])
			if err != nil {
				return err
			}
			after, err := os.Stat(args[1])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "compacted %s (%s) into %s (%s)\n", args[0], humanSize(before.Size()), args[1], humanSize(after.Size()))
			return err
		},
	}
}
