package benchcmp

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"
)

// benchCase is one measured operation. Its samples are taken in chunks, one
// chunk per round, so that slow drift of a noisy machine (another tenant's
// disk traffic, CPU frequency) spreads over every case alike instead of
// skewing the ratios between cases measured minutes apart.
type benchCase struct {
	id, subject, name string
	// samples is the number of timed calls over all rounds. For a
	// parallel case it is the number per goroutine.
	samples int
	// workers > 0 runs the op in that many goroutines at once.
	workers int
	// op is the timed call. worker is the goroutine's index (0 for a
	// sequential case); i counts the calls of that worker over all rounds.
	op func(ctx context.Context, worker, i int) error
	// prep, when set, runs untimed before each call.
	prep func(ctx context.Context) error

	durations []time.Duration
	timed     time.Duration // sum of durations, or wall time of parallel chunks
	calls     int
	rates     []float64 // calls per second of each chunk
	mallocs   uint64
	bytes     uint64
	next      []int // per worker: the next i
}

func (c *benchCase) init() {
	w := max(c.workers, 1)
	c.durations = make([]time.Duration, 0, c.samples*w)
	c.next = make([]int, w)
}

// chunk runs n calls (n per goroutine for a parallel case) and records
// them. It collects garbage first and counts the allocations of the chunk,
// so that allocs per call include what the store's background goroutines
// allocate on the call's behalf.
func (c *benchCase) chunk(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	calls, timed := c.calls, c.timed
	var err error
	if c.workers > 0 {
		err = c.parallelChunk(ctx, n)
	} else {
		err = c.sequentialChunk(ctx, n)
	}
	runtime.ReadMemStats(&after)
	c.mallocs += after.Mallocs - before.Mallocs
	c.bytes += after.TotalAlloc - before.TotalAlloc
	if err == nil {
		c.rates = append(c.rates, float64(c.calls-calls)/(c.timed-timed).Seconds())
	}
	return err
}

func (c *benchCase) sequentialChunk(ctx context.Context, n int) error {
	for range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.prep != nil {
			if err := c.prep(ctx); err != nil {
				return err
			}
		}
		i := c.next[0]
		start := time.Now()
		err := c.op(ctx, 0, i)
		d := time.Since(start)
		if err != nil {
			return err
		}
		c.next[0]++
		c.durations = append(c.durations, d)
		c.timed += d
		c.calls++
	}
	return nil
}

// parallelChunk starts the workers together and times the chunk from the
// start signal until the last worker is done: the throughput a set of
// concurrent callers sees.
func (c *benchCase) parallelChunk(ctx context.Context, n int) error {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, c.workers)
		durs  = make([][]time.Duration, c.workers)
	)
	for w := range c.workers {
		durs[w] = make([]time.Duration, 0, n)
		wg.Go(func() {
			<-start
			for range n {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				t0 := time.Now()
				err := c.op(ctx, w, c.next[w])
				d := time.Since(t0)
				if err != nil {
					errs[w] = err
					return
				}
				c.next[w]++
				durs[w] = append(durs[w], d)
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	c.timed += time.Since(t0)
	for w := range c.workers {
		c.durations = append(c.durations, durs[w]...)
		c.calls += len(durs[w])
		if errs[w] != nil {
			return errs[w]
		}
	}
	return nil
}

// result summarises the case.
func (c *benchCase) result() Result {
	r := Result{ID: c.id, Subject: c.subject, Operation: c.name, Calls: c.calls, Workers: c.workers}
	if c.calls == 0 {
		return r
	}
	sorted := slices.Clone(c.durations)
	slices.Sort(sorted)
	r.P50 = percentile(sorted, 50)
	r.P90 = percentile(sorted, 90)
	r.OpsPerSec = float64(c.calls) / c.timed.Seconds()
	r.AllocsPerOp = float64(c.mallocs) / float64(c.calls)
	r.BytesPerOp = float64(c.bytes) / float64(c.calls)
	r.RoundOpsPerSec = c.rates
	return r
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

// warm runs n untimed calls per worker: it opens files, creates buckets and
// HTTP connections, and fills caches before anything is measured.
func (c *benchCase) warm(ctx context.Context, n int) error {
	for w := range max(c.workers, 1) {
		for range n {
			if c.prep != nil {
				if err := c.prep(ctx); err != nil {
					return err
				}
			}
			if err := c.op(ctx, w, c.next[w]); err != nil {
				return err
			}
			c.next[w]++
		}
	}
	return nil
}
