package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2/checkpoints"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/ehcheckpoints/boltstore/internal/azurite"
)

// completeRecords is JSON Lines for two namespaces with two consumer groups
// each: every checkpoint has an offset and a sequence number (one offset is
// empty), and every ownership expired long ago (one is released).
func completeRecords() string {
	var b strings.Builder
	for _, ns := range []string{"alpha.servicebus.windows.net", "beta.servicebus.windows.net"} {
		for _, group := range []string{"$default", "billing"} {
			for p := range 4 {
				owner := fmt.Sprintf("host-%d", p%2)
				if p == 3 {
					owner = ""
				}
				fmt.Fprintf(&b, `{"type":"ownership","namespace":%q,"eventHub":"orders","consumerGroup":%q,"partitionId":"%d","ownerId":%q,"etag":"e%d","lastModifiedTime":"2025-01-01T00:00:00Z"}`+"\n", ns, group, p, owner, p)
				offset := fmt.Sprint(p * 4096)
				if p == 2 {
					offset = ""
				}
				fmt.Fprintf(&b, `{"type":"checkpoint","namespace":%q,"eventHub":"orders","consumerGroup":%q,"partitionId":"%d","offset":%q,"sequenceNumber":%d,"writtenAt":"2025-01-01T00:00:00Z"}`+"\n", ns, group, p, offset, p*10)
			}
		}
	}
	return b.String()
}

