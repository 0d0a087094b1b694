package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/ehcheckpoints/boltstore"
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
restore it by stopping the processors and moving it into place.

A file of an older boltstore (format 1 or 2) is copied byte for byte, as it
is, while no process writes it: a copy taken before 'upgrade' still opens
with the older boltstore.`,
		Example: `  ehcheckpoints backup checkpoints.db checkpoints-$(date +%F).db`,
		Args:    exactArgs("FILE", "DEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			asIs := errors.Is(err, boltstore.ErrOlderFormat)
			switch {
			case asIs:
				stopNotice := a.noticeWait(args[0])
				err = a.waitError(cmd.Context(), args[0], boltstore.CopyFile(cmd.Context(), args[0], args[1], &boltstore.Options{LockTimeout: a.lockTimeout}))
				stopNotice()
			case err == nil:
				defer s.Close()
				err = s.Backup(cmd.Context(), args[1])
			}
			if err != nil {
				return err
			}
			info, err := os.Stat(args[1])
			if err != nil {
				return err
			}
			how := ""
			if asIs {
				how = ", as it is, in an older boltstore's layout"
			}
			_, err = fmt.Fprintf(a.stdout, "backed up %s to %s (%s%s)\n", args[0], args[1], humanSize(info.Size()), how)
			return err
		},
	}
}
