package boltstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/google/uuid"
)

// storeModes are the ways a boltstore can be used. The conformance suite
// runs against each, and against the in-memory reference.
var storeModes = map[string]func(t *testing.T) azeventhubs.CheckpointStore{
	"reference": func(*testing.T) azeventhubs.CheckpointStore { return newReferenceStore() },
	"default": func(t *testing.T) azeventhubs.CheckpointStore {
		return openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	},
	"nosync": func(t *testing.T) azeventhubs.CheckpointStore {
		return openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), &Options{NoSync: true})
	},
	// Two handles on one file, used alternately, hand the file back and
	// forth as two processes would.
	"shared": func(t *testing.T) azeventhubs.CheckpointStore {
		path := filepath.Join(t.TempDir(), "cp.db")
		return &alternatingStore{stores: []*Store{openTestStore(t, path, nil), openTestStore(t, path, nil)}}
	},
	// A store that other writers keep busy, so that every write of the
	// suite shares its commit with theirs (busyWriters).
	"busy": func(t *testing.T) azeventhubs.CheckpointStore {
		s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
		startBusyWriters(t, s)
		return s
	},
}

// startBusyWriters keeps writers committing to another namespace of s until
// the test ends, each checking that the batches it shares with the test's
// writes (and with one another) leave its results its own:
//
//   - a checkpoint is stored as written;
//   - a renewal with the etag of its own last claim always wins, and comes
//     back with its own partition and owner;
//   - an invalid checkpoint fails with ErrInvalidArgument, and a write whose
//     context has ended fails without being stored, failing nobody else.
func startBusyWriters(t *testing.T, s *Store) {
	const writers = 8
	const ns = "busy.servicebus.windows.net"
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			partition, owner := strconv.Itoa(w), fmt.Sprint("busy-", w)
			mine := azeventhubs.Ownership{FullyQualifiedNamespace: ns, EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: partition, OwnerID: owner}
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			for seq := int64(0); ctx.Err() == nil; seq++ {
				won, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{mine}, nil)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					t.Errorf("busy writer %d: renewal: %v", w, err)
					return
				case len(won) != 1 || won[0].PartitionID != partition || won[0].OwnerID != owner || won[0].ETag == nil || equalPtr(won[0].ETag, mine.ETag):
					t.Errorf("busy writer %d: renewal with its own etag returned %+v, want its partition won with a fresh etag", w, won)
					return
				}
				mine = won[0]
				cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: ns, EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: partition, SequenceNumber: &seq}
				if err := s.SetCheckpoint(ctx, cp, nil); err != nil {
					if ctx.Err() == nil {
						t.Errorf("busy writer %d: SetCheckpoint: %v", w, err)
					}
					return
				}
				bad := cp
				bad.PartitionID = ""
				if err := s.SetCheckpoint(ctx, bad, nil); !errors.Is(err, ErrInvalidArgument) {
					t.Errorf("busy writer %d: checkpoint without a partition: %v, want ErrInvalidArgument", w, err)
				}
				never := cp
				never.PartitionID = "never-" + partition
				if err := s.SetCheckpoint(cancelled, never, nil); !errors.Is(err, context.Canceled) {
					t.Errorf("busy writer %d: checkpoint with an ended context: %v, want context.Canceled", w, err)
				}
			}
		})
	}
	t.Cleanup(func() {
		stop()
		wg.Wait()
		// Each writer's last checkpoint is there; the cancelled ones are not.
		cps, err := s.ListCheckpoints(context.Background(), ns, testHub, testGroup, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) > writers {
			t.Errorf("busy writers: %d checkpoints stored, want at most %d (one per writer, none of the cancelled)", len(cps), writers)
		}
		for _, cp := range cps {
			if strings.HasPrefix(cp.PartitionID, "never-") {
				t.Errorf("busy writers: a checkpoint whose context had ended was stored: %+v", cp)
			}
		}
	})
}