// TestMigrateRoundTrip copies a store file to Blob Storage (Azurite) and
// back into a new file, and checks that every checkpoint, and with
// --ownership every owner, arrives; and that the blobs are in the layout
// of the SDK's BlobStore.
func TestMigrateRoundTrip(t *testing.T) {
	az := azurite.ForTest(t)
	env := []string{envConnectionString + "=" + az.ConnectionString()}
	dir := t.TempDir()
	source := filepath.Join(dir, "source.db")
	mustRun(t, completeRecords(), "import", source)

	migrate := func(t *testing.T, code int, args ...string) result {
		t.Helper()
		r := ehc(t, "", env, append([]string{"migrate"}, args...)...)
		if r.code != code {
			t.Fatalf("migrate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
		}
		return r
	}

	r := migrate(t, 1, sampleStore(t), "--to-blob", "--container", "incomplete")
	if !strings.Contains(r.stderr, "partition 2: sequence 0, offset none") || !strings.Contains(r.stderr, "partition 3: sequence none") {
		t.Errorf("migrate of checkpoints the BlobStore cannot read: %s", r.stderr)
	}

	// "a/b" + "g" and "a" + "b/g" would both be blobs ns/a/b/g/...
	slashed := filepath.Join(dir, "slashed.db")
	mustRun(t, `{"type":"checkpoint","namespace":"ns","eventHub":"a/b","consumerGroup":"g","partitionId":"0","offset":"10","sequenceNumber":1}
{"type":"checkpoint","namespace":"ns","eventHub":"a","consumerGroup":"b/g","partitionId":"0","offset":"20","sequenceNumber":2}
`, "import", slashed)
	r = migrate(t, 1, slashed, "--to-blob", "--container", "slashed")
	if !strings.Contains(r.stderr, `event hub "a/b", consumer group "g"`) || !strings.Contains(r.stderr, `event hub "a", consumer group "b/g"`) {
		t.Errorf("migrate of names with a slash: %s", r.stderr)
	}

	r = migrate(t, 0, source, "--to-blob", "--container", "checkpoints", "--ownership", "--dry-run")
	if !strings.Contains(r.stdout, "would copy 4 checkpoint(s) and 4 ownership(s) of alpha.servicebus.windows.net/orders/$default to container checkpoints as alpha.servicebus.windows.net/orders/$Default/\n") {
		t.Errorf("dry run: %s", r.stdout)
	}
	cc, err := container.NewClientFromConnectionString(az.ConnectionString(), "checkpoints", nil)
	if err != nil {
		t.Fatal(err)
	}
	if names := blobNames(t, cc); len(names) != 0 {
		t.Fatalf("the dry run wrote %v", names)
	}

	migrate(t, 0, source, "--to-blob", "--container", "checkpoints", "--ownership")
	// Again, now over the blobs' etags.
	migrate(t, 0, source, "--to-blob", "--container", "checkpoints", "--ownership")
	// The default group is spelled as Go processors spell it.
	var want []string
	for _, row := range exportRows(t, source) {
		group := strings.ReplaceAll(row.ConsumerGroup, "$default", azeventhubs.DefaultConsumerGroup)
		want = append(want, strings.Join([]string{row.Namespace, row.EventHub, group, string(row.Type), row.PartitionID}, "/"))
	}
	slices.Sort(want)
	if got := blobNames(t, cc); !slices.Equal(got, want) {
		t.Errorf("blobs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A Go processor, through the official store, finds them.
	blobStore, err := checkpoints.NewBlobStore(cc, nil)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := blobStore.ListCheckpoints(t.Context(), "alpha.servicebus.windows.net", "orders", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil || len(cps) != 4 {
		t.Errorf("the BlobStore lists %d checkpoints of the default group (%v), want 4", len(cps), err)
	}

	// The copied ownerships are fresh on the Blob side, so they count as
	// live owners that are still running.
	back := filepath.Join(dir, "back.db")
	r = migrate(t, 1, back, "--from-blob", "--container", "checkpoints")
	if !strings.Contains(r.stderr, "refusing: 12 partition(s)") {
		t.Errorf("from-blob with live owners: %s", r.stderr)
	}
	dry := filepath.Join(dir, "dry.db")
	if r = migrate(t, 0, dry, "--from-blob", "--container", "checkpoints", "--ownership", "--force", "--dry-run"); !strings.Contains(r.stdout, "would copy") {
		t.Errorf("from-blob dry run: %s", r.stdout)
	}
	if _, err := os.Stat(dry); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the from-blob dry run created the file: %v", err)
	}
	migrate(t, 0, back, "--from-blob", "--container", "checkpoints", "--ownership", "--force")
	if got, want := positions(t, back), positions(t, source); !slices.Equal(got, want) {
		t.Errorf("after file -> Blob -> file:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A SAS URL instead of a connection string; checkpoints only.
	sasURL, err := cc.GetSASURL(sas.ContainerPermissions{Read: true, List: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	viaSAS := filepath.Join(dir, "sas.db")
	r = ehc(t, "", nil, "migrate", viaSAS, "--from-blob", "--container-url", sasURL, "--force")
	if r.code != 0 {
		t.Fatalf("migrate --container-url: exit %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "sig=") {
		t.Errorf("migrate printed the SAS token:\n%s%s", r.stdout, r.stderr)
	}
	var checkpointsOnly []string
	for _, p := range positions(t, source) {
		if strings.Contains(p, "/checkpoint/") {
			checkpointsOnly = append(checkpointsOnly, p)
		}
	}
	if got := positions(t, viaSAS); !slices.Equal(got, checkpointsOnly) {
		t.Errorf("from a SAS URL:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(checkpointsOnly, "\n"))
	}

	// The scope flags spell the blob names, for the case-sensitive Go SDK.
	r = migrate(t, 0, source, "--to-blob", "--container", "spelled", "-n", "alpha.servicebus.windows.net", "--hub", "Orders", "--group", "Billing")
	if !strings.Contains(r.stdout, "to container spelled as alpha.servicebus.windows.net/Orders/Billing/\n") {
		t.Errorf("migrate --hub Orders --group Billing: %s", r.stdout)
	}
	ccSpelled, err := container.NewClientFromConnectionString(az.ConnectionString(), "spelled", nil)
	if err != nil {
		t.Fatal(err)
	}
	spelled := blobNames(t, ccSpelled)
	if len(spelled) != 4 || !strings.HasPrefix(spelled[0], "alpha.servicebus.windows.net/Orders/Billing/checkpoint/") {
		t.Errorf("blobs for --hub Orders --group Billing: %v", spelled)
	}
	// Another spelling of the same group would leave processors two
	// disagreeing copies: refused, even as a dry run, and nothing written.
	for _, dry := range []string{"--dry-run", "--force"} {
		r = migrate(t, 1, source, "--to-blob", "--container", "spelled", "-n", "alpha.servicebus.windows.net", "--hub", "orders", "--group", "billing", dry)
		if !strings.Contains(r.stderr, "would write alpha.servicebus.windows.net/orders/billing/, the container holds alpha.servicebus.windows.net/Orders/Billing/") {
			t.Errorf("migrate in another spelling (%s): %s", dry, r.stderr)
		}
	}
	if got := blobNames(t, ccSpelled); !slices.Equal(got, spelled) {
		t.Errorf("after the refused migrations the container holds %v, want %v", got, spelled)
	}
}

// blobNames lists the names of the blobs in a container, sorted.
func blobNames(t *testing.T, cc *container.Client) []string {
	t.Helper()
	var names []string
	pager := cc.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(t.Context())
		if err != nil {
			if strings.Contains(err.Error(), "ContainerNotFound") {
				return nil
			}
			t.Fatal(err)
		}
		for _, item := range page.Segment.BlobItems {
			names = append(names, *item.Name)
		}
	}
	slices.Sort(names)
	return names
}

// exportRows exports a store file and parses its rows.
func exportRows(t *testing.T, path string) []recordJSON {
	t.Helper()
	var rows []recordJSON
	for _, line := range rowSet(mustRun(t, "", "export", path).stdout) {
		var row recordJSON
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	return rows
}

// positions describes what a migration must keep of each record, sorted:
// a checkpoint's offset and sequence number, an ownership's owner. Etags
// and times belong to each store.
func positions(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, row := range exportRows(t, path) {
		what := fmt.Sprintf("owner=%q", deref(row.OwnerID))
		if row.Type == "checkpoint" {
			what = fmt.Sprintf("offset=%q sequence=%d", deref(row.Offset), *row.SequenceNumber)
		}
		out = append(out, strings.Join([]string{row.Namespace, row.EventHub, row.ConsumerGroup, string(row.Type), row.PartitionID}, "/")+" "+what)
	}
	slices.Sort(out)
	return out
}

func deref(s *string) string {
	if s == nil {
		return "<absent>"
	}
	return *s
}

// TestMigrateRedactsSAS checks that a failure to reach the container does
// not print the SAS token's signature, which the HTTP client's errors quote.
func TestMigrateRedactsSAS(t *testing.T) {
	t.Parallel() // the SDK retries for several seconds
	const secret = "c2VjcmV0LXNpZ25hdHVyZQ"
	r := ehc(t, "", nil, "migrate", filepath.Join(t.TempDir(), "x.db"), "--from-blob",
		"--container-url", "http://127.0.0.1:1/devstoreaccount1/checkpoints?sv=2023-11-03&sig="+secret)
	if r.code != 1 || !strings.Contains(r.stderr, "sig=REDACTED") || strings.Contains(r.stderr, secret) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and the signature redacted", r.code, r.stderr)
	}
}

// TestValidContainerName checks the local check of --container against
// Azure's rules, its special container $web included ($root cannot hold
// blob names with a slash; migrate refuses it with its own message).
func TestValidContainerName(t *testing.T) {
	for name, want := range map[string]bool{
		"checkpoints": true, "ck-2": true, "abc": true, "$web": true, "$root": false,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
		"c1": false, "Checkpoints": false, "check--points": false, "-ck": false, "ck-": false,
		"$logs": false, "ck_points": false, "": false,
	} {
		if got := validContainerName(name); got != want {
			t.Errorf("validContainerName(%q) = %v, want %v", name, got, want)
		}
	}
}
