package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2/checkpoints"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newMigrateCmd) }

// envConnectionString names the environment variable that --connection-string
// defaults to, the one Azure's tools use for a storage account.
const envConnectionString = "AZURE_STORAGE_CONNECTION_STRING"

// processorsRunning is why migrate refuses while owners are live: the
// processors would go on writing to the source after the copy.
const processorsRunning = "Processors still use them and would go on checkpointing in the source after the copy: stop them first, or use --force."

// migrateOptions are the flags of migrate.
type migrateOptions struct {
	edit             editOptions
	scope            boltstore.Scope
	toBlob, fromBlob bool
	connectionString string
	containerName    string
	containerURL     string
	ownership        bool
}

func newMigrateCmd(a *app) *cobra.Command {
	var o migrateOptions
	cmd := &cobra.Command{
		Use:   "migrate FILE (--to-blob | --from-blob) (--container NAME [--connection-string CS] | --container-url URL)",
		Short: "Copy checkpoints to or from an Azure Blob Storage container",
		Long: `migrate copies the checkpoints of FILE into an Azure Blob Storage container
(--to-blob), or those of a container into FILE (--from-blob), through the
official checkpoints.BlobStore of the Go SDK, in its layout:

  <namespace>/<event hub>/<consumer group>/checkpoint/<partition>
  <namespace>/<event hub>/<consumer group>/ownership/<partition>

The container is given by --container and a connection string, from
--connection-string or the environment variable ` + envConnectionString + `,
or by --container-url, a URL with a SAS token that may read, list, write
and create. --to-blob creates the container if it does not exist.

The Go SDK's BlobStore is case-sensitive: a processor finds only blobs
spelled exactly as it spells the names. The store keeps names in lower case,
and --to-blob writes them so, except the consumer group $default, which it
writes "$Default", as Go processors spell azeventhubs.DefaultConsumerGroup.
Where your processors spell a name otherwise, give that spelling with
--namespace, --hub or --group. --to-blob prints the spelling it writes, and
refuses to write a group that the container holds in another spelling.
--from-blob reads every spelling and folds them, as the store does.

With --ownership, ownerships are copied too. Their owner ids are kept, but
a store sets etags and times by its own clock, so on the blob side every
copied ownership gets a new etag and counts as renewed now: processors see
it as live for their expiration time. Copying ownerships is rarely useful;
processors claim free partitions within seconds. --from-blob keeps the
blobs' etags and times, so those ownerships expire as they would have.

The Go BlobStore cannot list a checkpoint that lacks an offset or a sequence
number, so --to-blob refuses to write one. migrate refuses while a partition
in the source has a live owner, unless --force: stop the processors, migrate,
and start them against the new store.`,
		Example: `  export ` + envConnectionString + `='DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...'
  ehcheckpoints migrate checkpoints.db --to-blob --container checkpoints --group '$Default' --dry-run
  ehcheckpoints migrate checkpoints.db --from-blob --container-url 'https://acct.blob.core.windows.net/checkpoints?sv=...&sig=...'`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := exactlyOneFlag(cmd, "to-blob", "from-blob"); err != nil {
				return err
			}
			cc, name, err := o.containerClient(cmd.Flags().Changed("connection-string"))
			if err != nil {
				return err
			}
			store, err := checkpoints.NewBlobStore(cc, nil)
			if err != nil {
				return err
			}
			if o.toBlob {
				err = o.toBlobStore(cmd.Context(), a, args[0], cc, store, name)
			} else {
				err = o.fromBlobStore(cmd.Context(), a, args[0], cc, store, name)
			}
			if err != nil {
				return redactedError{err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.toBlob, "to-blob", false, "copy from FILE to the container")
	f.BoolVar(&o.fromBlob, "from-blob", false, "copy from the container to FILE (created if missing)")
	f.StringVar(&o.connectionString, "connection-string", os.Getenv(envConnectionString), "storage account connection string (default $"+envConnectionString+")")
	f.StringVar(&o.containerName, "container", "", "container name, with a connection string")
	f.StringVar(&o.containerURL, "container-url", "", "container URL with a SAS token, instead of --container and a connection string")
	f.BoolVar(&o.ownership, "ownership", false, "copy ownerships too")
	addScopeFlags(cmd, &o.scope)
	o.edit.addFlags(cmd)
	// The default of --connection-string is a secret: keep it out of --help.
	f.Lookup("connection-string").DefValue = ""
	return cmd
}

// sasSignature matches the signature of a SAS token in a URL.
var sasSignature = regexp.MustCompile(`(?i)\b(sig=)[^&"'\s]+`)

// redactedError keeps the signature of a SAS token out of an error's
// message: the HTTP client's errors quote the whole request URL.
type redactedError struct{ error }

func (e redactedError) Error() string {
	return sasSignature.ReplaceAllString(e.error.Error(), "${1}REDACTED")
}

func (e redactedError) Unwrap() error { return e.error }

// containerClient connects to the container the flags name, and returns it
// with the container's name for messages (never the URL, whose SAS token
// is a secret). explicitCS tells whether --connection-string was given on
// the command line rather than taken from the environment.
func (o *migrateOptions) containerClient(explicitCS bool) (*container.Client, string, error) {
	if o.containerURL != "" {
		if o.containerName != "" || explicitCS {
			return nil, "", usagef("give --container-url, or --container with a connection string, not both")
		}
		parts, err := blob.ParseURL(o.containerURL)
		if err != nil || parts.ContainerName == "" || parts.BlobName != "" {
			return nil, "", usagef("--container-url must be the URL of a container")
		}
		cc, err := container.NewClientWithNoCredential(o.containerURL, nil)
		return cc, parts.ContainerName, err
	}
	if o.containerName == "" {
		return nil, "", usagef("give --container (with a connection string) or --container-url")
	}
	if o.containerName == "$root" {
		return nil, "", usagef("--container $root cannot hold checkpoints: its blob names may not contain \"/\", and checkpoint blob names do")
	}
	if !validContainerName(o.containerName) {
		return nil, "", usagef("--container %q is not a container name: 3 to 63 lower-case letters, digits and hyphens, beginning and ending with a letter or digit, with no two hyphens in a row (or $web)", o.containerName)
	}
	if o.connectionString == "" {
		return nil, "", usagef("give --connection-string or set %s", envConnectionString)
	}
	cc, err := container.NewClientFromConnectionString(o.connectionString, o.containerName, nil)
	return cc, o.containerName, err
}

// containerNameChars is Azure's rule for a container name's characters:
// lower-case letters, digits and single hyphens between them.
var containerNameChars = regexp.MustCompile(`^[a-z0-9](-?[a-z0-9])*$`)

// validContainerName reports whether Azure accepts name for a container,
// checked here so that a typo gets a clear message rather than the
// service's HTTP 400 body. $web is a special container that may hold
// checkpoints; $root, the other one, may not (migrate says why).
func validContainerName(name string) bool {
	return name == "$web" || len(name) >= 3 && len(name) <= 63 && containerNameChars.MatchString(name)
}

// blobNames spells a group's names for the container: as the scope flags
// spell them where given, else in the store's lower case, but for the
// default consumer group, which Go processors spell "$Default".
func (o *migrateOptions) blobNames(g *group) boltstore.Scope {
	group := g.ConsumerGroup
	if strings.EqualFold(group, azeventhubs.DefaultConsumerGroup) {
		group = azeventhubs.DefaultConsumerGroup
	}
	return boltstore.Scope{
		Namespace:     cmp.Or(o.scope.Namespace, g.Namespace),
		EventHub:      cmp.Or(o.scope.EventHub, g.EventHub),
		ConsumerGroup: cmp.Or(o.scope.ConsumerGroup, group),
	}
}

// blobPrefix is the start of the names of a group's blobs.
func blobPrefix(names boltstore.Scope) string {
	return names.Namespace + "/" + names.EventHub + "/" + names.ConsumerGroup + "/"
}

// checkSpellings refuses to write groups that the container holds in
// another spelling: each Go processor would read only one of the two.
func (o *migrateOptions) checkSpellings(ctx context.Context, cc *container.Client, containerName string, groups []*group) error {
	held, _, _, err := listBlobGroups(ctx, cc, containerName, boltstore.Scope{})
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var clashes []string
	for _, g := range groups {
		names := o.blobNames(g)
		for _, other := range held {
			if other != names && foldScope(other) == foldScope(names) {
				clashes = append(clashes, fmt.Sprintf("  %s: would write %s, the container holds %s", g, blobPrefix(names), blobPrefix(other)))
			}
		}
	}
	if len(clashes) > 0 {
		return fmt.Errorf("refusing: container %s holds these groups in another spelling, and a Go processor reads only the one it spells:\n%s\nGive your processors' spelling with --namespace, --hub and --group, or delete the other blobs", containerName, strings.Join(clashes, "\n"))
	}
	return nil
}

func (o *migrateOptions) toBlobStore(ctx context.Context, a *app, file string, cc *container.Client, store *checkpoints.BlobStore, containerName string) error {
	s, err := a.openStore(ctx, file, readFile)
	if err != nil {
		return err
	}
	defer s.Close()
	records, err := s.Records(ctx, o.scope)
	if err != nil {
		return err
	}
	groups := groupRecords(records)
	if len(groups) == 0 {
		return fmt.Errorf("nothing in %s matches", file)
	}
	if err := o.edit.checkNotOwned(allTargets(groups), a.now(), processorsRunning); err != nil {
		return err
	}
	var incomplete []string
	for _, t := range allTargets(groups) {
		if cp := t.partition.checkpoint; cp != nil && (cp.Offset == nil || cp.SequenceNumber == nil) {
			incomplete = append(incomplete, fmt.Sprintf("  %s: %s", t, describeCheckpoint(cp)))
		}
	}
	if len(incomplete) > 0 {
		return fmt.Errorf("refusing: the Go SDK's BlobStore fails to list a consumer group with a checkpoint that lacks an offset or a sequence number, and these do:\n%s\nGive them both with 'set', or leave their groups out with --hub and --group", strings.Join(incomplete, "\n"))
	}
	var slashed []string
	for _, t := range allTargets(groups) {
		names := o.blobNames(t.group)
		if strings.Contains(names.Namespace+names.EventHub+names.ConsumerGroup+t.partition.id, "/") {
			slashed = append(slashed, fmt.Sprintf("  namespace %q, event hub %q, consumer group %q, partition %q", names.Namespace, names.EventHub, names.ConsumerGroup, t.partition.id))
		}
	}
	if len(slashed) > 0 {
		return fmt.Errorf("refusing: blob names join the namespace, event hub, consumer group and partition id with \"/\", so records whose names contain one would land on other records' blobs, and these do:\n%s\nLeave their groups out with --hub and --group", strings.Join(slashed, "\n"))
	}
	if err := o.checkSpellings(ctx, cc, containerName, groups); err != nil {
		return err
	}
	toContainer := func(g *group) string {
		return fmt.Sprintf("to container %s as %s", containerName, blobPrefix(o.blobNames(g)))
	}
	if o.edit.dryRun {
		return o.report(a.stdout, "would copy", groups, toContainer)
	}
	if err := ensureContainer(ctx, a, cc, containerName); err != nil {
		return err
	}
	for _, g := range groups {
		names := o.blobNames(g)
		for _, p := range g.partitions {
			cp := p.checkpoint
			if cp == nil {
				continue
			}
			err := store.SetCheckpoint(ctx, azeventhubs.Checkpoint{
				FullyQualifiedNamespace: names.Namespace,
				EventHubName:            names.EventHub,
				ConsumerGroup:           names.ConsumerGroup,
				PartitionID:             p.id,
				Offset:                  cp.Offset,
				SequenceNumber:          cp.SequenceNumber,
			}, nil)
			if err != nil {
				return fmt.Errorf("writing the checkpoint of %s partition %s: %w", g, p.id, err)
			}
		}
		if o.ownership {
			if err := claimBlobOwnerships(ctx, store, g, names); err != nil {
				return err
			}
		}
	}
	return o.report(a.stdout, "copied", groups, toContainer)
}

// ensureContainer creates the container if it does not exist yet; the
// BlobStore expects it to.
func ensureContainer(ctx context.Context, a *app, cc *container.Client, name string) error {
	_, err := cc.GetProperties(ctx, nil)
	if !bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return err
	}
	if _, err := cc.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return err
	}
	fmt.Fprintf(a.stderr, "ehcheckpoints: created container %s\n", name)
	return nil
}

