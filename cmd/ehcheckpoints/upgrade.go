package main

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newUpgradeCmd) }

func newUpgradeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "upgrade FILE",
		Short: "Convert a file of an older boltstore to the current format",
		Long: `upgrade converts FILE, if an older boltstore wrote it (format 1 or 2), to
the format this one writes, in one durable commit, and says which format
FILE is in. Older boltstores refuse a converted file, so upgrade the
processors that use FILE first, and take a copy with 'backup' first if you
may need to go back: it copies an older file as it is.

Reading verbs and dry runs do not convert a file; they refuse an older one
and point here. Editing verbs convert it as they open it, and say so.`,
		Example: `  ehcheckpoints upgrade checkpoints.db`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], editFile)
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
				// Without write access, it can still tell a current file.
				if current, readErr := a.openStore(cmd.Context(), args[0], readFile); readErr == nil {
					current.Close()
					_, err = fmt.Fprintf(a.stdout, "%s is already in format %d\n", args[0], boltstore.FormatVersion)
					return err
				}
				return fmt.Errorf("%s: converting the file needs write access: %w", args[0], err)
			}
			if err != nil {
				return err
			}
			defer s.Close()
			state := "already in"
			if _, converted := s.ConvertedFrom(); converted {
				state = "now in"
			}
			_, err = fmt.Fprintf(a.stdout, "%s is %s format %d\n", args[0], state, boltstore.FormatVersion)
			return err
		},
	}
}
