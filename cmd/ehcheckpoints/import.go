package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newImportCmd) }

func newImportCmd(a *app) *cobra.Command {
	var o editOptions
	cmd := &cobra.Command{
		Use:   "import FILE [INPUT]",
		Short: "Write records from JSON Lines into the file",
		Long: `import reads records in the format export writes, from INPUT or from
standard input, and writes them into FILE (created if missing, also when
INPUT holds no records) exactly as given, etags and times included. A
record replaces the one with the same type and coordinates; other records
in FILE stay.

The whole input is checked first. A malformed line is reported with its line
number and nothing is written; otherwise every record is written in one
transaction. A checkpoint line without writtenAt gets the current time.

Like the editing verbs, import refuses to overwrite partitions whose owner is
live, unless --force.`,
		Example: `  ehcheckpoints export old.db | ehcheckpoints import new.db
  ehcheckpoints import checkpoints.db backup.jsonl --dry-run`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("import takes FILE and an optional INPUT, got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			input, name := a.stdin, "standard input"
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				input, name = f, args[1]
			}
			records, err := readRecordsJSON(input, name, a)
			if err != nil {
				return err
			}
			// FILE is opened even for no records, so that it is created
			// as promised, or refused if it is not a store file.
			s, existing, err := a.openDestination(cmd.Context(), args[0], o.dryRun)
			if err != nil {
				return err
			}
			if s != nil {
				defer s.Close()
			}
			if len(records) == 0 {
				fmt.Fprintf(a.stderr, "ehcheckpoints: no records in %s; nothing to import into %s\n", name, args[0])
				return nil
			}
			targets := writtenTargets(groupRecords(existing), records)
			if err := o.checkNotOwned(targets, a.now(), ownersOverwrite); err != nil {
				return err
			}
			verb := "imported"
			if o.dryRun {
				verb = "would import"
			} else if err := s.PutRecords(cmd.Context(), records, o.unchanged(targets)...); err != nil {
				return err
			}
			return printImportSummary(a.stdout, verb, records, args[0])
		},
	}
	o.addFlags(cmd)
	return cmd
}

// maxReportedLines bounds how many malformed lines import reports.
const maxReportedLines = 20

// readRecordsJSON parses the export format. It checks every line and
// returns either all records or an error that lists the malformed lines
// (at most maxReportedLines of them) by number.
func readRecordsJSON(r io.Reader, name string, a *app) ([]boltstore.Record, error) {
	var records []boltstore.Record
	var problems []string
	firstLine := map[string]int{} // record key -> line that set it
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			rec, perr := parseRecordLine(line, a)
			if perr == nil {
				key := strings.Join([]string{string(rec.Type), rec.Namespace, rec.EventHub, rec.ConsumerGroup, rec.PartitionID}, "\x00")
				if first, dup := firstLine[key]; dup {
					perr = fmt.Errorf("%s of the same partition as line %d", rec.Type, first)
				} else {
					firstLine[key] = n
				}
			}
			if perr != nil {
				if len(problems) < maxReportedLines {
					problems = append(problems, fmt.Sprintf("  %s:%d: %v", name, n, perr))
				}
			} else {
				records = append(records, rec)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: malformed input, nothing written:\n%s", name, strings.Join(problems, "\n"))
	}
	return records, nil
}

// repeatedKey returns a key that the JSON object on line has twice, which
// encoding/json would silently resolve to the last value. Keys match
// fields case-insensitively, so they are compared so.
func repeatedKey(line []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		key, isKey := t.(string)
		if err != nil || !isKey {
			return "", false
		}
		folded := strings.ToLower(key)
		if seen[folded] {
			return key, true
		}
		seen[folded] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return "", false
		}
	}
	return "", false
}

// parseRecordLine parses one line of the export format strictly: unknown
// fields, repeated fields, fields of the other record type and missing
// fields are errors.
func parseRecordLine(line []byte, a *app) (boltstore.Record, error) {
	var row recordJSON
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&row); err != nil {
		return boltstore.Record{}, err
	}
	if dec.More() {
		return boltstore.Record{}, errors.New("more than one JSON value on the line")
	}
	if key, ok := repeatedKey(line); ok {
		return boltstore.Record{}, fmt.Errorf("field %q appears twice", key)
	}
	// Names are folded here as the store folds them, so that duplicates and
	// the summary see one consumer group however its lines spell it.
	scope := foldScope(boltstore.Scope{Namespace: row.Namespace, EventHub: row.EventHub, ConsumerGroup: row.ConsumerGroup})
	rec := boltstore.Record{Type: row.Type, Namespace: scope.Namespace, EventHub: scope.EventHub, ConsumerGroup: scope.ConsumerGroup, PartitionID: row.PartitionID}
	// The type first: what else a line needs depends on it.
	switch row.Type {
	case "":
		return rec, fmt.Errorf("type is missing or empty; it is %q or %q", boltstore.RecordOwnership, boltstore.RecordCheckpoint)
	case boltstore.RecordOwnership, boltstore.RecordCheckpoint:
	default:
		return rec, fmt.Errorf("type %q is unknown; it is %q or %q", row.Type, boltstore.RecordOwnership, boltstore.RecordCheckpoint)
	}
	for _, f := range []struct{ name, value string }{
		{"namespace", row.Namespace}, {"eventHub", row.EventHub}, {"consumerGroup", row.ConsumerGroup}, {"partitionId", row.PartitionID},
	} {
		if f.value == "" {
			return rec, fmt.Errorf("%s is missing or empty", f.name)
		}
	}
	switch row.Type {
	case boltstore.RecordOwnership:
		if row.Offset != nil || row.SequenceNumber != nil || row.WrittenAt != nil {
			return rec, errors.New("an ownership has no offset, sequenceNumber or writtenAt")
		}
		if row.OwnerID == nil || row.ETag == nil || *row.ETag == "" || row.LastModifiedTime == nil {
			return rec, errors.New("an ownership needs ownerId (empty if released), etag and lastModifiedTime")
		}
		modified, err := parseTime(*row.LastModifiedTime)
		if err != nil {
			return rec, fmt.Errorf("lastModifiedTime: %w", err)
		}
		rec.OwnerID, rec.ETag, rec.LastModifiedTime = *row.OwnerID, *row.ETag, modified
	case boltstore.RecordCheckpoint:
		if row.OwnerID != nil || row.ETag != nil || row.LastModifiedTime != nil {
			return rec, errors.New("a checkpoint has no ownerId, etag or lastModifiedTime")
		}
		if row.Offset == nil && row.SequenceNumber == nil {
			return rec, errors.New("a checkpoint needs an offset, a sequenceNumber or both")
		}
		rec.Offset, rec.SequenceNumber, rec.WrittenAt = row.Offset, row.SequenceNumber, a.now().UTC()
		if row.WrittenAt != nil {
			written, err := parseTime(*row.WrittenAt)
			if err != nil {
				return rec, fmt.Errorf("writtenAt: %w", err)
			}
			rec.WrittenAt = written
		}
	}
	// The store's own rules (name lengths, control characters), checked
	// here so that a refusal names its line.
	return rec, rec.Validate()
}

// printImportSummary tells per consumer group how many records import
// wrote, or would write.
func printImportSummary(w io.Writer, verb string, records []boltstore.Record, file string) error {
	for _, g := range groupRecords(records) {
		ownerships, checkpoints := g.counts()
		if _, err := fmt.Fprintf(w, "%s %d ownership(s) and %d checkpoint(s) of %s into %s\n", verb, ownerships, checkpoints, g, file); err != nil {
			return err
		}
	}
	return nil
}
