package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore"
	"github.com/ehcheckpoints/boltstore/internal/testhub"
)

// Options configure Run.
type Options struct {
	// Processors, Partitions and Events are how many processor processes
	// run, how many partitions the event hub has and how many events are
	// published.
	Processors, Partitions, Events int
	// Keep keeps the store file instead of deleting it.
	Keep bool

	// Executable and Args run the processor program: the demo starts
	// Executable with Args followed by the flags of a ProcessorConfig.
	Executable string
	Args       []string
	// CLI is how the user runs ehcheckpoints, for the commands printed
	// with Keep.
	CLI string

	// Out receives the demo's output. With Live, each refresh redraws the
	// terminal screen; without, the demo prints what happens line by line
	// and the table at each step. Color adds ANSI colors to live output.
	Out         io.Writer
	Live, Color bool
	// Table writes the table of partitions.
	Table func(w io.Writer, s Snapshot) error
}

// Snapshot is what the table of partitions shows.
type Snapshot struct {
	// Records are the store's records.
	Records []boltstore.Record
	// Last holds each partition's last sequence number, -1 if it has no
	// events.
	Last map[string]int64
	// Now is when the records were read, and Expiry the processors'
	// ownership expiration.
	Now    time.Time
	Expiry time.Duration
}

// Settings of the demo's processors: slower than the end-to-end tests'
// so that a person can follow the balancing, and much faster than the
// SDK's defaults (10 s and a minute) so the demo ends in seconds.
const (
	demoUpdateInterval = 500 * time.Millisecond
	demoExpiration     = 3 * time.Second
	demoHub            = "demo"
)

// Pacing of the demo.
const (
	refreshEvery  = 250 * time.Millisecond
	publishPeriod = 12 * time.Second // over which the events are spread
	livePause     = 3 * time.Second  // to look at the table after each step
	plainPause    = time.Second      // to let events flow between steps
	// basePhaseTimeout bounds each step, plus the time balancing takes
	// (see phaseTimeout).
	basePhaseTimeout = 30 * time.Second
)

// phaseTimeout bounds each step of the demo. The processors' balanced
// strategy claims one partition per processor per update interval, so
// balancing takes Partitions/Processors intervals, and taking over a
// killed processor's partitions up to Partitions/(Processors-1): the bound
// grows with that, twice over for slack, so that many partitions balance
// too, only more slowly.
func (o Options) phaseTimeout() time.Duration {
	claims := (o.Partitions + o.Processors - 2) / (o.Processors - 1) // rounded up
	return basePhaseTimeout + 2*time.Duration(claims)*demoUpdateInterval
}

// Run starts the test double and o.Processors processor processes on a
// new store file, publishes o.Events events, waits until the processors
// have balanced the partitions, SIGKILLs one, waits until the others have
// taken over its partitions, lets them consume everything, stops them and
// prints a summary.
func Run(ctx context.Context, o Options) (err error) {
	r := &runner{o: o, start: time.Now(), last: map[string]int64{}, lastOwner: map[string]string{}, starting: map[string]bool{}}
	if r.dir, err = os.MkdirTemp("", "ehcheckpoints-demo-"); err != nil {
		return err
	}
	r.path = filepath.Join(r.dir, "checkpoints.db")
	defer func() {
		if !o.Keep {
			os.RemoveAll(r.dir)
		}
	}()
	if r.hub, err = testhub.Start(testhub.Options{Name: demoHub, Partitions: o.Partitions}); err != nil {
		return err
	}
	defer r.hub.Close()
	props, err := azeventhubs.ParseConnectionString(r.hub.ConnectionString())
	if err != nil {
		return err
	}
	r.ns = props.FullyQualifiedNamespace
	// The demo reads the file with the default options, as processors do,
	// taking turns with them.
	if r.store, err = boltstore.Open(r.path, nil); err != nil {
		return err
	}
	defer r.store.Close()
	defer r.cleanup()
	return r.run(ctx)
}

