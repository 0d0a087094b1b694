package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newSetCmd) }

func newSetCmd(a *app) *cobra.Command {
	var sel selectOptions
	var edit editOptions
	var sequence int64
	var offset string
	cmd := &cobra.Command{
		Use:   "set FILE (--partition ID... | --all) [--sequence N] [--offset O]",
		Short: "Set partitions' checkpoints, for example to replay from an earlier event",
		Long: `set replaces the checkpoint of the given partitions, or of every partition of
a consumer group with --all, by one with the given --sequence and/or
--offset. The whole checkpoint is replaced: a processor resumes from the
offset when the checkpoint has one, else from the sequence number, so give
only --sequence to have it start from a sequence number. The processor
resumes after the checkpointed event.

The scope flags can be left out when the file holds one consumer group.
set refuses partitions whose owner is live (it would overwrite the change
with its next checkpoint) unless --force; stop the processors first. All
changes are written in one transaction.`,
		Example: `  # Replay partition 3 from sequence number 1200 on.
  ehcheckpoints set checkpoints.db --group '$Default' --partition 3 --sequence 1199

  # Preview setting every partition of a group; nothing is written.
  ehcheckpoints set checkpoints.db --hub orders --group billing --all --sequence 5000 --dry-run`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := exactlyOneFlag(cmd, "partition", "all"); err != nil {
				return err
			}
			var cp boltstore.Record
			if cmd.Flags().Changed("sequence") {
				if sequence < 0 {
					return usagef("--sequence %d is negative; Event Hubs numbers a partition's events from 0", sequence)
				}
				cp.SequenceNumber = &sequence
			}
			if cmd.Flags().Changed("offset") {
				cp.Offset = &offset
			}
			if cp.SequenceNumber == nil && cp.Offset == nil {
				return usagef("give --sequence, --offset or both")
			}
			s, targets, err := sel.open(cmd.Context(), a, args[0], edit.use(), true)
			if err != nil {
				return err
			}
			defer s.Close()
			if len(targets) == 0 {
				return fmt.Errorf("the consumer group has no partitions yet; name them with --partition")
			}
			now := a.now()
			if err := edit.checkNotOwned(targets, now, ownersOverwrite); err != nil {
				return err
			}
			verb := "set"
			if edit.dryRun {
				verb = "would set"
			}
			updates := make([]boltstore.Record, len(targets))
			for i, t := range targets {
				r := cp
				r.Type = boltstore.RecordCheckpoint
				r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID = t.group.Namespace, t.group.EventHub, t.group.ConsumerGroup, t.partition.id
				r.WrittenAt = now
				if err := r.Validate(); err != nil {
					return flagError(err)
				}
				updates[i] = r
			}
			if !edit.dryRun {
				if err := s.PutRecords(cmd.Context(), updates, edit.unchanged(targets)...); err != nil {
					return err
				}
			}
			for i, t := range targets {
				fmt.Fprintf(a.stdout, "%s %s: %s -> %s\n", verb, t, describeCheckpoint(t.partition.checkpoint), describeCheckpoint(&updates[i]))
			}
			return nil
		},
	}
	sel.addFlags(cmd)
	edit.addFlags(cmd)
	cmd.Flags().Int64Var(&sequence, "sequence", 0, "the checkpoint's sequence number (0 or more)")
	cmd.Flags().StringVar(&offset, "offset", "", "the checkpoint's offset")
	return cmd
}

// recordFieldFlags names the flag that gives each field of a checkpoint
// that set writes, by the name the store's errors give the field.
var recordFieldFlags = map[string]string{
	"FullyQualifiedNamespace": "--namespace",
	"EventHubName":            "--hub",
	"ConsumerGroup":           "--group",
	"PartitionID":             "--partition",
	"Offset":                  "--offset",
}

// flagError rephrases the store's refusal of a checkpoint that set built
// from its flags for the user, who typed flags, not the record's fields:
// `FullyQualifiedNamespace "a\x01" contains…` becomes `--namespace "a\x01"
// contains…`.
func flagError(err error) error {
	msg := strings.TrimPrefix(err.Error(), boltstore.ErrInvalidArgument.Error()+": ")
	field, rest, _ := strings.Cut(msg, " ")
	if flag, ok := recordFieldFlags[field]; ok {
		msg = flag + " " + rest
	}
	return usagef("%s", msg)
}

// describeCheckpoint tells a checkpoint's position in words, for messages.
func describeCheckpoint(cp *boltstore.Record) string {
	if cp == nil {
		return "no checkpoint"
	}
	seq, off := "none", "none"
	if cp.SequenceNumber != nil {
		seq = strconv.FormatInt(*cp.SequenceNumber, 10)
	}
	if cp.Offset != nil {
		off = strconv.Quote(*cp.Offset)
	}
	return "sequence " + seq + ", offset " + off
}
