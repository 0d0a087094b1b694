package azurite_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2/checkpoints"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/ehcheckpoints/boltstore/internal/azurite"
)

// TestBlobStoreRoundTrip proves that the official checkpoints.BlobStore works
// against the pinned Azurite: ownership can be claimed and listed, and a
// checkpoint can be set and listed back.
func TestBlobStoreRoundTrip(t *testing.T) {
	srv := azurite.ForTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	cc, err := container.NewClientFromConnectionString(srv.ConnectionString(), "checkpoints", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Create(ctx, nil); err != nil {
		t.Fatalf("creating container: %v\nazurite output:\n%s", err, srv.Output())
	}
	store, err := checkpoints.NewBlobStore(cc, nil)
	if err != nil {
		t.Fatal(err)
	}

	const (
		ns = "example.servicebus.windows.net"
		eh = "hub"
		cg = azeventhubs.DefaultConsumerGroup
	)

	// ClaimOwnership of a partition nobody owns yet (no ETag) succeeds.
	claimed, err := store.ClaimOwnership(ctx, []azeventhubs.Ownership{{
		ConsumerGroup: cg, EventHubName: eh, FullyQualifiedNamespace: ns,
		PartitionID: "0", OwnerID: "owner-a",
	}}, nil)
	if err != nil {
		t.Fatalf("ClaimOwnership: %v", err)
	}
	if len(claimed) != 1 || claimed[0].OwnerID != "owner-a" || claimed[0].PartitionID != "0" ||
		claimed[0].ETag == nil || claimed[0].LastModifiedTime.IsZero() {
		t.Fatalf("ClaimOwnership returned %+v", claimed)
	}

	owns, err := store.ListOwnership(ctx, ns, eh, cg, nil)
	if err != nil {
		t.Fatalf("ListOwnership: %v", err)
	}
	if len(owns) != 1 || owns[0].OwnerID != "owner-a" || owns[0].PartitionID != "0" ||
		owns[0].ConsumerGroup != cg || owns[0].EventHubName != eh || owns[0].FullyQualifiedNamespace != ns ||
		owns[0].ETag == nil || !sameETag(owns[0].ETag, claimed[0].ETag) {
		t.Fatalf("ListOwnership returned %+v (etag %q), want the claimed %+v (etag %q)", owns, deref(owns[0].ETag), claimed, deref(claimed[0].ETag))
	}

	// A claim with a stale ETag loses: the store reports no ownership.
	stale := owns[0]
	stale.OwnerID = "owner-b"
	taken, err := store.ClaimOwnership(ctx, []azeventhubs.Ownership{stale}, nil)
	if err != nil {
		t.Fatalf("ClaimOwnership (take over): %v", err)
	}
	if len(taken) != 1 || taken[0].OwnerID != "owner-b" || taken[0].ETag == nil || sameETag(taken[0].ETag, stale.ETag) {
		t.Fatalf("ClaimOwnership (take over) returned %+v", taken)
	}
	lost, err := store.ClaimOwnership(ctx, []azeventhubs.Ownership{stale}, nil) // same, now stale, ETag
	if err != nil {
		t.Fatalf("ClaimOwnership (stale): %v", err)
	}
	if len(lost) != 0 {
		t.Fatalf("ClaimOwnership with a stale ETag returned %+v, want none", lost)
	}
	owns, err = store.ListOwnership(ctx, ns, eh, cg, nil)
	if err != nil {
		t.Fatalf("ListOwnership: %v", err)
	}
	if len(owns) != 1 || owns[0].OwnerID != "owner-b" || !sameETag(owns[0].ETag, taken[0].ETag) {
		t.Fatalf("ListOwnership after take-over returned %+v, want %+v", owns, taken)
	}

	if err := store.SetCheckpoint(ctx, azeventhubs.Checkpoint{
		ConsumerGroup: cg, EventHubName: eh, FullyQualifiedNamespace: ns,
		PartitionID: "0", Offset: to.Ptr("4294967296"), SequenceNumber: to.Ptr[int64](101),
	}, nil); err != nil {
		t.Fatalf("SetCheckpoint: %v", err)
	}
	cps, err := store.ListCheckpoints(ctx, ns, eh, cg, nil)
	if err != nil {
		t.Fatalf("ListCheckpoints: %v", err)
	}
	if len(cps) != 1 {
		t.Fatalf("ListCheckpoints returned %d checkpoints, want 1: %+v", len(cps), cps)
	}
	cp := cps[0]
	if cp.PartitionID != "0" || cp.ConsumerGroup != cg || cp.EventHubName != eh || cp.FullyQualifiedNamespace != ns ||
		cp.Offset == nil || *cp.Offset != "4294967296" || cp.SequenceNumber == nil || *cp.SequenceNumber != 101 {
		t.Fatalf("ListCheckpoints returned %+v (offset %v, seq %v)", cp, deref(cp.Offset), deref(cp.SequenceNumber))
	}
}

// sameETag reports whether two ETags name the same blob version. The store
// passes ETags through as the service sends them, and the service quotes them
// in response headers (ClaimOwnership) but not in List Blobs bodies
// (ListOwnership): "\"0x8D...\"" versus "0x8D...". Azurite accepts either
// form in If-Match, as the take-over claim below shows.
func sameETag(a, b *azcore.ETag) bool {
	if a == nil || b == nil {
		return a == b
	}
	return strings.Trim(string(*a), `"`) == strings.Trim(string(*b), `"`)
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestStartNotInstalled checks that a missing executable is reported as
// ErrNotInstalled, naming what was looked for.
func TestStartNotInstalled(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-azurite-blob")
	t.Setenv(azurite.EnvBinary, missing)
	s, err := azurite.Start(t.Context())
	if err == nil {
		s.Close()
		t.Fatal("Start succeeded with a missing executable")
	}
	if !errors.Is(err, azurite.ErrNotInstalled) {
		t.Fatalf("Start error = %v, want one wrapping ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("Start error %q does not name %q", err, missing)
	}
}

// TestCloseStopsServer checks that Close stops the process: the port stops
// accepting connections, and a second Close is harmless.
func TestCloseStopsServer(t *testing.T) {
	s := azurite.ForTest(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())))
	if err == nil {
		c.Close()
		t.Fatalf("port %d still accepts connections after Close", s.Port())
	}
}

// TestAccessLog shows the option does what the benchmarks rely on: with
// it, Azurite logs each request; without it, it does not.
func TestAccessLog(t *testing.T) {
	if _, err := azurite.Binary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	for _, logged := range []bool{false, true} {
		s, err := azurite.StartWith(t.Context(), azurite.Options{AccessLog: logged})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(s.BlobEndpoint() + "/probe-container?restype=container")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s.Close()
		if got := strings.Contains(s.Output(), "probe-container"); got != logged {
			t.Errorf("AccessLog=%v: request in output = %v; output:\n%s", logged, got, s.Output())
		}
	}
}