// runner is one run of the demo.
type runner struct {
	o     Options
	start time.Time
	dir   string
	path  string
	hub   *testhub.Hub
	ns    string
	store *boltstore.Store

	procs   []*Process
	readers []*LogReader
	entries [][]Entry // each process's log so far

	published atomic.Int64
	// last is each partition's last sequence number; lastOwner the last
	// processor that received events of it.
	last      map[string]int64
	lastOwner map[string]string
	// starting holds "owner/partition" for sessions that have not yet
	// processed an event.
	starting map[string]bool
	records  []boltstore.Record
	notes    []string // what happened, for the live screen
}

func (r *runner) run(ctx context.Context) error {
	o := r.o
	r.notef("test double: event hub %q with %d partitions on %s", demoHub, o.Partitions, r.ns)
	ids := make([]string, o.Processors)
	for i := range ids {
		ids[i] = fmt.Sprintf("proc-%d", i+1)
		cfg := ProcessorConfig{
			ConnectionString: r.hub.ConnectionString(),
			StorePath:        r.path,
			ID:               ids[i],
			CheckpointEvery:  DefaultCheckpointEvery,
			UpdateInterval:   demoUpdateInterval,
			Expiration:       demoExpiration,
		}
		p, err := StartProcess(o.Executable, o.Args, cfg, filepath.Join(r.dir, ids[i]+".log"))
		if err != nil {
			return err
		}
		r.procs = append(r.procs, p)
		r.readers = append(r.readers, NewLogReader(p.LogPath))
		r.entries = append(r.entries, nil)
	}
	r.notef("store file %s", r.path)
	r.notef("started %s: checkpoints every %d events, expiry %s", list(ids), DefaultCheckpointEvery, demoExpiration)

	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	var publisher sync.WaitGroup
	publisher.Go(func() { r.publish(pubCtx, o.Events) })

	if err := r.until(ctx, "balanced", func() bool { return Balanced(r.owners(), ids, o.Partitions) }); err != nil {
		return err
	}
	balanced := time.Since(r.start)
	r.notef("balanced: %s", r.shares())
	r.table()
	if err := r.sleep(ctx, r.pause()); err != nil {
		return err
	}

	victim := r.procs[len(r.procs)/2]
	survivors := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == victim.ID })
	held := r.owners()[victim.ID]
	killedAt := time.Now()
	if err := victim.Kill(); err != nil {
		return err
	}
	<-victim.Done()
	r.notef("SIGKILL %s, owner of partitions %s", victim.ID, list(held))
	expired := false
	err := r.until(ctx, "taken over", func() bool {
		owners := r.owners()
		if _, ok := owners[victim.ID]; !ok && !expired {
			expired = true
			r.notef("%s's ownerships expired (%s); the others claim them one by one", victim.ID, demoExpiration)
			r.table()
		}
		return Balanced(owners, survivors, o.Partitions)
	})
	if err != nil {
		return err
	}
	rebalance := time.Since(killedAt)
	r.notef("taken over in %s: %s", rebalance.Round(10*time.Millisecond), r.shares())
	r.table()
	if err := r.sleep(ctx, r.pause()); err != nil {
		return err
	}

	// Publish what is left at once rather than wait for the schedule.
	stopPublishing()
	publisher.Wait()
	if err := r.publishRest(); err != nil {
		return err
	}
	r.notef("all %d events published; waiting for the last checkpoints", o.Events)
	if err := r.until(ctx, "consumed", r.consumed); err != nil {
		return err
	}
	r.notef("caught up; stopping %s, which relinquish their partitions", list(survivors))
	for _, p := range r.procs {
		if p != victim {
			if err := p.Stop(); err != nil {
				return err
			}
		}
	}
	stopCtx, cancel := context.WithTimeout(ctx, o.phaseTimeout())
	defer cancel()
	for _, p := range r.procs {
		if p != victim {
			if err := p.Wait(stopCtx); err != nil {
				return err
			}
		}
	}
	if err := r.refresh(ctx); err != nil {
		return err
	}
	r.notef("stopped")
	r.table()
	return r.summary(balanced, rebalance, victim, held, survivors)
}

// publish spreads n events over publishPeriod, round robin over the
// partitions, until ctx ends.
func (r *runner) publish(ctx context.Context, n int) {
	const tick = 50 * time.Millisecond
	perTick := max(1, n*int(tick)/int(publishPeriod))
	t := time.NewTicker(tick)
	defer t.Stop()
	for int(r.published.Load()) < n {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.publishN(min(perTick, n-int(r.published.Load()))); err != nil {
			return // publishRest reports it
		}
	}
}

