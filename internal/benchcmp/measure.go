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
	calls     int
	rated     rate      // what the rates were measured over
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
	var (
		rate rate
		err  error
	)
	if c.workers > 0 {
		rate, err = c.parallelChunk(ctx, n)
	} else {
		rate, err = c.sequentialChunk(ctx, n)
	}
	runtime.ReadMemStats(&after)
	c.mallocs += after.Mallocs - before.Mallocs
	c.bytes += after.TotalAlloc - before.TotalAlloc
	if err == nil {
		c.rated.calls += rate.calls
		c.rated.took += rate.took
		c.rates = append(c.rates, rate.perSecond())
	}
	return err
}

// rate is a number of calls over the time they took.
type rate struct {
	calls int
	took  time.Duration
}

func (r rate) perSecond() float64 { return float64(r.calls) / r.took.Seconds() }

func (c *benchCase) sequentialChunk(ctx context.Context, n int) (rate, error) {
	var r rate
	for range n {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if c.prep != nil {
			if err := c.prep(ctx); err != nil {
				return r, err
			}
		}
		i := c.next[0]
		start := time.Now()
		err := c.op(ctx, 0, i)
		d := time.Since(start)
		if err != nil {
			return r, err
		}
		c.next[0]++
		c.durations = append(c.durations, d)
		c.calls++
		r.calls++
		r.took += d
	}
	return r, nil
}

// parallelChunk starts the workers together and returns their throughput
// while all of them were calling: from when the last of them finished its
// first call until the first of them finished its last. Outside that
// window fewer goroutines are calling, so the store sees a ramp that is
// the harness's, not the workload's: counted in, it cost a 25-call chunk
// about a tenth of its rate.
func (c *benchCase) parallelChunk(ctx context.Context, n int) (rate, error) {
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, c.workers)
		durs  = make([][]time.Duration, c.workers)
		ends  = make([][]time.Time, c.workers)
	)
	for w := range c.workers {
		durs[w] = make([]time.Duration, 0, n)
		ends[w] = make([]time.Time, 0, n)
		wg.Go(func() {
			<-start
			for range n {
				if ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				t0 := time.Now()
				err := c.op(ctx, w, c.next[w])
				end := time.Now()
				if err != nil {
					errs[w] = err
					return
				}
				c.next[w]++
				durs[w] = append(durs[w], end.Sub(t0))
				ends[w] = append(ends[w], end)
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	whole := rate{took: time.Since(t0)}
	for w := range c.workers {
		if errs[w] != nil {
			return rate{}, errs[w]
		}
		c.durations = append(c.durations, durs[w]...)
		c.calls += len(durs[w])
		whole.calls += len(durs[w])
	}
	if steady, ok := steadyRate(ends); ok {
		return steady, nil
	}
	return whole, nil
}

// steadyRate counts the calls that ended while every worker was calling,
// given each worker's call end times; ok is false when the window holds
// fewer than half of all calls, too few to measure. The window opens and
// closes on a commit's results, so it holds whole commits but for the
// first, and reads a little low.
func steadyRate(ends [][]time.Time) (r rate, ok bool) {
	var from, to time.Time
	all := 0
	for i, e := range ends {
		all += len(e)
		if len(e) == 0 {
			return rate{}, false
		}
		if i == 0 || e[0].After(from) {
			from = e[0]
		}
		if last := e[len(e)-1]; i == 0 || last.Before(to) {
			to = last
		}
	}
	for _, e := range ends {
		for _, t := range e {
			if t.After(from) && !t.After(to) {
				r.calls++
			}
		}
	}
	r.took = to.Sub(from)
	return r, 2*r.calls >= all && r.took > 0
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
	r.OpsPerSec = c.rated.perSecond()
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
