package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func init() { registerVerb(newBackupCmd) }

func newBackupCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE DEST",
		Short: "Copy the file consistently while processors use it",
		Long: `backup writes a consistent copy of FILE to DEST, a path that must not exist
yet, while processors keep using FILE: the copy is made in one read
transaction, which processors wait for only as long as it takes. DEST is
synced to disk and appears only when complete. It is a store file itself:
restore it by stopping the processors and moving it into place.`,
		Example: `  ehcheckpoints backup checkpoints.db checkpoints-$(date +%F).db`,
		Args:    exactArgs("FILE", "DEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.Backup(cmd.Context(), args[1]); err != nil {
				return err
			}
			info, err := os.Stat(args[1])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "backed up %s to %s (%s)\n", args[0], args[1], humanSize(info.Size()))
			return err
		},
	}
}