func openTestStore(t testing.TB, path string, opts *Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// alternatingStore sends each call to the next of several Stores on the
// same file.
type alternatingStore struct {
	stores []*Store
	next   atomic.Int64
}

func (a *alternatingStore) pick() *Store {
	return a.stores[int(a.next.Add(1))%len(a.stores)]
}

func (a *alternatingStore) ClaimOwnership(ctx context.Context, o []azeventhubs.Ownership, opts *azeventhubs.ClaimOwnershipOptions) ([]azeventhubs.Ownership, error) {
	return a.pick().ClaimOwnership(ctx, o, opts)
}

func (a *alternatingStore) SetCheckpoint(ctx context.Context, cp azeventhubs.Checkpoint, opts *azeventhubs.SetCheckpointOptions) error {
	return a.pick().SetCheckpoint(ctx, cp, opts)
}

func (a *alternatingStore) ListOwnership(ctx context.Context, ns, hub, group string, opts *azeventhubs.ListOwnershipOptions) ([]azeventhubs.Ownership, error) {
	return a.pick().ListOwnership(ctx, ns, hub, group, opts)
}

func (a *alternatingStore) ListCheckpoints(ctx context.Context, ns, hub, group string, opts *azeventhubs.ListCheckpointsOptions) ([]azeventhubs.Checkpoint, error) {
	return a.pick().ListCheckpoints(ctx, ns, hub, group, opts)
}

func TestConformance(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(storeModes)) {
		t.Run(name, func(t *testing.T) { testConformance(t, storeModes[name]) })
	}
}

const (
	testNS    = "ns.servicebus.windows.net"
	testHub   = "hub"
	testGroup = "$Default"
)

func ownership(partition, owner string, etag *azcore.ETag) azeventhubs.Ownership {
	return azeventhubs.Ownership{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: partition, OwnerID: owner, ETag: etag}
}

func checkpoint(partition string, offset *string, seq *int64) azeventhubs.Checkpoint {
	return azeventhubs.Checkpoint{FullyQualifiedNamespace: testNS, EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: partition, Offset: offset, SequenceNumber: seq}
}

func ptr[T any](v T) *T { return &v }

func claimOne(t *testing.T, s azeventhubs.CheckpointStore, o azeventhubs.Ownership) (azeventhubs.Ownership, bool) {
	t.Helper()
	got, err := s.ClaimOwnership(context.Background(), []azeventhubs.Ownership{o}, nil)
	if err != nil {
		t.Fatalf("ClaimOwnership(%s): %v", o.PartitionID, err)
	}
	switch len(got) {
	case 0:
		return azeventhubs.Ownership{}, false
	case 1:
		return got[0], true
	}
	t.Fatalf("one claim returned %d ownerships", len(got))
	return azeventhubs.Ownership{}, false
}

func listOwnership(t *testing.T, s azeventhubs.CheckpointStore, ns, hub, group string) []azeventhubs.Ownership {
	t.Helper()
	list, err := s.ListOwnership(context.Background(), ns, hub, group, nil)
	if err != nil {
		t.Fatalf("ListOwnership: %v", err)
	}
	return list
}

func listCheckpoints(t *testing.T, s azeventhubs.CheckpointStore, ns, hub, group string) []azeventhubs.Checkpoint {
	t.Helper()
	list, err := s.ListCheckpoints(context.Background(), ns, hub, group, nil)
	if err != nil {
		t.Fatalf("ListCheckpoints: %v", err)
	}
	return list
}