// publishRest publishes the events not yet published.
func (r *runner) publishRest() error {
	return r.publishN(r.o.Events - int(r.published.Load()))
}

// publishN publishes n events round robin over the partitions, going on
// from where the last call stopped.
func (r *runner) publishN(n int) error {
	for range n {
		next := r.published.Load()
		partition := strconv.FormatInt(next%int64(r.o.Partitions), 10)
		if err := r.hub.Publish(partition, []byte("event "+strconv.FormatInt(next, 10))); err != nil {
			return err
		}
		r.published.Add(1)
	}
	return nil
}

// pause is how long the demo waits after a step.
func (r *runner) pause() time.Duration {
	if r.o.Live {
		return livePause
	}
	return plainPause
}

// until refreshes the screen until cond holds.
func (r *runner) until(ctx context.Context, what string, cond func() bool) error {
	timeout := r.o.phaseTimeout()
	deadline := time.Now().Add(timeout)
	for {
		if err := r.refresh(ctx); err != nil {
			return err
		}
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not %s after %s; owners: %s", what, timeout, r.shares())
		}
		if err := sleepCtx(ctx, refreshEvery); err != nil {
			return err
		}
	}
}

// sleep refreshes the screen for d.
func (r *runner) sleep(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	return r.until(ctx, "done waiting", func() bool { return time.Now().After(end) })
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// refresh reads the logs and the store, notes partitions changing hands
// and redraws the live screen.
func (r *runner) refresh(ctx context.Context) error {
	for i, p := range r.procs {
		select {
		case <-p.Done():
			if !p.Ending() {
				return fmt.Errorf("%w (its log: %s)", p.Wait(ctx), p.LogPath)
			}
		default:
		}
		entries, err := r.readers[i].Next()
		if err != nil {
			return err
		}
		for _, e := range entries {
			r.noteEntry(p.ID, e)
		}
		r.entries[i] = append(r.entries[i], entries...)
	}
	for i := range r.o.Partitions {
		id := strconv.Itoa(i)
		r.last[id] = r.hub.LastSequenceNumber(id)
	}
	records, err := r.store.Records(ctx, boltstore.Scope{})
	if err != nil {
		return err
	}
	r.records = records
	if r.o.Live {
		return r.draw()
	}
	return nil
}

// noteEntry notes a processor's first event of a partition, which tells
// where it resumed, and partitions lost to another processor.
func (r *runner) noteEntry(owner string, e Entry) {
	key := owner + "/" + e.Partition
	switch e.Kind {
	case KindOpen:
		r.starting[key] = true
	case KindEvent:
		if !r.starting[key] {
			return
		}
		delete(r.starting, key)
		from := " (no checkpoint yet)"
		if e.Seq > 0 {
			from = fmt.Sprintf(", after the checkpoint at %d", e.Seq-1)
			if prev := r.lastOwner[e.Partition]; prev != "" && prev != owner {
				from = fmt.Sprintf(", after %s's checkpoint at %d", prev, e.Seq-1)
			}
		}
		r.notef("%s took partition %s at event %d%s", owner, e.Partition, e.Seq, from)
		r.lastOwner[e.Partition] = owner
	case KindLost:
		r.notef("%s lost partition %s to another processor", owner, e.Partition)
	case KindError, KindCheckpointFailed:
		r.notef("%s, partition %s: %s", owner, e.Partition, e.Error)
	}
}

// owners returns the partitions each processor holds, by the store.
func (r *runner) owners() map[string][]string {
	var owns []azeventhubs.Ownership
	for _, rec := range r.records {
		if rec.Type == boltstore.RecordOwnership {
			owns = append(owns, azeventhubs.Ownership{PartitionID: rec.PartitionID, OwnerID: rec.OwnerID, LastModifiedTime: rec.LastModifiedTime})
		}
	}
	return Owners(owns, time.Now(), demoExpiration)
}

// consumed reports whether every partition's checkpoint is at its last
// event.
func (r *runner) consumed() bool {
	cps := map[string]int64{}
	for _, rec := range r.records {
		if rec.Type == boltstore.RecordCheckpoint && rec.SequenceNumber != nil {
			cps[rec.PartitionID] = *rec.SequenceNumber
		}
	}
	for p, last := range r.last {
		if cp, ok := cps[p]; last >= 0 && (!ok || cp != last) {
			return false
		}
	}
	return true
}

// shares formats how many partitions each processor holds.
func (r *runner) shares() string {
	owners := r.owners()
	var parts []string
	for _, p := range r.procs {
		if n := len(owners[p.ID]); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p.ID, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// notef records what happened, printing it at once unless the screen is
// live.
func (r *runner) notef(format string, args ...any) {
	line := fmt.Sprintf("%6.1fs  %s", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
	r.notes = append(r.notes, line)
	if !r.o.Live {
		fmt.Fprintln(r.o.Out, line)
	}
}

// table shows the table now: it prints it, or redraws the live screen.
func (r *runner) table() {
	if r.o.Live {
		if err := r.draw(); err != nil {
			fmt.Fprintf(r.o.Out, "%v\n", err)
		}
		return
	}
	var b bytes.Buffer
	b.WriteByte('\n')
	if err := r.o.Table(&b, r.snapshot()); err != nil {
		fmt.Fprintf(&b, "table: %v\n", err)
	}
	b.WriteByte('\n')
	r.o.Out.Write(b.Bytes())
}

func (r *runner) snapshot() Snapshot {
	return Snapshot{Records: r.records, Last: r.last, Now: time.Now(), Expiry: demoExpiration}
}

// liveNotes is how many of the latest notes the live screen shows: with
// the default 12 partitions, the screen fits a terminal of 80 by 24.
const liveNotes = 5

// draw redraws the live screen: the latest notes, the counters and the
// table. Like ehcheckpoints watch, it clears the screen each time, which
// stays correct however the terminal wraps long lines.
func (r *runner) draw() error {
	var b bytes.Buffer
	b.WriteString("\x1b[H\x1b[2J")
	fmt.Fprintf(&b, "ehcheckpoints demo: %d processor processes share one store file\n", r.o.Processors)
	notes := r.notes[max(0, len(r.notes)-liveNotes):]
	for _, n := range notes {
		b.WriteString(n + "\n")
	}
	c := r.count()
	fmt.Fprintf(&b, "\n  published %d/%d   processed %d   twice %d   checkpoints %d\n\n",
		r.published.Load(), r.o.Events, c.deliveries, c.deliveries-c.unique, c.checkpoints)
	if err := r.o.Table(&b, r.snapshot()); err != nil {
		fmt.Fprintf(&b, "table: %v\n", err)
	}
	out := b.Bytes()
	if r.o.Color {
		out = r.colorize(out)
	}
	_, err := r.o.Out.Write(out)
	return err
}

var procName = regexp.MustCompile(`proc-\d+`)

// colorize gives each processor's name its color, and a killed one red.
func (r *runner) colorize(b []byte) []byte {
	palette := []string{"32", "36", "33", "35", "34", "92", "96", "93", "95", "94"}
	return procName.ReplaceAllFunc(b, func(name []byte) []byte {
		i := slices.IndexFunc(r.procs, func(p *Process) bool { return p.ID == string(name) })
		if i < 0 {
			return name
		}
		color := palette[i%len(palette)]
		if r.procs[i].Killed() {
			color = "31;9" // red, struck through
		}
		return []byte("\x1b[" + color + "m" + string(name) + "\x1b[0m")
	})
}

// counts are what the processors have done so far.
type counts struct {
	unique, deliveries, checkpoints int
	firstCheckpoint, lastCheckpoint time.Time
}

func (r *runner) count() counts {
	var c counts
	seen := map[string]map[int64]bool{}
	for _, entries := range r.entries {
		for _, e := range entries {
			switch e.Kind {
			case KindEvent:
				if seen[e.Partition] == nil {
					seen[e.Partition] = map[int64]bool{}
				}
				c.deliveries++
				if !seen[e.Partition][e.Seq] {
					seen[e.Partition][e.Seq] = true
					c.unique++
				}
			case KindCheckpointed:
				c.checkpoints++
				if c.firstCheckpoint.IsZero() || e.Time.Before(c.firstCheckpoint) {
					c.firstCheckpoint = e.Time
				}
				if e.Time.After(c.lastCheckpoint) {
					c.lastCheckpoint = e.Time
				}
			}
		}
	}
	return c
}

// percentile returns the p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p/100*float64(len(sorted))))]
}

// summary prints the figures of the run.
func (r *runner) summary(balanced, rebalance time.Duration, victim *Process, held, survivors []string) error {
	c := r.count()
	var all []*Session
	for i, p := range r.procs {
		all = append(all, Sessions(p.ID, r.entries[i])...)
	}
	var latencies []time.Duration
	for _, s := range all {
		latencies = append(latencies, s.CheckpointLatencies...)
	}
	slices.Sort(latencies)
	twice, onVictim, worst := 0, 0, 0
	for p, ss := range ByPartition(all) {
		d := Duplicates(ss)
		twice += d
		if slices.Contains(held, p) {
			onVictim += d
		}
		worst = max(worst, d)
	}
	span := c.lastCheckpoint.Sub(c.firstCheckpoint)
	rate := 0.0
	if span > 0 {
		rate = float64(c.checkpoints) / span.Seconds()
	}
	w := r.o.Out
	fmt.Fprintf(w, "\nSummary (%s)\n", time.Since(r.start).Round(100*time.Millisecond))
	fmt.Fprintf(w, "  events       %d published, %d processed, %d of them twice\n", r.o.Events, c.unique, twice)
	switch {
	case twice == 0:
		fmt.Fprintf(w, "               none twice: %s had checkpointed all it processed\n", victim.ID)
	case onVictim == twice:
		fmt.Fprintf(w, "               all on %s's partitions, after its last checkpoints\n", victim.ID)
		fmt.Fprintf(w, "               (at most N = %d per partition; here at most %d)\n", DefaultCheckpointEvery, worst)
	default:
		fmt.Fprintf(w, "               %d on %s's partitions, %d on partitions that changed hands while balancing\n",
			onVictim, victim.ID, twice-onVictim)
	}
	fmt.Fprintf(w, "  balancing    %d processors balanced %d partitions in %s\n", r.o.Processors, r.o.Partitions, balanced.Round(100*time.Millisecond))
	fmt.Fprintf(w, "  takeover     %s's %d partitions owned by %s %s after the SIGKILL (expiration %s)\n",
		victim.ID, len(held), list(survivors), rebalance.Round(100*time.Millisecond), demoExpiration)
	fmt.Fprintf(w, "  checkpoints  %d written to one file by %d processes in %s, %.0f/s\n",
		c.checkpoints, r.o.Processors, span.Round(100*time.Millisecond), rate)
	fmt.Fprintf(w, "               each took %s (median), %s (99th percentile), %s (most)\n",
		roundLatency(percentile(latencies, 50)), roundLatency(percentile(latencies, 99)), roundLatency(percentile(latencies, 100)))
	if c.unique != r.o.Events {
		return fmt.Errorf("%d of %d events processed", c.unique, r.o.Events)
	}
	if !r.o.Keep {
		fmt.Fprintf(w, "  store file   deleted (--keep keeps it)\n")
		return nil
	}
	fmt.Fprintf(w, "  store file   %s\n", r.path)
	fmt.Fprintf(w, "  logs         %s (JSON lines: what each processor did)\n", filepath.Join(r.dir, "proc-*.log"))
	fmt.Fprintf(w, "\nInspect the store file with:\n")
	for _, verb := range []string{"ls", "show", "export"} {
		fmt.Fprintf(w, "  %s %s %s\n", r.o.CLI, verb, shellQuote(r.path))
	}
	return nil
}

// roundLatency rounds d to a readable precision.
func roundLatency(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Microsecond)
}

// cleanup stops the processes still running: gracefully, then by force.
func (r *runner) cleanup() {
	for _, p := range r.procs {
		_ = p.Stop()
	}
	timeout := time.After(5 * time.Second)
	for _, p := range r.procs {
		select {
		case <-p.Done():
		case <-timeout:
			_ = p.Kill()
			<-p.Done()
		}
	}
}

// list formats names as "a, b and c".
func list(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// shellQuote quotes s for a POSIX shell if it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+:", c))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
