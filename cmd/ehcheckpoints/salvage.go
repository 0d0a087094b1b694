package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ehcheckpoints/boltstore"
	"github.com/ehcheckpoints/boltstore/internal/fsync"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newSalvageCmd) }

func newSalvageCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "salvage FILE DEST",
		Short: "Copy every record that is still intact out of a damaged file",
		Long: `salvage is for a damaged file that has no backup. It reads FILE page by page
without trusting its structure, skips what is damaged, and writes every
ownership and checkpoint whose checksum still holds into a new store file
DEST, a path that must not exist yet. A record that comes out is exactly as
it was stored; one that is damaged is left behind and listed.

It exits with status 0 when it found no damage, and with status 1 after
listing what it had to leave behind. Stop the processors, check the list,
and move DEST into place: partitions whose checkpoints were lost start
again from the processors' configured start position.`,
		Example: `  ehcheckpoints salvage checkpoints.db salvaged.db`,
		Args:    exactArgs("FILE", "DEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dest := args[0], args[1]
			if err := checkStoreFile(src, false); err != nil {
				return err
			}
			if _, err := os.Lstat(dest); err == nil {
				return fmt.Errorf("%s: %w", dest, errDestExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), a.lockTimeout)
			stopNotice := a.noticeWait(src)
			records, lost, err := boltstore.Salvage(ctx, src)
			stopNotice()
			cancel()
			if err != nil {
				return err
			}
			if err := a.writeSalvaged(cmd.Context(), dest, records); err != nil {
				return err
			}
			ownerships, checkpoints := 0, 0
			for _, g := range groupRecords(records) {
				o, c := g.counts()
				ownerships, checkpoints = ownerships+o, checkpoints+c
			}
			fmt.Fprintf(a.stdout, "salvaged %d ownership(s) and %d checkpoint(s) from %s into %s\n", ownerships, checkpoints, src, dest)
			if len(lost) == 0 {
				return nil
			}
			fmt.Fprintf(a.stdout, "left behind, %d damaged part(s):\n", len(lost))
			for _, l := range lost {
				fmt.Fprintf(a.stdout, "  - %v\n", l)
			}
			return fmt.Errorf("%s is damaged: %s holds what could be read", src, dest)
		},
	}
}

var errDestExists = errors.New("already exists; salvage writes a new file")

// writeSalvaged creates the store file dest holding records. It builds the
// store in a directory of its own next to dest and links it into place
// once complete, so dest is either absent or whole, and a file that
// appeared at dest meanwhile is neither overwritten nor removed.
func (a *app) writeSalvaged(ctx context.Context, dest string, records []boltstore.Record) error {
	dir := filepath.Dir(dest)
	tmpDir, err := os.MkdirTemp(dir, "."+filepath.Base(dest)+".salvage-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, filepath.Base(dest))
	s, err := a.openStore(ctx, tmp, createFile)
	if err != nil {
		return err
	}
	err = s.PutRecords(ctx, records)
	if closeErr := s.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, dest); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", dest, errDestExists)
	} else if err != nil {
		return err
	}
	return fsync.Path(dir)
}
