package boltstore_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
	"github.com/ehcheckpoints/boltstore/internal/benchcmp"
)

// The benchmarks use default Options (durable) unless their name says
// otherwise, and keep every file in b.TempDir(), on the same disk as
// BenchmarkFsyncFloor, so that ratios between them can be read from one
// run:
//
//	go test -run '^$' -bench . -skip HeldCPU -benchtime 2000x
//
// BenchmarkHeldCPUCheckpointEvery20ms is skipped there: each of its
// iterations takes 20 ms, so it has a command of its own.
//
// `go test -bench` reports means; each benchmark also reports its median
// as p50-µs. `go run ./cmd/ehcheckpoints bench` measures the same calls
// (internal/benchcmp's workload) side by side with BlobStore on Azurite
// and checks them against the speed targets.

// latencies records the duration of each call so that a benchmark can
// report its median, which a noisy machine disturbs far less than the
// mean. It is sized before the timer starts so that it allocates nothing
// while timed.
type latencies struct {
	b *testing.B
	d []time.Duration
}

func newLatencies(b *testing.B) *latencies {
	return &latencies{b: b, d: make([]time.Duration, 0, b.N)}
}

// time runs op once, timed.
func (l *latencies) time(op func() error) {
	start := time.Now()
	err := op()
	l.d = append(l.d, time.Since(start))
	if err != nil {
		l.b.Fatal(err)
	}
}

// report adds the median as the p50-µs metric.
func (l *latencies) report() {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	l.b.ReportMetric(float64(l.d[(len(l.d)-1)/2])/float64(time.Microsecond), "p50-µs")
}

