package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newShowCmd) }

// showOptions are the flags of show, which watch shares.
type showOptions struct {
	scope  boltstore.Scope
	expiry time.Duration
	json   bool
}

func (o *showOptions) addFlags(cmd *cobra.Command) {
	addScopeFlags(cmd, &o.scope)
	addExpiryFlag(cmd, &o.expiry)
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON with exact times instead of a table")
}

func newShowCmd(a *app) *cobra.Command {
	var o showOptions
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Show each partition's owner and checkpoint",
		Long: `show prints one row per partition of each consumer group in the file:

  OWNER         the owner id ("-" if none; "(released)" if relinquished)
  RENEWED       how long ago the owner last claimed or renewed the partition
  EXPIRED       whether that is longer ago than --expiry, so processors treat
                the partition as free
  ETAG          the ownership's etag, which a claim must name
  SEQUENCE      the checkpoint's sequence number
  OFFSET        the checkpoint's offset; a processor resumes from the offset
                when there is one, else from the sequence number
  CHECKPOINTED  how long ago the checkpoint was written

--json prints the same with exact RFC 3339 times, for scripts; a
relinquished ownership has "released": true (and "expired": false). The
example lists the partitions that processors treat as free.`,
		Example: `  ehcheckpoints show checkpoints.db
  ehcheckpoints show checkpoints.db --hub orders --group '$Default'
  ehcheckpoints show checkpoints.db --json | jq '.groups[].partitions[] | select(.ownership.expired or .ownership.released)'`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			if err != nil {
				return err
			}
			defer s.Close()
			return o.render(cmd.Context(), a, s, a.stdout, a.stderr)
		},
	}
	o.addFlags(cmd)
	return cmd
}

// render reads the partitions in scope and writes them to w as a table, or
// as JSON with --json. An empty table is noGroups, written to note.
func (o *showOptions) render(ctx context.Context, a *app, s *boltstore.Store, w, note io.Writer) error {
	records, err := s.Records(ctx, o.scope)
	if err != nil {
		return err
	}
	groups := groupRecords(records)
	now := a.now()
	if o.json {
		return writeShowJSON(w, groups, now, o.expiry)
	}
	if len(groups) == 0 {
		_, err := fmt.Fprintln(note, noGroups)
		return err
	}
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := writeShowTable(w, g, now, o.expiry); err != nil {
			return err
		}
	}
	return nil
}

// noGroups is what the tables of ls and show say when there is nothing to
// list, so that an empty table is not mistaken for a failure. It goes to
// stderr, to keep it out of what a script reads, except on watch's screen.
const noGroups = "ehcheckpoints: no consumer groups in scope"

func writeShowTable(w io.Writer, g *group, now time.Time, expiry time.Duration) error {
	fmt.Fprintf(w, "%s / %s / %s\n", g.Namespace, g.EventHub, g.ConsumerGroup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tRENEWED\tEXPIRED\tETAG\tSEQUENCE\tOFFSET\tCHECKPOINTED")
	for _, p := range g.partitions {
		owner, renewed, expired, etag := "-", "-", "-", "-"
		if own := p.ownership; own != nil {
			owner, renewed, etag = own.OwnerID, ago(now, own.LastModifiedTime), own.ETag
			if owner == "" {
				owner = "(released)"
			} else if p.owned(now, expiry) {
				expired = "no"
			} else {
				expired = "yes"
			}
		}
		sequence, offset, written := "-", "-", "-"
		if cp := p.checkpoint; cp != nil {
			if cp.SequenceNumber != nil {
				sequence = strconv.FormatInt(*cp.SequenceNumber, 10)
			}
			if cp.Offset != nil {
				offset = strconv.Quote(*cp.Offset)
				if isPlainOffset(*cp.Offset) {
					offset = *cp.Offset
				}
			}
			written = ago(now, cp.WrittenAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.id, owner, renewed, expired, etag, sequence, offset, written)
	}
	return tw.Flush()
}

// isPlainOffset reports whether an offset can be shown as it is in a table.
// Others (empty, or with spaces or quotes) are shown quoted, so that an
// empty offset is told apart from a missing one.
func isPlainOffset(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\\' || r > '~' {
			return false
		}
	}
	return true
}

// showJSON is the document show --json prints. Times are exact; ages are
// left to the reader, measured against now.
type showJSON struct {
	Now    string          `json:"now"`
	Expiry string          `json:"expiry"`
	Groups []showGroupJSON `json:"groups"`
}

// showGroupJSON is one consumer group in show --json.
type showGroupJSON struct {
	Namespace     string              `json:"namespace"`
	EventHub      string              `json:"eventHub"`
	ConsumerGroup string              `json:"consumerGroup"`
	Partitions    []showPartitionJSON `json:"partitions"`
}

// showPartitionJSON is one partition; a part the file lacks is left out.
type showPartitionJSON struct {
	PartitionID string              `json:"partitionId"`
	Ownership   *showOwnershipJSON  `json:"ownership,omitempty"`
	Checkpoint  *showCheckpointJSON `json:"checkpoint,omitempty"`
}

// showOwnershipJSON is a partition's ownership in show --json.
type showOwnershipJSON struct {
	OwnerID          string `json:"ownerId"`
	ETag             string `json:"etag"`
	LastModifiedTime string `json:"lastModifiedTime"`
	// Expired is true when the owner has not renewed the partition within
	// the expiry, so processors treat it as free; Released is true when
	// the ownership was relinquished (its owner id is empty), which frees
	// it too. They are the table's EXPIRED "yes" and OWNER "(released)".
	Expired  bool `json:"expired"`
	Released bool `json:"released"`
}

// showCheckpointJSON is a partition's checkpoint in show --json; offset
// and sequenceNumber are left out when absent.
type showCheckpointJSON struct {
	Offset         *string `json:"offset,omitempty"`
	SequenceNumber *int64  `json:"sequenceNumber,omitempty"`
	WrittenAt      string  `json:"writtenAt"`
}

func writeShowJSON(w io.Writer, groups []*group, now time.Time, expiry time.Duration) error {
	doc := showJSON{Now: formatTime(now), Expiry: expiry.String(), Groups: []showGroupJSON{}}
	for _, g := range groups {
		gj := showGroupJSON{Namespace: g.Namespace, EventHub: g.EventHub, ConsumerGroup: g.ConsumerGroup}
		for _, p := range g.partitions {
			pj := showPartitionJSON{PartitionID: p.id}
			if own := p.ownership; own != nil {
				pj.Ownership = &showOwnershipJSON{
					OwnerID:          own.OwnerID,
					ETag:             own.ETag,
					LastModifiedTime: formatTime(own.LastModifiedTime),
					Expired:          own.OwnerID != "" && !p.owned(now, expiry),
					Released:         own.OwnerID == "",
				}
			}
			if cp := p.checkpoint; cp != nil {
				pj.Checkpoint = &showCheckpointJSON{Offset: cp.Offset, SequenceNumber: cp.SequenceNumber, WrittenAt: formatTime(cp.WrittenAt)}
			}
			gj.Partitions = append(gj.Partitions, pj)
		}
		doc.Groups = append(doc.Groups, gj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