// claimBlobOwnerships writes a group's ownerships through ClaimOwnership,
// the only way the BlobStore writes them: create-only where the container
// has none, else over the etag it lists.
func claimBlobOwnerships(ctx context.Context, store *checkpoints.BlobStore, g *group, names boltstore.Scope) error {
	existing, err := store.ListOwnership(ctx, names.Namespace, names.EventHub, names.ConsumerGroup, nil)
	if err != nil {
		return err
	}
	etags := map[string]*azcore.ETag{}
	for _, o := range existing {
		etags[o.PartitionID] = o.ETag
	}
	var claims []azeventhubs.Ownership
	for _, p := range g.partitions {
		if own := p.ownership; own != nil {
			claims = append(claims, azeventhubs.Ownership{
				FullyQualifiedNamespace: names.Namespace,
				EventHubName:            names.EventHub,
				ConsumerGroup:           names.ConsumerGroup,
				PartitionID:             p.id,
				OwnerID:                 own.OwnerID,
				ETag:                    etags[p.id],
			})
		}
	}
	won, err := store.ClaimOwnership(ctx, claims, nil)
	if err != nil {
		return fmt.Errorf("writing the ownerships of %s: %w", g, err)
	}
	if len(won) != len(claims) {
		return fmt.Errorf("writing the ownerships of %s: %d of %d changed in the container meanwhile; run migrate again", g, len(claims)-len(won), len(claims))
	}
	return nil
}

