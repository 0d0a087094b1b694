package main

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newReleaseCmd) }

func newReleaseCmd(a *app) *cobra.Command {
	var sel selectOptions
	var edit editOptions
	var owner string
	cmd := &cobra.Command{
		Use:   "release FILE (--partition ID... | --owner ID | --all)",
		Short: "Relinquish ownerships so that processors can claim the partitions now",
		Long: `release relinquishes the ownership of the given partitions, of every
partition that --owner holds, or of every owned partition in scope with
--all, as a processor does when it shuts down: the partitions are free for
any processor at once, instead of after --expiry.

Use it to free the partitions of an instance that crashed. The release is a
claim with the ownership's current etag, so a partition whose owner renewed
it meanwhile is left alone and reported. A live owner that renews after the
release fails to, and gives the partition up.

release refuses partitions whose owner renewed them within --expiry unless
--force: the owner may still be running. Check with 'show' first. Nothing
to release (a partition without owner, an owner that holds nothing) is
said on stderr and is no failure, so a cleanup script can run again.`,
		Example: `  # Free everything the crashed instance host-7 held.
  ehcheckpoints release checkpoints.db --owner host-7 --force

  ehcheckpoints release checkpoints.db --group '$Default' --partition 3 --dry-run`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := exactlyOneFlag(cmd, "partition", "owner", "all"); err != nil {
				return err
			}
			if cmd.Flags().Changed("owner") && owner == "" {
				return usagef("--owner is empty; give the owner id whose partitions to release")
			}
			if owner != "" {
				sel.all = true
			}
			s, targets, err := sel.open(cmd.Context(), a, args[0], edit.use(), false)
			if err != nil {
				return err
			}
			defer s.Close()
			var changed []target
			var claims []azeventhubs.Ownership
			for _, t := range targets {
				own := t.partition.ownership
				switch {
				case owner != "" && (own == nil || own.OwnerID != owner):
					continue
				case own == nil:
					fmt.Fprintf(a.stderr, "ehcheckpoints: %s has no owner\n", t)
					continue
				case own.OwnerID == "":
					if !sel.all {
						fmt.Fprintf(a.stderr, "ehcheckpoints: %s is already released\n", t)
					}
					continue
				}
				etag := azcore.ETag(own.ETag)
				changed = append(changed, t)
				claims = append(claims, azeventhubs.Ownership{
					FullyQualifiedNamespace: own.Namespace,
					EventHubName:            own.EventHub,
					ConsumerGroup:           own.ConsumerGroup,
					PartitionID:             own.PartitionID,
					ETag:                    &etag,
				})
			}
			if owner != "" && len(changed) == 0 {
				fmt.Fprintf(a.stderr, "ehcheckpoints: owner %q holds no partition in scope; nothing to release\n", owner)
				return nil
			}
			now := a.now()
			if err := edit.checkNotOwned(changed, now, "Those owners may still be running, and a release makes them drop the partitions. If they are gone, use --force."); err != nil {
				return err
			}
			// The store answers with the claims that won, in the spelling
			// they were made in.
			key := func(o azeventhubs.Ownership) string {
				return strings.Join([]string{o.FullyQualifiedNamespace, o.EventHubName, o.ConsumerGroup, o.PartitionID}, "\x00")
			}
			verb, released := "released", map[string]bool{}
			if edit.dryRun {
				verb = "would release"
			} else {
				won, err := s.ClaimOwnership(cmd.Context(), claims, nil)
				if err != nil {
					return err
				}
				for _, o := range won {
					released[key(o)] = true
				}
			}
			var lost []string
			for i, t := range changed {
				if !edit.dryRun && !released[key(claims[i])] {
					lost = append(lost, "  "+t.String())
					continue
				}
				own := t.partition.ownership
				fmt.Fprintf(a.stdout, "%s %s (owner %s, renewed %s)\n", verb, t, own.OwnerID, ago(now, own.LastModifiedTime))
			}
			if len(lost) > 0 {
				return fmt.Errorf("%d partition(s) changed while releasing them and were left alone (run 'show' to see their owners):\n%s", len(lost), strings.Join(lost, "\n"))
			}
			return nil
		},
	}
	sel.addFlags(cmd)
	edit.addFlags(cmd)
	cmd.Flags().StringVar(&owner, "owner", "", "every partition this owner id holds")
	return cmd
}
