package benchcmp

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehcheckpoints/boltstore/internal/azurite"
)

// TestRunTiny runs every case a few times, BlobStore on Azurite included,
// and checks that the report is complete and well formed. It asserts
// nothing about speed: a few calls on a shared machine say nothing about
// it, and the targets are for people to read, not for CI to enforce.
func TestRunTiny(t *testing.T) {
	srv := azurite.ForTest(t)
	var progress bytes.Buffer
	rep, err := Run(t.Context(), Config{
		Dir:             t.TempDir(),
		Samples:         10,
		ListSamples:     10,
		BlobSamples:     4,
		Rounds:          2,
		OtherGroups:     20,
		OtherPartitions: 2,
		Azurite:         srv,
		Progress:        &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}

	wantIDs := []string{idFloor, idPlainBolt, idNestedBolt, idSet, idSetParallel, idClaim, idListOwn, idListCp, idListOwnMany,
		idListCpMany, idSetMany, idHandover, idReopen, idBlobPrefix + idBlobSet, idBlobPrefix + idBlobClaim,
		idBlobPrefix + idBlobListOwn, idBlobPrefix + idBlobListCp}
	if len(rep.Results) != len(wantIDs) {
		t.Fatalf("got %d results, want %d: %+v", len(rep.Results), len(wantIDs), rep.Results)
	}
	for i, r := range rep.Results {
		if r.ID != wantIDs[i] {
			t.Errorf("result %d is %q, want %q", i, r.ID, wantIDs[i])
		}
		if r.Calls == 0 || r.P50 <= 0 || r.P90 < r.P50 || r.OpsPerSec <= 0 {
			t.Errorf("result %s is incomplete: %+v", r.ID, r)
		}
	}
	// Each case gets at least one call per round.
	if got := rep.Results[slices.Index(wantIDs, idSetParallel)]; got.Workers != Partitions || got.Calls != Partitions*2 || len(got.RoundOpsPerSec) != 2 {
		t.Errorf("parallel case: %d calls by %d workers in %d rounds, want %d by %d in 2", got.Calls, got.Workers, len(got.RoundOpsPerSec), 2*Partitions, Partitions)
	}
	if len(rep.Targets) != 11 {
		t.Errorf("got %d targets, want 11", len(rep.Targets))
	}
	for _, tg := range rep.Targets {
		if !tg.Measured || tg.Value <= 0 {
			t.Errorf("target %q not measured: %+v", tg.Name, tg)
		}
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{"subject", "p50", "allocs/op", "BlobStore/Azurite", "write 4 KiB + fdatasync",
		"SetCheckpoint p50 vs the fdatasync floor", "targets met"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	t.Log("\n" + out)

	var back Report
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Results) != len(rep.Results) {
		t.Errorf("JSON round trip: %v, %d results", err, len(back.Results))
	}
}

// TestRunWithoutBlob checks that a run without BlobStore reports the
// BlobStore targets as not measured instead of failing or inventing them.
func TestRunWithoutBlob(t *testing.T) {
	rep, err := Run(t.Context(), Config{Dir: t.TempDir(), Samples: 5, ListSamples: 5, Rounds: 1,
		OtherGroups: 3, OtherPartitions: 1, SkipBlob: true})
	if err != nil {
		t.Fatal(err)
	}
	met, measured := rep.Met()
	if measured != 7 || met > measured {
		t.Errorf("Met() = %d, %d; want 7 measured targets", met, measured)
	}
	for _, tg := range rep.Targets {
		if strings.Contains(tg.Name, "BlobStore") && (tg.Measured || tg.Met) {
			t.Errorf("target %q is measured without BlobStore: %+v", tg.Name, tg)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 10; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct{ p, want int }{{50, 5}, {90, 9}, {100, 10}, {1, 1}} {
		if got := percentile(d, tc.p); got != time.Duration(tc.want) {
			t.Errorf("percentile(1..10, %d) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
}

func TestSteadyRateCountsOnlyWhileAllCall(t *testing.T) {
	at := func(ms ...int) []time.Time {
		base := time.Unix(0, 0)
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, base.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	// Worker 1 starts late and worker 0 stops early: all call from 3 to
	// 10 ms, and 5 of the 10 calls end in (3, 10].
	r, ok := steadyRate([][]time.Time{at(1, 2, 4, 6, 10), at(3, 5, 9, 12, 14)})
	if !ok || r.calls != 5 || r.took != 7*time.Millisecond {
		t.Errorf("steadyRate = %d calls in %v (ok %v), want 5 in 7ms", r.calls, r.took, ok)
	}
	// Workers that never overlap leave nothing to measure, and a window
	// with less than half the calls too little.
	if _, ok := steadyRate([][]time.Time{at(1, 2), at(3, 4)}); ok {
		t.Error("steadyRate measured workers that never called at the same time")
	}
	if _, ok := steadyRate([][]time.Time{at(1, 2, 3, 4, 5, 6), at(5, 7, 8, 9, 10, 11)}); ok {
		t.Error("steadyRate measured a window holding 1 of 12 calls")
	}
	if _, ok := steadyRate([][]time.Time{at(1, 2), nil}); ok {
		t.Error("steadyRate measured a worker that made no call")
	}
}

func TestShareSplitsEvenly(t *testing.T) {
	for _, n := range []int{1, 7, 10, 1001} {
		sum := 0
		for r := range 4 {
			sum += share(n, 4, r)
		}
		if sum != n {
			t.Errorf("shares of %d over 4 rounds add up to %d", n, sum)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{987 * time.Nanosecond, "987ns"}, {9870 * time.Nanosecond, "9.87µs"}, {123456 * time.Nanosecond, "123µs"},
		{1350 * time.Microsecond, "1.35ms"}, {45 * time.Millisecond, "45.0ms"}} {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := formatCount(1234567.4); got != "1,234,567" {
		t.Errorf("formatCount = %q", got)
	}
}

func TestNoiseWarnings(t *testing.T) {
	quiet := &Report{Env: Env{CPUs: 2, LoadStart: 0.5, LoadEnd: 1.2},
		Results: []Result{{ID: idFloor, P50: 100 * time.Microsecond, P90: 150 * time.Microsecond}}}
	if w := quiet.noise(); len(w) != 0 {
		t.Errorf("a quiet run warns: %q", w)
	}
	busy := &Report{Env: Env{CPUs: 2, LoadStart: 0.5, LoadEnd: 6},
		Results: []Result{{ID: idFloor, P50: 100 * time.Microsecond, P90: time.Millisecond}}}
	if w := busy.noise(); len(w) != 2 {
		t.Errorf("a busy run gives warnings %q, want one on load and one on the floor's spread", w)
	}
}
