package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/ehcheckpoints/boltstore"
	"github.com/ehcheckpoints/boltstore/internal/fsync"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newExportCmd) }

// recordJSON is one line of the export format (JSON Lines). Field order and
// names are part of the format; pointers tell absent fields from empty ones.
type recordJSON struct {
	Type          boltstore.RecordType `json:"type"`
	Namespace     string               `json:"namespace"`
	EventHub      string               `json:"eventHub"`
	ConsumerGroup string               `json:"consumerGroup"`
	PartitionID   string               `json:"partitionId"`

	// Ownership rows.
	OwnerID          *string `json:"ownerId,omitempty"`
	ETag             *string `json:"etag,omitempty"`
	LastModifiedTime *string `json:"lastModifiedTime,omitempty"`

	// Checkpoint rows.
	Offset         *string `json:"offset,omitempty"`
	SequenceNumber *int64  `json:"sequenceNumber,omitempty"`
	WrittenAt      *string `json:"writtenAt,omitempty"`
}

func newRecordJSON(r boltstore.Record) recordJSON {
	row := recordJSON{Type: r.Type, Namespace: r.Namespace, EventHub: r.EventHub, ConsumerGroup: r.ConsumerGroup, PartitionID: r.PartitionID}
	if r.Type == boltstore.RecordOwnership {
		modified := formatTime(r.LastModifiedTime)
		row.OwnerID, row.ETag, row.LastModifiedTime = &r.OwnerID, &r.ETag, &modified
	} else {
		written := formatTime(r.WrittenAt)
		row.Offset, row.SequenceNumber, row.WrittenAt = r.Offset, r.SequenceNumber, &written
	}
	return row
}

func newExportCmd(a *app) *cobra.Command {
	var scope boltstore.Scope
	var output string
	cmd := &cobra.Command{
		Use:   "export FILE",
		Short: "Write the file's records as JSON Lines",
		Long: `export writes every ownership and checkpoint in the file, one JSON object
per line, to standard output or to -o. Ownership lines carry ownerId, etag
and lastModifiedTime; checkpoint lines carry offset and sequenceNumber (each
left out when absent) and writtenAt. Times are RFC 3339 in UTC with
nanoseconds, so import restores them exactly:

  {"type":"ownership","namespace":"ns.servicebus.windows.net","eventHub":"orders","consumerGroup":"$default","partitionId":"0","ownerId":"host-a","etag":"8c1e…","lastModifiedTime":"2025-01-02T03:04:05.123456789Z"}
  {"type":"checkpoint","namespace":"ns.servicebus.windows.net","eventHub":"orders","consumerGroup":"$default","partitionId":"0","offset":"4096","sequenceNumber":17,"writtenAt":"2025-01-02T03:04:05.2Z"}

Names are lower case, as the store keeps them. The records are read in one
transaction, so the export is consistent while processors keep writing.

-o writes a new file and refuses to replace an existing one (a store file
given there by mistake would be lost); to replace a file, redirect standard
output instead.`,
		Example: `  ehcheckpoints export checkpoints.db > backup.jsonl
  ehcheckpoints export checkpoints.db --hub orders -o orders.jsonl`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			toFile := output != "" && output != "-"
			// writeNewFile refuses it too, but only after the records
			// were read, with the file taken from the processors.
			if info, err := os.Lstat(output); toFile && err == nil {
				if info.IsDir() {
					return fmt.Errorf("%s: is a directory; export -o takes the path of a new file", output)
				}
				return fmt.Errorf("%s: %w", output, errOutputExists)
			}
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			if err != nil {
				return err
			}
			defer s.Close()
			records, err := s.Records(cmd.Context(), scope)
			if err != nil {
				return err
			}
			if !toFile {
				return writeRecordsJSON(a.stdout, records)
			}
			return writeNewFile(output, func(w io.Writer) error { return writeRecordsJSON(w, records) })
		},
	}
	addScopeFlags(cmd, &scope)
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

func writeRecordsJSON(w io.Writer, records []boltstore.Record) error {
	enc := json.NewEncoder(w)
	// The format is data, not HTML: keep "<", ">" and "&" as they are.
	enc.SetEscapeHTML(false)
	for _, r := range records {
		if err := enc.Encode(newRecordJSON(r)); err != nil {
			return err
		}
	}
	return nil
}

// errOutputExists is fs.ErrExist with advice for export -o.
var errOutputExists = fmt.Errorf("%w; export -o writes a new file (redirect standard output to replace one)", fs.ErrExist)

// writeNewFile writes a new file at path with fill (fsync.NewFile).
func writeNewFile(path string, fill func(io.Writer) error) error {
	err := fsync.NewFile(path, func(f *os.File) error { return fill(f) })
	switch {
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s: %w", path, errOutputExists)
	case err != nil:
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// parseTime reads a time written by formatTime.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
	}
	return t.UTC(), nil
}