// testConformance checks every rule of the checkpoint-store contract
// (shared contract.md) against the store newStore makes.
func testConformance(t *testing.T, newStore func(t *testing.T) azeventhubs.CheckpointStore) {
	ctx := context.Background()

	t.Run("CreateOnlyClaim", func(t *testing.T) {
		s := newStore(t)
		first, ok := claimOne(t, s, ownership("0", "a", nil))
		if !ok || first.OwnerID != "a" {
			t.Fatalf("first create-only claim: won=%v %+v", ok, first)
		}
		if _, ok := claimOne(t, s, ownership("0", "b", nil)); ok {
			t.Fatal("a create-only claim (nil etag) won over an existing record")
		}
		if _, ok := claimOne(t, s, ownership("0", "b", ptr(azcore.ETag("")))); ok {
			t.Fatal("a create-only claim (empty etag) won over an existing record")
		}
		if _, ok := claimOne(t, s, ownership("1", "b", ptr(azcore.ETag("")))); !ok {
			t.Fatal("an empty etag on a new partition must claim it")
		}
	})

	t.Run("ETagClaim", func(t *testing.T) {
		s := newStore(t)
		first, _ := claimOne(t, s, ownership("0", "a", nil))
		second, ok := claimOne(t, s, ownership("0", "b", first.ETag))
		if !ok || second.OwnerID != "b" {
			t.Fatal("a claim with the current etag must win")
		}
		if _, ok := claimOne(t, s, ownership("0", "c", first.ETag)); ok {
			t.Fatal("a claim with a stale etag won")
		}
		if _, ok := claimOne(t, s, ownership("1", "c", ptr(azcore.ETag(uuid.NewString())))); ok {
			t.Fatal("a claim with an etag on a partition without a record won")
		}
		list := listOwnership(t, s, testNS, testHub, testGroup)
		if len(list) != 1 || list[0].OwnerID != "b" {
			t.Fatalf("after the claims, list = %+v, want owner b only", list)
		}
	})

	t.Run("LosersOmittedWithoutError", func(t *testing.T) {
		s := newStore(t)
		a, _ := claimOne(t, s, ownership("0", "a", nil))
		got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{
			ownership("0", "b", ptr(azcore.ETag("stale"))),
			ownership("1", "b", nil),
			ownership("0", "b", nil),
			ownership("2", "b", a.ETag),
			// Etags no store ever gave out lose like stale ones.
			ownership("0", "b", ptr(azcore.ETag(strings.Repeat("x", 4096)))),
			ownership("0", "b", ptr(azcore.ETag("\x00\xff\n"))),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].PartitionID != "1" {
			t.Fatalf("got %+v, want only partition 1", got)
		}
	})

	t.Run("EmptyClaimList", func(t *testing.T) {
		s := newStore(t)
		for _, in := range [][]azeventhubs.Ownership{nil, {}} {
			got, err := s.ClaimOwnership(ctx, in, nil)
			if err != nil || len(got) != 0 {
				t.Fatalf("ClaimOwnership(%v) = %v, %v; want empty, nil", in, got, err)
			}
		}
	})

	t.Run("Relinquish", func(t *testing.T) {
		s := newStore(t)
		a, _ := claimOne(t, s, ownership("0", "a", nil))
		released, ok := claimOne(t, s, ownership("0", "", a.ETag))
		if !ok || released.OwnerID != "" {
			t.Fatalf("relinquish: won=%v %+v", ok, released)
		}
		list := listOwnership(t, s, testNS, testHub, testGroup)
		if len(list) != 1 || list[0].OwnerID != "" || *list[0].ETag != *released.ETag {
			t.Fatalf("after relinquish, list = %+v", list)
		}
		if _, ok := claimOne(t, s, ownership("0", "b", nil)); ok {
			t.Fatal("a relinquished record still exists; a create-only claim must not win it")
		}
		if _, ok := claimOne(t, s, ownership("0", "b", list[0].ETag)); !ok {
			t.Fatal("a relinquished partition must be claimable with its listed etag")
		}
	})

	t.Run("FreshUUIDETags", func(t *testing.T) {
		s := newStore(t)
		seen := map[azcore.ETag]bool{}
		o, _ := claimOne(t, s, ownership("0", "a", nil))
		for i := range 20 {
			if _, err := uuid.Parse(string(*o.ETag)); err != nil {
				t.Fatalf("etag %q is not a uuid: %v", *o.ETag, err)
			}
			if seen[*o.ETag] {
				t.Fatalf("etag %q repeated", *o.ETag)
			}
			seen[*o.ETag] = true
			var ok bool
			if o, ok = claimOne(t, s, ownership("0", fmt.Sprint("owner", i), o.ETag)); !ok {
				t.Fatal("renewal with the current etag lost")
			}
		}
	})

	t.Run("LastModifiedTimeFromStoreClock", func(t *testing.T) {
		s := newStore(t)
		in := ownership("0", "a", nil)
		in.LastModifiedTime = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		before := time.Now()
		first, _ := claimOne(t, s, in)
		if first.LastModifiedTime.Before(before.Add(-time.Second)) || first.LastModifiedTime.After(time.Now().Add(time.Second)) {
			t.Fatalf("LastModifiedTime %v is not the store's clock (caller sent %v)", first.LastModifiedTime, in.LastModifiedTime)
		}
		time.Sleep(2 * time.Millisecond)
		renewed, _ := claimOne(t, s, ownership("0", "a", first.ETag))
		if !renewed.LastModifiedTime.After(first.LastModifiedTime) {
			t.Fatalf("renewal did not move LastModifiedTime forward: %v then %v", first.LastModifiedTime, renewed.LastModifiedTime)
		}
	})

	t.Run("ListedOwnershipEqualsClaimResult", func(t *testing.T) {
		s := newStore(t)
		var want []azeventhubs.Ownership
		for _, p := range []string{"0", "1", "2"} {
			o, _ := claimOne(t, s, ownership(p, "owner-"+p, nil))
			want = append(want, o)
		}
		got := listOwnership(t, s, testNS, testHub, testGroup)
		if len(got) != len(want) {
			t.Fatalf("listed %d ownerships, want %d", len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.PartitionID != w.PartitionID || g.OwnerID != w.OwnerID || *g.ETag != *w.ETag || !g.LastModifiedTime.Equal(w.LastModifiedTime) || g.LastModifiedTime != w.LastModifiedTime {
				t.Errorf("listed %+v (etag %s), claim returned %+v (etag %s)", g, *g.ETag, w, *w.ETag)
			}
		}
	})

	t.Run("CheckpointRoundTrip", func(t *testing.T) {
		s := newStore(t)
		cases := []azeventhubs.Checkpoint{
			checkpoint("0", ptr("0"), ptr(int64(0))),
			checkpoint("1", ptr(""), nil),
			checkpoint("2", nil, ptr(int64(0))),
			checkpoint("3", ptr("8589934592"), ptr(int64(1<<62))),
			checkpoint("4", nil, ptr(int64(17))),
		}
		for _, cp := range cases {
			if err := s.SetCheckpoint(ctx, cp, nil); err != nil {
				t.Fatal(err)
			}
		}
		got := listCheckpoints(t, s, testNS, testHub, testGroup)
		if len(got) != len(cases) {
			t.Fatalf("listed %d checkpoints, want %d", len(got), len(cases))
		}
		for i, want := range cases {
			if g := got[i]; g.PartitionID != want.PartitionID || !equalPtr(g.Offset, want.Offset) || !equalPtr(g.SequenceNumber, want.SequenceNumber) {
				t.Errorf("partition %s: got offset %v seq %v, want offset %v seq %v", want.PartitionID, show(g.Offset), show(g.SequenceNumber), show(want.Offset), show(want.SequenceNumber))
			}
		}
		// A lower sequence number replaces a higher one: resets are legal.
		if err := s.SetCheckpoint(ctx, checkpoint("3", nil, ptr(int64(5))), nil); err != nil {
			t.Fatal(err)
		}
		if got := listCheckpoints(t, s, testNS, testHub, testGroup)[3]; got.Offset != nil || *got.SequenceNumber != 5 {
			t.Fatalf("after reset: offset %v seq %v, want nil and 5", show(got.Offset), show(got.SequenceNumber))
		}
	})

	t.Run("CheckpointWithoutPositionRefused", func(t *testing.T) {
		s := newStore(t)
		if err := s.SetCheckpoint(ctx, checkpoint("0", nil, nil), nil); err == nil {
			t.Fatal("a checkpoint with neither offset nor sequence number was accepted")
		}
		if got := listCheckpoints(t, s, testNS, testHub, testGroup); len(got) != 0 {
			t.Fatalf("a refused checkpoint was stored: %+v", got)
		}
	})

	t.Run("ListsReturnExactlyTheGroup", func(t *testing.T) {
		s := newStore(t)
		groups := [][3]string{{testNS, testHub, testGroup}, {testNS, testHub, "other"}, {testNS, "hub2", testGroup}, {"ns2", testHub, testGroup}, {testNS, "hu", "b$Default"}}
		for i, g := range groups {
			o := azeventhubs.Ownership{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2], PartitionID: "0", OwnerID: fmt.Sprint(i)}
			if _, ok := claimOne(t, s, o); !ok {
				t.Fatalf("claim in group %v lost", g)
			}
			cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2], PartitionID: "0", SequenceNumber: ptr(int64(i))}
			if err := s.SetCheckpoint(ctx, cp, nil); err != nil {
				t.Fatal(err)
			}
		}
		for i, g := range groups {
			owns := listOwnership(t, s, g[0], g[1], g[2])
			cps := listCheckpoints(t, s, g[0], g[1], g[2])
			if len(owns) != 1 || owns[0].OwnerID != fmt.Sprint(i) || len(cps) != 1 || *cps[0].SequenceNumber != int64(i) {
				t.Errorf("group %v: ownerships %+v checkpoints %+v", g, owns, cps)
			}
		}
		if owns, cps := listOwnership(t, s, testNS, testHub, "unknown"), listCheckpoints(t, s, testNS, testHub, "unknown"); len(owns)+len(cps) != 0 {
			t.Fatalf("an unknown group listed %d records", len(owns)+len(cps))
		}
	})

	t.Run("CaseInsensitiveNamesEchoCallerSpelling", func(t *testing.T) {
		s := newStore(t)
		a, _ := claimOne(t, s, ownership("0", "a", nil))
		if err := s.SetCheckpoint(ctx, checkpoint("0", nil, ptr(int64(3))), nil); err != nil {
			t.Fatal(err)
		}
		ns, hub, group := strings.ToUpper(testNS), "HUB", "$default"
		owns := listOwnership(t, s, ns, hub, group)
		cps := listCheckpoints(t, s, ns, hub, group)
		if len(owns) != 1 || len(cps) != 1 {
			t.Fatalf("listing with other casing found %d ownerships and %d checkpoints", len(owns), len(cps))
		}
		for _, got := range [][3]string{
			{owns[0].FullyQualifiedNamespace, owns[0].EventHubName, owns[0].ConsumerGroup},
			{cps[0].FullyQualifiedNamespace, cps[0].EventHubName, cps[0].ConsumerGroup},
		} {
			if got != [3]string{ns, hub, group} {
				t.Errorf("list answered with %v, want the caller's spelling %v", got, [3]string{ns, hub, group})
			}
		}
		other := ownership("0", "b", a.ETag)
		other.ConsumerGroup = "$DEFAULT"
		if _, ok := claimOne(t, s, other); !ok {
			t.Fatal("a claim spelled differently did not reach the same record")
		}
	})

	t.Run("PartitionOrder", func(t *testing.T) {
		s := newStore(t)
		ids := []string{"10", "2", "b", "0", "1", "a", "100", "11"}
		for _, id := range ids {
			claimOne(t, s, ownership(id, "a", nil))
			if err := s.SetCheckpoint(ctx, checkpoint(id, nil, ptr(int64(1))), nil); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"0", "1", "2", "10", "11", "100", "a", "b"}
		var gotOwn, gotCp []string
		for _, o := range listOwnership(t, s, testNS, testHub, testGroup) {
			gotOwn = append(gotOwn, o.PartitionID)
		}
		for _, cp := range listCheckpoints(t, s, testNS, testHub, testGroup) {
			gotCp = append(gotCp, cp.PartitionID)
		}
		if !slices.Equal(gotOwn, want) || !slices.Equal(gotCp, want) {
			t.Fatalf("order: ownerships %v checkpoints %v, want %v", gotOwn, gotCp, want)
		}
	})

	t.Run("MissingCoordinateWritesNothing", func(t *testing.T) {
		s := newStore(t)
		blank := []func(*[4]string){
			func(c *[4]string) { c[0] = "" }, func(c *[4]string) { c[1] = "" },
			func(c *[4]string) { c[2] = "" }, func(c *[4]string) { c[3] = "" },
		}
		for i, clear := range blank {
			c := [4]string{testNS, testHub, testGroup, "7"}
			clear(&c)
			bad := azeventhubs.Ownership{FullyQualifiedNamespace: c[0], EventHubName: c[1], ConsumerGroup: c[2], PartitionID: c[3], OwnerID: "x"}
			if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership("1", "x", nil), bad}, nil); err == nil {
				t.Errorf("claim with coordinate %d missing: no error", i)
			}
			cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: c[0], EventHubName: c[1], ConsumerGroup: c[2], PartitionID: c[3], SequenceNumber: ptr(int64(1))}
			if err := s.SetCheckpoint(ctx, cp, nil); err == nil {
				t.Errorf("checkpoint with coordinate %d missing: no error", i)
			}
			if i < 3 {
				if _, err := s.ListOwnership(ctx, c[0], c[1], c[2], nil); err == nil {
					t.Errorf("ListOwnership with coordinate %d missing: no error", i)
				}
				if _, err := s.ListCheckpoints(ctx, c[0], c[1], c[2], nil); err == nil {
					t.Errorf("ListCheckpoints with coordinate %d missing: no error", i)
				}
			}
		}
		if owns, cps := listOwnership(t, s, testNS, testHub, testGroup), listCheckpoints(t, s, testNS, testHub, testGroup); len(owns)+len(cps) != 0 {
			t.Fatalf("refused calls wrote %d ownerships and %d checkpoints", len(owns), len(cps))
		}
	})

	t.Run("OneClaimantWins", func(t *testing.T) {
		s := newStore(t)
		for round := range 10 {
			partition := strconv.Itoa(round)
			createWins := countWinners(t, 20, func(i int) []azeventhubs.Ownership {
				return []azeventhubs.Ownership{ownership(partition, fmt.Sprint("create-", i), nil)}
			}, s)
			list := listOwnership(t, s, testNS, testHub, testGroup)
			current := list[len(list)-1]
			etagWins := countWinners(t, 20, func(i int) []azeventhubs.Ownership {
				return []azeventhubs.Ownership{ownership(partition, fmt.Sprint("renew-", i), current.ETag)}
			}, s)
			if createWins != 1 || etagWins != 1 {
				t.Fatalf("round %d: %d create-only and %d same-etag claimants won, want 1 each", round, createWins, etagWins)
			}
		}
	})
}

