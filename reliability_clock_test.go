package boltstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// relClock is a store clock the test moves at will, backwards included.
// With jitter set, every reading is a random time up to jitter away from
// the base, so consecutive readings jump back and forth.
type relClock struct {
	mu     sync.Mutex
	base   time.Time
	jitter time.Duration
	rng    *rand.Rand
}

func relNewClock(base time.Time, seed uint64) *relClock {
	return &relClock{base: base, rng: rand.New(rand.NewPCG(seed, 1))}
}

func (c *relClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jitter == 0 {
		return c.base
	}
	return c.base.Add(time.Duration(c.rng.Int64N(int64(2*c.jitter))) - c.jitter)
}

func (c *relClock) set(t time.Time, jitter time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.jitter = t, jitter
}

func relClockOwnership(partition, owner string, etag *azcore.ETag) azeventhubs.Ownership {
	return azeventhubs.Ownership{FullyQualifiedNamespace: "relclock.servicebus.windows.net", EventHubName: "hub", ConsumerGroup: "$Default",
		PartitionID: partition, OwnerID: owner, ETag: etag}
}

// TestReliabilityClockBackwards shows that ownership rests on etags alone:
// with the store's clock jumping backwards, standing still, or differing
// between two stores on one file, exactly one of several claimants with
// the same etag wins, a stale etag loses however new its claimant's clock,
// renewals keep working, and the last checkpoint written is the one kept.
func TestReliabilityClockBackwards(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clock.db")
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clockA, clockB := relNewClock(t0, 1), relNewClock(t0, 2)
	a := openTestStore(t, path, &Options{Now: clockA.Now})
	b := openTestStore(t, path, &Options{Now: clockB.Now})
	claim := func(s *Store, o azeventhubs.Ownership) (azeventhubs.Ownership, bool) {
		t.Helper()
		got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{o}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return azeventhubs.Ownership{}, false
		}
		return got[0], true
	}

	// A renewal after the clock went back an hour wins and carries the
	// store's (earlier) time; the etag it replaced is dead, even for a
	// claimant whose clock is later than every stored time.
	first, ok := claim(a, relClockOwnership("0", "a", nil))
	if !ok || !first.LastModifiedTime.Equal(t0) {
		t.Fatalf("first claim: %+v won=%v", first, ok)
	}
	clockA.set(t0.Add(-time.Hour), 0)
	renewed, ok := claim(a, relClockOwnership("0", "a", first.ETag))
	if !ok || *renewed.ETag == *first.ETag || !renewed.LastModifiedTime.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("renewal after the clock went back: %+v won=%v", renewed, ok)
	}
	clockB.set(t0.Add(time.Hour), 0)
	if stale, ok := claim(b, relClockOwnership("0", "b", first.ETag)); ok {
		t.Fatalf("a claim with the replaced etag won: %+v", stale)
	}

	// Races: ten claimants on each store, all with the same etag (or all
	// create-only), while both clocks jump by up to a year either way on
	// every reading, or stand still so that every claim gets the same time.
	seen := map[azcore.ETag]bool{*first.ETag: true, *renewed.ETag: true}
	current := *renewed.ETag
	rounds := 30
	if testing.Short() {
		rounds = 10
	}
	for round := range rounds {
		jitter := 365 * 24 * time.Hour
		if round%3 == 2 {
			jitter = 0 // frozen: same nanosecond for everyone
		}
		clockA.set(t0.Add(-time.Duration(round)*time.Hour), jitter)
		clockB.set(t0.Add(-time.Duration(round)*time.Hour), jitter)
		for _, createOnly := range []bool{false, true} {
			partition, etag := "0", &current
			if createOnly {
				partition, etag = "new-"+strconv.Itoa(round), nil
			}
			var (
				mu      sync.Mutex
				winners []azeventhubs.Ownership
				wg      sync.WaitGroup
				start   = make(chan struct{})
			)
			for i := range 20 {
				s := a
				if i%2 == 1 {
					s = b
				}
				wg.Go(func() {
					<-start
					got, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{relClockOwnership(partition, fmt.Sprint("claimant-", i), etag)}, nil)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					winners = append(winners, got...)
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			if len(winners) != 1 {
				t.Fatalf("round %d (create only: %v): %d winners, want exactly 1: %+v", round, createOnly, len(winners), winners)
			}
			w := winners[0]
			if seen[*w.ETag] {
				t.Fatalf("round %d: the winner got etag %q, which was issued before", round, *w.ETag)
			}
			seen[*w.ETag] = true
			owns, err := b.ListOwnership(ctx, w.FullyQualifiedNamespace, w.EventHubName, w.ConsumerGroup, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range owns {
				if o.PartitionID == partition && (o.OwnerID != w.OwnerID || *o.ETag != *w.ETag || !o.LastModifiedTime.Equal(w.LastModifiedTime)) {
					t.Fatalf("round %d: list has %+v, the winner is %+v", round, o, w)
				}
			}
			if !createOnly {
				current = *w.ETag
			}
		}
	}

	// Renewals with a clock that goes back a minute each time all win, and
	// each stores the time it was given.
	clockA.set(t0, 0)
	for i := range 20 {
		when := t0.Add(-time.Duration(i) * time.Minute)
		clockA.set(when, 0)
		got, ok := claim(a, relClockOwnership("0", "a", &current))
		if !ok || seen[*got.ETag] || !got.LastModifiedTime.Equal(when) {
			t.Fatalf("renewal %d with the clock going back: %+v won=%v", i, got, ok)
		}
		seen[*got.ETag], current = true, *got.ETag
	}

	// The last checkpoint written is kept, although its time is earlier.
	for i, when := range []time.Time{t0, t0.Add(-24 * time.Hour)} {
		clockA.set(when, 0)
		seq := int64(i + 1)
		o := relClockOwnership("0", "", nil)
		err := a.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: o.FullyQualifiedNamespace, EventHubName: o.EventHubName,
			ConsumerGroup: o.ConsumerGroup, PartitionID: "0", SequenceNumber: &seq}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	recs, err := b.Records(ctx, Scope{Namespace: "relclock.servicebus.windows.net"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type == RecordCheckpoint && (*r.SequenceNumber != 2 || !r.WrittenAt.Equal(t0.Add(-24*time.Hour))) {
			t.Fatalf("after writing sequence numbers 1 then 2 with the clock going back a day: %s", relShowRecord(r))
		}
	}
}
