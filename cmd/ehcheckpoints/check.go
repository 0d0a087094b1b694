package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newCheckCmd) }

func newCheckCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Verify the file's structure and every record's checksum",
		Long: `check reads the whole file, while processors keep using it, and verifies
bbolt's page structure, the record buckets, and the checksum and encoding of
every ownership and checkpoint. It prints "ok" and exits with status 0 for
a healthy file. For a damaged one it prints each problem found and exits
with status 1: restore the file from a backup (see 'backup'), or copy out
what is still intact (see 'salvage').

When a process or the machine stopped while it wrote the file, the store
undoes the commit that was cut short, whichever process opens the file
first. If that is check, it says so after "ok": the writes in that commit
were never acknowledged, unless the file was damaged after they were,
which looks the same.`,
		Example: `  ehcheckpoints check checkpoints.db`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			if err == nil {
				defer s.Close()
				err = s.Check(cmd.Context())
			}
			if err == nil {
				records, err := s.Records(cmd.Context(), boltstore.Scope{})
				if err != nil {
					return err
				}
				ownerships, checkpoints := 0, 0
				for _, g := range groupRecords(records) {
					o, c := g.counts()
					ownerships, checkpoints = ownerships+o, checkpoints+c
				}
				if _, err := fmt.Fprintf(a.stdout, "ok: %s: %d ownership(s) and %d checkpoint(s), structure and checksums verified\n", args[0], ownerships, checkpoints); err != nil {
					return err
				}
				return printUndone(a.stdout, s)
			}
			if !errors.Is(err, boltstore.ErrCorrupt) {
				return err
			}
			// Open stops at the first structural problem; Check joins all
			// it finds.
			problems := []error{err}
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				problems = joined.Unwrap()
			}
			fmt.Fprintf(a.stdout, "damaged: %s: %d problem(s):\n", args[0], len(problems))
			// Each problem ends with advice to run check, which this is.
			advice := fmt.Sprintf(" (run `ehcheckpoints check %s`; restore from a backup if it reports damage)", args[0])
			for _, p := range problems {
				fmt.Fprintf(a.stdout, "  - %s\n", strings.Replace(p.Error(), advice, "", 1))
			}
			if s != nil {
				// No later open will find the undone commit to report.
				if err := printUndone(a.stdout, s); err != nil {
					return err
				}
			}
			return fmt.Errorf("%s is damaged; restore it from a backup", args[0])
		},
	}
}

// printUndone says which incomplete commit opening the file undid, if any.
func printUndone(w io.Writer, s *boltstore.Store) error {
	txid, undone := s.UndoneCommit()
	if !undone {
		return nil
	}
	_, err := fmt.Fprintf(w, "note: opening the file undid commit %d, which had not reached the disk whole (a writer stopped during it, or the file was damaged after), and went back to commit %d\n", txid, txid-1)
	return err
}