// report prints per group what migrate copied, or would copy, and where.
func (o *migrateOptions) report(w io.Writer, verb string, groups []*group, where func(*group) string) error {
	for _, g := range groups {
		ownerships, checkpoints := g.counts()
		what := fmt.Sprintf("%d checkpoint(s)", checkpoints)
		if o.ownership {
			what += fmt.Sprintf(" and %d ownership(s)", ownerships)
		}
		if _, err := fmt.Fprintf(w, "%s %s of %s %s\n", verb, what, g, where(g)); err != nil {
			return err
		}
	}
	return nil
}

// blobLayoutParts is how many parts the name of a checkpoint or ownership
// blob has: namespace/hub/group/kind/partition.
const blobLayoutParts = 5

func (o *migrateOptions) fromBlobStore(ctx context.Context, a *app, file string, cc *container.Client, store *checkpoints.BlobStore, containerName string) error {
	// The BlobStore lists one consumer group at a time; the groups come
	// from the blob names, spelled as they are in the container.
	groupNames, modified, ignored, err := listBlobGroups(ctx, cc, containerName, o.scope)
	if err != nil {
		return err
	}
	if ignored > 0 {
		fmt.Fprintf(a.stderr, "ehcheckpoints: ignored %d blob(s) in container %s that are not in the checkpoint layout\n", ignored, containerName)
	}
	if len(groupNames) == 0 {
		return fmt.Errorf("no checkpoints or ownerships in container %s match", containerName)
	}

	records, err := readBlobGroups(ctx, store, groupNames, modified, a.now())
	if err != nil {
		return err
	}
	if err := o.edit.checkNotOwned(allTargets(groupRecords(records)), a.now(), processorsRunning); err != nil {
		return err
	}
	if !o.ownership {
		records = slices.DeleteFunc(records, func(r boltstore.Record) bool { return r.Type == boltstore.RecordOwnership })
	}
	groups := groupRecords(records)
	if len(records) == 0 {
		return fmt.Errorf("no checkpoints in container %s match; give --ownership to copy ownerships", containerName)
	}

	s, existing, err := a.openDestination(ctx, file, o.edit.dryRun)
	if err != nil {
		return err
	}
	if s != nil {
		defer s.Close()
	}
	targets := writtenTargets(groupRecords(existing), records)
	if err := o.edit.checkNotOwned(targets, a.now(), ownersOverwrite); err != nil {
		return err
	}
	verb := "copied"
	if o.edit.dryRun {
		verb = "would copy"
	} else if err := s.PutRecords(ctx, records, o.edit.unchanged(targets)...); err != nil {
		return err
	}
	return o.report(a.stdout, verb, groups, func(*group) string { return "from container " + containerName })
}