// countWinners runs n concurrent ClaimOwnership calls and counts the
// ownerships won.
func countWinners(t *testing.T, n int, claims func(i int) []azeventhubs.Ownership, s azeventhubs.CheckpointStore) int {
	t.Helper()
	var wins atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			got, err := s.ClaimOwnership(context.Background(), claims(i), nil)
			if err != nil {
				t.Error(err)
			}
			wins.Add(int64(len(got)))
		})
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func show[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestClockIsInjectable(t *testing.T) {
	clock := time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600))
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), &Options{Now: func() time.Time { return clock }})
	got, _ := claimOne(t, s, ownership("0", "a", nil))
	if !got.LastModifiedTime.Equal(clock) || got.LastModifiedTime.Location() != time.UTC {
		t.Fatalf("LastModifiedTime = %v, want %v in UTC", got.LastModifiedTime, clock)
	}
	if err := s.SetCheckpoint(context.Background(), checkpoint("0", nil, ptr(int64(1))), nil); err != nil {
		t.Fatal(err)
	}
	records, err := s.Records(context.Background(), Scope{})
	if err != nil || len(records) != 2 || !records[1].WrittenAt.Equal(clock) {
		t.Fatalf("records %+v, %v: want the checkpoint written at %v", records, err, clock)
	}
}

func TestErrorsAreSentinelsNamingTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	ctx := context.Background()
	bad := ownership("0", "a", nil)
	bad.EventHubName = ""
	_, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{bad}, nil)
	assertError(t, err, ErrInvalidArgument, path, "EventHubName")
	err = s.SetCheckpoint(ctx, checkpoint("0", nil, nil), nil)
	assertError(t, err, ErrInvalidArgument, path, `partition "0"`)
	_, err = s.ListOwnership(ctx, testNS, testHub, "bad\x00group", nil)
	assertError(t, err, ErrInvalidArgument, path, "ConsumerGroup")
	_, err = s.ListCheckpoints(ctx, testNS, strings.Repeat("h", maxNameLen+1), testGroup, nil)
	assertError(t, err, ErrInvalidArgument, path, "EventHubName")
	_, err = s.ListCheckpoints(ctx, testNS, "\xff", testGroup, nil)
	assertError(t, err, ErrInvalidArgument, path, "UTF-8")
	// 1024 bytes as given, 1536 in the lower case the store keeps.
	err = s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: strings.Repeat("\u023a", 512), EventHubName: testHub, ConsumerGroup: testGroup, PartitionID: "0", SequenceNumber: ptr(int64(1))}, nil)
	assertError(t, err, ErrInvalidArgument, path, "1536 bytes long in lower case")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err = s.SetCheckpoint(cancelled, checkpoint("0", nil, ptr(int64(1))), nil)
	assertError(t, err, context.Canceled, path, "")
	if _, err := s.ListOwnership(cancelled, testNS, testHub, testGroup, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("list with a cancelled context: %v", err)
	}

	s.Close()
	err = s.SetCheckpoint(ctx, checkpoint("0", nil, ptr(int64(1))), nil)
	assertError(t, err, ErrClosed, path, "")
	_, err = s.ListOwnership(ctx, testNS, testHub, testGroup, nil)
	assertError(t, err, ErrClosed, path, "")
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func assertError(t *testing.T, err, target error, path, mention string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v is not %v", err, target)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), mention) {
		t.Fatalf("error %q does not name the file %s and %q", err, path, mention)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		path string
		want error
	}{
		{write("empty.db", nil), ErrCorrupt},
		{write("text.db", []byte(strings.Repeat("not a store\n", 2000))), ErrUnsupportedFormat},
		{write("short.db", []byte("not a store")), ErrUnsupportedFormat},
		{write("truncated.db", truncatedStore(t, dir)), ErrCorrupt},
	}
	for _, c := range cases {
		s, err := Open(c.path, nil)
		if err == nil {
			s.Close()
		}
		assertError(t, err, c.want, c.path, "")
	}
	if _, err := Open(filepath.Join(dir, "missing-dir", "x.db"), nil); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// truncatedStore returns the first half of a populated store file.
