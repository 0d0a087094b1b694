package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newLsCmd) }

// lsGroupJSON is one consumer group in ls --json.
type lsGroupJSON struct {
	Namespace     string        `json:"namespace"`
	EventHub      string        `json:"eventHub"`
	ConsumerGroup string        `json:"consumerGroup"`
	Partitions    int           `json:"partitions"`
	Checkpoints   int           `json:"checkpoints"`
	Owners        []lsOwnerJSON `json:"owners"`
}

// lsOwnerJSON counts the partitions of one owner id in a group. The empty
// owner id stands for relinquished partitions.
type lsOwnerJSON struct {
	OwnerID    string `json:"ownerId"`
	Partitions int    `json:"partitions"`
	// Expired counts the partitions whose ownership is older than --expiry.
	Expired int `json:"expired"`
}

func newLsCmd(a *app) *cobra.Command {
	var scope boltstore.Scope
	var expiry time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls FILE",
		Aliases: []string{"list"},
		Short:   "List the consumer groups in the file with their owners",
		Long: `ls lists each namespace, event hub and consumer group in the file with its
number of partitions and checkpoints and the owners that hold its
partitions: "host-a (4)" holds four partitions, "host-b (2 expired)" held
two and has not renewed them within --expiry, "(released) (1)" counts
relinquished partitions. Names are lower case, as the store keeps them.`,
		Example: `  ehcheckpoints ls checkpoints.db
  ehcheckpoints ls checkpoints.db --json`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.openStore(cmd.Context(), args[0], readFile)
			if err != nil {
				return err
			}
			defer s.Close()
			records, err := s.Records(cmd.Context(), scope)
			if err != nil {
				return err
			}
			summary := summarizeGroups(groupRecords(records), a.now(), expiry)
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(summary)
			}
			if len(summary) == 0 {
				_, err := fmt.Fprintln(a.stderr, noGroups)
				return err
			}
			return writeLsTable(a.stdout, summary)
		},
	}
	addScopeFlags(cmd, &scope)
	addExpiryFlag(cmd, &expiry)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func summarizeGroups(groups []*group, now time.Time, expiry time.Duration) []lsGroupJSON {
	summary := []lsGroupJSON{}
	for _, g := range groups {
		gj := lsGroupJSON{Namespace: g.Namespace, EventHub: g.EventHub, ConsumerGroup: g.ConsumerGroup, Partitions: len(g.partitions), Owners: []lsOwnerJSON{}}
		for _, p := range g.partitions {
			if p.checkpoint != nil {
				gj.Checkpoints++
			}
			if p.ownership == nil {
				continue
			}
			i := slices.IndexFunc(gj.Owners, func(o lsOwnerJSON) bool { return o.OwnerID == p.ownership.OwnerID })
			if i < 0 {
				i = len(gj.Owners)
				gj.Owners = append(gj.Owners, lsOwnerJSON{OwnerID: p.ownership.OwnerID})
			}
			gj.Owners[i].Partitions++
			if p.ownership.OwnerID != "" && !p.owned(now, expiry) {
				gj.Owners[i].Expired++
			}
		}
		slices.SortFunc(gj.Owners, func(a, b lsOwnerJSON) int { return strings.Compare(a.OwnerID, b.OwnerID) })
		summary = append(summary, gj)
	}
	return summary
}

func writeLsTable(w io.Writer, summary []lsGroupJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tEVENT-HUB\tCONSUMER-GROUP\tPARTITIONS\tCHECKPOINTS\tOWNERS")
	for _, g := range summary {
		owners := make([]string, 0, len(g.Owners))
		for _, o := range g.Owners {
			name := o.OwnerID
			if name == "" {
				name = "(released)"
			}
			switch {
			case o.Expired == 0:
				owners = append(owners, fmt.Sprintf("%s (%d)", name, o.Partitions))
			case o.Expired == o.Partitions:
				owners = append(owners, fmt.Sprintf("%s (%d expired)", name, o.Partitions))
			default:
				owners = append(owners, fmt.Sprintf("%s (%d, %d expired)", name, o.Partitions, o.Expired))
			}
		}
		list := strings.Join(owners, ", ")
		if list == "" {
			list = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", g.Namespace, g.EventHub, g.ConsumerGroup, g.Partitions, g.Checkpoints, list)
	}
	return tw.Flush()
}