// listBlobGroups lists the groups in scope that a container holds
// checkpoints or ownerships of, spelled as their blob names spell them,
// with each blob's last modification by name, and counts the blobs that
// are not in the checkpoint layout.
func listBlobGroups(ctx context.Context, cc *container.Client, containerName string, scope boltstore.Scope) (groupNames []boltstore.Scope, modified map[string]time.Time, ignored int, err error) {
	modified = map[string]time.Time{}
	wanted := foldScope(scope)
	pager := cc.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("listing container %s: %w", containerName, err)
		}
		for _, item := range page.Segment.BlobItems {
			parts := strings.Split(*item.Name, "/")
			if len(parts) != blobLayoutParts || (parts[3] != "checkpoint" && parts[3] != "ownership") || slices.Contains(parts, "") {
				ignored++
				continue
			}
			names := boltstore.Scope{Namespace: parts[0], EventHub: parts[1], ConsumerGroup: parts[2]}
			folded := foldScope(names)
			if (wanted.Namespace != "" && wanted.Namespace != folded.Namespace) ||
				(wanted.EventHub != "" && wanted.EventHub != folded.EventHub) ||
				(wanted.ConsumerGroup != "" && wanted.ConsumerGroup != folded.ConsumerGroup) {
				continue
			}
			if !slices.Contains(groupNames, names) {
				groupNames = append(groupNames, names)
			}
			if item.Properties != nil && item.Properties.LastModified != nil {
				modified[*item.Name] = item.Properties.LastModified.UTC()
			}
		}
	}
	return groupNames, modified, ignored, nil
}