func truncatedStore(t *testing.T, dir string) []byte {
	path := filepath.Join(dir, "full.db")
	s := openTestStore(t, path, &Options{NoSync: true})
	for i := range 64 {
		cp := checkpoint("0", nil, ptr(int64(i)))
		cp.ConsumerGroup = strings.Repeat("g", 200) + strconv.Itoa(i)
		if err := s.SetCheckpoint(context.Background(), cp, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data[:len(data)/2]
}

func TestNewFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	openTestStore(t, path, nil)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", info.Mode().Perm())
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

// TestOneClaimantWinsAcrossProcesses runs the 20-claimant races with the
// claimants split between this process and a child process.
func TestOneClaimantWinsAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	const rounds, perProcess = 8, 10
	for round := range rounds {
		partition := strconv.Itoa(round)
		var base *azcore.ETag
		if round%2 == 1 {
			o, _ := claimOne(t, s, ownership(partition, "seed", nil))
			base = o.ETag
		}
		start := time.Now().Add(300 * time.Millisecond)
		child := startClaimChild(t, path, partition, base, start, perProcess)
		time.Sleep(time.Until(start))
		local := countWinners(t, perProcess, func(i int) []azeventhubs.Ownership {
			return []azeventhubs.Ownership{ownership(partition, fmt.Sprint("parent-", i), base)}
		}, s)
		out, err := child.Output()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		remote, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("child printed %q", out)
		}
		if local+remote != 1 {
			t.Fatalf("round %d (etag %v): %d local and %d remote winners, want exactly 1", round, base != nil, local, remote)
		}
	}
}