// openBench opens a store in b.TempDir() and closes it when b ends.
func openBench(b *testing.B, name string, opts *boltstore.Options) *boltstore.Store {
	b.Helper()
	s, err := boltstore.Open(filepath.Join(b.TempDir(), name), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// filledStore opens a store whose benchmark group has 32 ownerships and
// checkpoints, and returns it with the ownerships as claimed.
func filledStore(b *testing.B, opts *boltstore.Options) (*boltstore.Store, []azeventhubs.Ownership) {
	b.Helper()
	s := openBench(b, "bench.db", opts)
	owned, err := benchcmp.Fill(b.Context(), s)
	if err != nil {
		b.Fatal(err)
	}
	return s, owned
}

// BenchmarkFsyncFloor is the physical floor of a durable commit on this
// disk: a 4 KiB write at a fixed offset of a preallocated file, then
// fdatasync. bbolt syncs twice per commit, so a store commit costs at
// least about twice this.
func BenchmarkFsyncFloor(b *testing.B) { benchFloor(b, (*benchcmp.Floor).Write) }

// benchFloor times write on a fresh floor file.
func benchFloor(b *testing.B, write func(*benchcmp.Floor) error) {
	fl, err := benchcmp.OpenFloor(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer fl.Close()
	b.ReportAllocs()
	lat := newLatencies(b)
	op := func() error { return write(fl) }
	b.ResetTimer()
	for range b.N {
		lat.time(op)
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkFsyncCommitPages is what the sync of a store commit costs the
// disk. A checkpoint's commit writes four pages: a meta page (page 0 or 1,
// in turn) and three the freelist had free (freelist, root, records),
// which lie in two or three separate runs. Each run is its own write
// request, and requests, more than pages, are what fdatasync waits for.
// The eight pages are a commit of the nested layout of format 2, which
// had a page for each bucket on a record's path.
func BenchmarkFsyncCommitPages(b *testing.B) {
	for _, bc := range []struct {
		name  string
		pages []int64
	}{
		{"four-adjacent", []int64{1, 2, 3, 4}},
		{"four-scattered", []int64{0, 4, 5, 8}}, // as a store commit wrote them
		{"eight-scattered", []int64{0, 4, 5, 10, 11, 12, 13, 16}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchFloor(b, func(fl *benchcmp.Floor) error { return fl.WritePages(bc.pages) })
		})
	}
}

// BenchmarkBoltUpdate is a naive store's commit: bbolt's Update with one
// Put into a top-level bucket, which bbolt keeps inline, so a commit writes
// two pages and the meta page: the cheapest commit bbolt makes.
func BenchmarkBoltUpdate(b *testing.B) { benchPlainBolt(b, benchcmp.OpenPlainBolt) }

// BenchmarkBoltUpdateNested is the same Put into buckets nested one per
// name, as a naive store (and format 2 of this one) keeps its records,
// among a group's worth of values: what such a layout costs each commit.
func BenchmarkBoltUpdateNested(b *testing.B) { benchPlainBolt(b, benchcmp.OpenNestedBolt) }

func benchPlainBolt(b *testing.B, open func(string) (*benchcmp.PlainBolt, error)) {
	p, err := open(filepath.Join(b.TempDir(), "plain.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.Put(0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for i := range b.N {
		lat.time(func() error { return p.Put(i) })
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkSetCheckpoint is one caller checkpointing one partition.
func BenchmarkSetCheckpoint(b *testing.B) {
	s, _ := filledStore(b, nil)
	ctx := b.Context()
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for i := range b.N {
		lat.time(func() error { return s.SetCheckpoint(ctx, benchcmp.Checkpoint(0, int64(i)), nil) })
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkSetCheckpointNoSync is SetCheckpoint without fsync: the CPU
// cost of a commit, for telling it from the disk's.
func BenchmarkSetCheckpointNoSync(b *testing.B) {
	s, _ := filledStore(b, &boltstore.Options{NoSync: true})
	ctx := b.Context()
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for i := range b.N {
		lat.time(func() error { return s.SetCheckpoint(ctx, benchcmp.Checkpoint(0, int64(i)), nil) })
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkSetCheckpointParallel32 is 32 goroutines, one per partition,
// checkpointing at once, as a processor that owns 32 partitions does. The
// b.N checkpoints are split among them; checkpoints/s is the throughput
// they get together, to compare with BenchmarkSetCheckpoint's 1e9/(ns/op).
func BenchmarkSetCheckpointParallel32(b *testing.B) {
	const writers = benchcmp.Partitions
	s, _ := filledStore(b, nil)
	ctx := b.Context()
	b.ReportAllocs()
	durs := make([][]time.Duration, writers)
	for w := range durs {
		durs[w] = make([]time.Duration, 0, b.N/writers+1)
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, writers)
	)
	for w := range writers {
		n := b.N / writers
		if w < b.N%writers {
			n++
		}
		wg.Go(func() {
			<-start
			for i := range n {
				t0 := time.Now()
				if err := s.SetCheckpoint(ctx, benchcmp.Checkpoint(w, int64(i)), nil); err != nil {
					errs[w] = err
					return
				}
				durs[w] = append(durs[w], time.Since(t0))
			}
		})
	}
	b.ResetTimer()
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	all := slices.Concat(durs...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "checkpoints/s")
	b.ReportMetric(float64(all[(len(all)-1)/2])/float64(time.Microsecond), "p50-µs")
}

// BenchmarkClaimOwnership32 is a processor renewing its 32 partitions:
// one ClaimOwnership call with the etags of the previous renewal.
func BenchmarkClaimOwnership32(b *testing.B) {
	benchClaim(b, nil)
}

// BenchmarkClaimOwnership32NoSync is the renewal without fsync: its CPU
// cost, which is what it adds to a commit over SetCheckpoint's.
func BenchmarkClaimOwnership32NoSync(b *testing.B) {
	benchClaim(b, &boltstore.Options{NoSync: true})
}

func benchClaim(b *testing.B, opts *boltstore.Options) {
	s, owned := filledStore(b, opts)
	ctx := b.Context()
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for range b.N {
		lat.time(func() (err error) {
			owned, err = benchcmp.Claim(ctx, s, owned)
			return err
		})
	}
	b.StopTimer()
	lat.report()
}

// benchList measures list (ListOwnership or ListCheckpoints) of the
// benchmark group in s.
func benchList(b *testing.B, s *boltstore.Store, list func(context.Context, azeventhubs.CheckpointStore) error) {
	ctx := b.Context()
	if err := list(ctx, s); err != nil { // open the file before timing
		b.Fatal(err)
	}
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for range b.N {
		lat.time(func() error { return list(ctx, s) })
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkListOwnership32 lists the 32 ownerships of a group, as every
// processor does on each load-balancing round.
func BenchmarkListOwnership32(b *testing.B) {
	s, _ := filledStore(b, nil)
	benchList(b, s, benchcmp.ListOwnership)
}

// BenchmarkListCheckpoints32 lists the 32 checkpoints of a group, as a
// processor does when it starts a partition client.
func BenchmarkListCheckpoints32(b *testing.B) {
	s, _ := filledStore(b, nil)
	benchList(b, s, benchcmp.ListCheckpoints)
}

// otherGroups is how many other consumer groups the ...OtherGroups
// benchmarks put in the file, each with otherPartitions records of each
// kind.
const (
	otherGroups     = 10000
	otherPartitions = 32
)

// manyGroupsStore is filledStore in a file that also holds otherGroups
// other consumer groups of the same event hub.
func manyGroupsStore(b *testing.B) *boltstore.Store {
	b.Helper()
	s := openBench(b, "many.db", nil)
	if err := benchcmp.SeedOtherGroups(b.Context(), s, otherGroups, otherPartitions); err != nil {
		b.Fatal(err)
	}
	if _, err := benchcmp.Fill(b.Context(), s); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkListOwnership32OtherGroups10000 is BenchmarkListOwnership32
// with 10,000 other consumer groups in the file: a list must cost the
// same however much else the file holds.
func BenchmarkListOwnership32OtherGroups10000(b *testing.B) {
	benchList(b, manyGroupsStore(b), benchcmp.ListOwnership)
}

// BenchmarkListCheckpoints32OtherGroups10000 is BenchmarkListCheckpoints32
// with 10,000 other consumer groups in the file.
func BenchmarkListCheckpoints32OtherGroups10000(b *testing.B) {
	benchList(b, manyGroupsStore(b), benchcmp.ListCheckpoints)
}

// BenchmarkOpenOtherGroups10000 is Open of a file with 10,000 consumer
// groups of 32 ownerships and 32 checkpoints besides the benchmark's own:
// Open verifies every page and record, so it costs in proportion to the
// file's size, which it reports (file-MB).
func BenchmarkOpenOtherGroups10000(b *testing.B) {
	s := manyGroupsStore(b)
	path := s.Path()
	s.Close()
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	lat := newLatencies(b)
	b.ResetTimer()
	for range b.N {
		lat.time(func() error {
			s, err := boltstore.Open(path, nil)
			if err == nil {
				err = s.Close()
			}
			return err
		})
	}
	b.StopTimer()
	lat.report()
	b.ReportMetric(float64(info.Size())/1e6, "file-MB")
}

// BenchmarkHandover is two Store handles on one file taking turns, each
// SetCheckpoint taking the file over from the other, as two processes
// sharing a file do. It measures what sharing costs a write when the other
// side is busy: the holder must notice the waiter, finish, and let go.
func BenchmarkHandover(b *testing.B) {
	path := filepath.Join(b.TempDir(), "shared.db")
	var stores [2]*boltstore.Store
	for i := range stores {
		s, err := boltstore.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	ctx := b.Context()
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for i := range b.N {
		lat.time(func() error { return stores[i%2].SetCheckpoint(ctx, benchcmp.Checkpoint(0, int64(i)), nil) })
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkListOwnership32AfterIdleReleaseOf2ms is a list by a store that
// has let go of its idle file and must reopen it: what a processor that
// calls less often than Options.IdleRelease pays per call for sharing.
// IdleRelease is 2ms instead of the default 100ms only so that the
// benchmark need not wait long for each release; reopening costs the same.
func BenchmarkListOwnership32AfterIdleReleaseOf2ms(b *testing.B) {
	s, _ := filledStore(b, &boltstore.Options{IdleRelease: 2 * time.Millisecond})
	probe, err := os.OpenFile(s.Path(), os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer probe.Close()
	ctx := b.Context()
	b.ReportAllocs()
	lat := newLatencies(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := benchcmp.WaitReleased(ctx, probe); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		lat.time(func() error { return benchcmp.ListOwnership(ctx, s) })
	}
	b.StopTimer()
	lat.report()
}

// BenchmarkHeldCPUCheckpointEvery20ms is a processor that checkpoints
// every 20 ms, often enough that its store keeps the file (IdleRelease is
// 100 ms): the CPU its process spends, the calls and the lease's watch for
// waiting processes included, as a share of one core, and how often the
// process gave up the CPU, which on a virtual machine is what wakeups cost.
// Each iteration is one 20 ms period, so run it on its own with a small
// count:
//
//	go test -run '^$' -bench HeldCPU -benchtime 100x
func BenchmarkHeldCPUCheckpointEvery20ms(b *testing.B) {
	const period = 20 * time.Millisecond
	s, _ := filledStore(b, nil)
	ctx := b.Context()
	before := processUsage(b)
	start := time.Now()
	for i := range b.N {
		if err := s.SetCheckpoint(ctx, benchcmp.Checkpoint(0, int64(i)), nil); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * period)))
	}
	elapsed := time.Since(start)
	after := processUsage(b)
	b.ReportMetric(100*(after.cpu-before.cpu).Seconds()/elapsed.Seconds(), "cpu-%")
	b.ReportMetric(float64(after.switches-before.switches)/elapsed.Seconds(), "switches/s")
}

type usage struct {
	cpu      time.Duration // user and system
	switches int64         // voluntary and involuntary context switches
}

func processUsage(b *testing.B) usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return usage{
		cpu:      time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		switches: ru.Nvcsw + ru.Nivcsw,
	}
}
