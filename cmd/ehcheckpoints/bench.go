package main

import (
	"encoding/json"

	"github.com/ehcheckpoints/boltstore/internal/benchcmp"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newBenchCmd) }

// benchOptions are the flags of bench.
type benchOptions struct {
	cfg      benchcmp.Config
	azurites string
	json     bool
}

func newBenchCmd(a *app) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure boltstore against the fdatasync floor and BlobStore on Azurite",
		Long: `bench measures the store's speed with default options (durable) side by
side with the two figures it is judged against, in one process, one after
another:

  disk               a 4 KiB write + fdatasync at a fixed offset of a
                     preallocated file: the least a durable commit costs
  boltstore          SetCheckpoint (one caller, and 32 concurrent callers),
                     ClaimOwnership renewing 32 partitions, ListOwnership and
                     ListCheckpoints of 32 partitions (also among 10,000
                     other consumer groups), two handles alternating on one
                     file (the handover between processes), and a list after
                     the store let go of an idle file (the reopen)
  BlobStore/Azurite  the SDK's checkpoints.BlobStore on an Azurite that bench
                     starts on loopback (in memory, so not durable), with its
                     per-request access log as developers run it; then again
                     on a --silent Azurite, which answers faster
                     (--azurite log or silent measures one of them only)

Every call is timed on its own and the table shows medians (p50) and p90;
the samples are taken in rounds so that a noisy machine skews all cases
alike. The targets compare figures of the same run: absolute times move by
tens of percent between runs on a shared machine, ratios much less.

Azurite comes from the repository's package.json: run ` + "`npm ci`" + ` (or ` + "`make deps`" + `)
first, or give --no-blob. The default run takes about 15 seconds on a quiet
machine; a busy disk can make it several times longer.`,
		Example: `  ehcheckpoints bench
  ehcheckpoints bench --samples 3000 --list-samples 20000 --rounds 10
  ehcheckpoints bench --no-blob --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.cfg.Progress = a.stderr
			rep, err := benchcmp.Run(cmd.Context(), o.cfg)
			if err != nil {
				return err
			}
			if o.json {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteText(a.stdout)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.cfg.Samples, "samples", benchcmp.DefaultSamples,
		"timed calls of each disk-bound case (floor, SetCheckpoint, ClaimOwnership); handover and reopen take a fifth, each of the 32 writers a quarter")
	f.IntVar(&o.cfg.ListSamples, "list-samples", benchcmp.DefaultListSamples, "timed calls of each boltstore list case")
	f.IntVar(&o.cfg.BlobSamples, "blob-samples", benchcmp.DefaultBlobSamples,
		"timed calls of each BlobStore case; ClaimOwnership (32 HTTP calls each) takes a quarter")
	f.IntVar(&o.cfg.Rounds, "rounds", benchcmp.DefaultRounds, "rounds the samples of every case are spread over")
	f.IntVar(&o.cfg.OtherGroups, "other-groups", benchcmp.DefaultOtherGroups, "other consumer groups in the many-groups file")
	f.IntVar(&o.cfg.OtherPartitions, "other-partitions", benchcmp.DefaultOtherPartitions, "ownerships and checkpoints of each other group")
	f.StringVar(&o.cfg.Dir, "dir", "", "directory for the store files and the floor's file (default: the system's temporary directory)")
	f.BoolVar(&o.cfg.SkipBlob, "no-blob", false, "leave out BlobStore and Azurite")
	f.StringVar(&o.azurites, "azurite", benchcmp.AzuriteBoth.String(),
		"Azurite setups to measure BlobStore on: log (access log, as developers run it; the targets' reference), silent, or both")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		setup, err := benchcmp.ParseAzuriteSetup(o.azurites)
		if err != nil {
			return usagef("--azurite: %v", err)
		}
		o.cfg.Azurites = setup
		for name, v := range map[string]int{"samples": o.cfg.Samples, "list-samples": o.cfg.ListSamples,
			"blob-samples": o.cfg.BlobSamples, "rounds": o.cfg.Rounds, "other-groups": o.cfg.OtherGroups, "other-partitions": o.cfg.OtherPartitions} {
			if v < 1 {
				return usagef("--%s must be at least 1, got %d", name, v)
			}
		}
		return nil
	}
	return cmd
}