// The child side of TestOneClaimantWinsAcrossProcesses: the test binary
// re-executed with BOLTSTORE_CLAIM_CHILD set.
func startClaimChild(t *testing.T, path, partition string, etag *azcore.ETag, start time.Time, n int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimChild$")
	e := ""
	if etag != nil {
		e = string(*etag)
	}
	cmd.Env = append(os.Environ(), "BOLTSTORE_CLAIM_CHILD="+strings.Join([]string{path, partition, e, strconv.FormatInt(start.UnixNano(), 10), strconv.Itoa(n)}, "\x1f"))
	return cmd
}

func TestClaimChild(t *testing.T) {
	spec := os.Getenv("BOLTSTORE_CLAIM_CHILD")
	if spec == "" {
		t.Skip("child process of TestOneClaimantWinsAcrossProcesses")
	}
	f := strings.Split(spec, "\x1f")
	startNanos, _ := strconv.ParseInt(f[3], 10, 64)
	n, _ := strconv.Atoi(f[4])
	var etag *azcore.ETag
	if f[2] != "" {
		etag = ptr(azcore.ETag(f[2]))
	}
	s, err := Open(f[0], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	time.Sleep(time.Until(time.Unix(0, startNanos)))
	wins := countWinners(t, n, func(i int) []azeventhubs.Ownership {
		return []azeventhubs.Ownership{ownership(f[1], fmt.Sprint("child-", i), etag)}
	}, s)
	s.Close()
	fmt.Println(wins)
	os.Exit(0)
}

// TestConcurrentOpensCreateOneFile: stores opening a missing file at once
// all succeed, on the one file one of them created, and see each other's
// writes.
func TestConcurrentOpensCreateOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	const stores = 8
	opened := make([]*Store, stores)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := Open(path, nil)
			if err != nil {
				t.Error(err)
				return
			}
			opened[i] = s
			if err := s.SetCheckpoint(ctx, checkpoint(strconv.Itoa(i), nil, ptr(int64(i))), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, s := range opened {
		if s != nil {
			defer s.Close()
		}
	}
	if t.Failed() {
		return
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the store file", len(entries))
	}
	cps, err := opened[0].ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
	if err != nil || len(cps) != stores {
		t.Errorf("ListCheckpoints: %d checkpoints, %v; want one from each store", len(cps), err)
	}
}

// TestOpenRefusesAnEmptyPath: an empty path is a caller's mistake, not a
// file to create in the working directory.
func TestOpenRefusesAnEmptyPath(t *testing.T) {
	s, err := Open("", nil)
	if err == nil {
		s.Close()
	}
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "path is empty") {
		t.Fatalf("Open(\"\"): %v, want ErrInvalidArgument saying the path is empty", err)
	}
}