// readBlobGroups reads the checkpoints and ownerships of the groups through
// the BlobStore, as records with folded names. A checkpoint's WrittenAt is
// its blob's last modification (modified, by blob name), or now if the
// listing missed it. Two spellings of one group that both hold a partition
// are an error: the store could keep only one of them.
func readBlobGroups(ctx context.Context, store *checkpoints.BlobStore, groupNames []boltstore.Scope, modified map[string]time.Time, now time.Time) ([]boltstore.Record, error) {
	var records []boltstore.Record
	seen := map[string]string{} // folded record key -> blob name
	add := func(r boltstore.Record, blobName string) error {
		key := strings.Join([]string{string(r.Type), r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID}, "\x00")
		if other, dup := seen[key]; dup {
			return fmt.Errorf("blobs %s and %s are the same %s in different spellings; delete one of them", other, blobName, r.Type)
		}
		seen[key] = blobName
		records = append(records, r)
		return nil
	}
	for _, names := range groupNames {
		folded := foldScope(names)
		prefix := blobPrefix(names)
		cps, err := store.ListCheckpoints(ctx, names.Namespace, names.EventHub, names.ConsumerGroup, nil)
		if err != nil {
			return nil, fmt.Errorf("listing the checkpoints of %s: %w", prefix, err)
		}
		for _, cp := range cps {
			name := prefix + "checkpoint/" + cp.PartitionID
			written, ok := modified[name]
			if !ok {
				written = now.UTC()
			}
			r := boltstore.Record{Type: boltstore.RecordCheckpoint, Namespace: folded.Namespace, EventHub: folded.EventHub, ConsumerGroup: folded.ConsumerGroup,
				PartitionID: cp.PartitionID, Offset: cp.Offset, SequenceNumber: cp.SequenceNumber, WrittenAt: written}
			if err := add(r, name); err != nil {
				return nil, err
			}
		}
		owns, err := store.ListOwnership(ctx, names.Namespace, names.EventHub, names.ConsumerGroup, nil)
		if err != nil {
			return nil, fmt.Errorf("listing the ownerships of %s: %w", prefix, err)
		}
		for _, o := range owns {
			if o.ETag == nil {
				return nil, errors.New("the container listed an ownership without an etag: " + prefix + "ownership/" + o.PartitionID)
			}
			r := boltstore.Record{Type: boltstore.RecordOwnership, Namespace: folded.Namespace, EventHub: folded.EventHub, ConsumerGroup: folded.ConsumerGroup,
				PartitionID: o.PartitionID, OwnerID: o.OwnerID, ETag: string(*o.ETag), LastModifiedTime: o.LastModifiedTime.UTC()}
			if err := add(r, prefix+"ownership/"+o.PartitionID); err != nil {
				return nil, err
			}
		}
	}
	return records, nil
}
