// Package e2e runs unmodified azeventhubs Processors, each in its own
// process and talking AMQP to the in-process test double, on one boltstore
// file, and checks from their logs and the file what they processed,
// checkpointed and owned.
package e2e

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehcheckpoints/boltstore/internal/demo"
)

// TestEndToEnd shares one store file among three processor processes,
// SIGKILLs one once they are balanced, and checks that the two survivors
// take over its partitions from its checkpoints and finish the work.
func TestEndToEnd(t *testing.T) {
	const partitions = 32
	c := newCluster(t, partitions)
	c.publish(100) // 3,200 events before any processor starts

	procs := c.start("proc-1", "proc-2", "proc-3")
	took := c.waitBalanced(30*time.Second, "proc-1", "proc-2", "proc-3")
	t.Logf("three processors balanced in %s: %s", took.Round(time.Millisecond), shares(c.owners()))

	// Kill one while events flow, so that it dies with events processed
	// after its last checkpoints.
	stopStream := c.stream()
	time.Sleep(time.Second)
	victim, survivors := procs[1], []*demo.Process{procs[0], procs[2]}
	victimPartitions := c.owners()[victim.ID]
	if n := len(victimPartitions); n < 10 || n > 11 {
		t.Fatalf("%s holds %d partitions just before the kill, want 10 or 11", victim.ID, n)
	}
	killedAt := time.Now()
	c.kill(victim)
	took = c.waitBalanced(30*time.Second, "proc-1", "proc-3")
	t.Logf("%s killed; the survivors took over its %d partitions in %s (expiration %s): %s",
		victim.ID, len(victimPartitions), took.Round(time.Millisecond), expiration, shares(c.owners()))
	time.Sleep(500 * time.Millisecond)
	stopStream()
	c.publish(10)
	c.waitConsumed(30 * time.Second)

	owners := c.owners()
	if len(owners["proc-1"]) != 16 || len(owners["proc-3"]) != 16 {
		t.Errorf("final balance %s, want 16/16", shares(owners))
	}
	last := c.lastSequenceNumbers()
	if cps := c.checkpoints(); !maps.Equal(cps, last) {
		t.Errorf("checkpoints %v, want the last sequence numbers %v", cps, last)
	}

	c.stop(survivors...)
	c.checkRelinquished()
	if cps := c.checkpoints(); !maps.Equal(cps, last) {
		t.Errorf("checkpoints after shutdown %v, want %v", cps, last)
	}

	sessions := c.sessions(c.procs...)
	events, deliveries := c.checkProcessed(sessions, last)
	dups := checkDuplicates(t, sessions, map[string]bool{logName(victim): true})
	for p, ss := range sessions {
		for _, s := range ss {
			if s.End == demo.KindLost && s.Ended.After(killedAt) {
				t.Errorf("partition %s: %s lost it at %s, after the kill: a live owner was robbed",
					p, s.Owner, s.Ended.Format(time.StampMicro))
			}
		}
	}
	t.Logf("%d events, %d processed, %d twice: %s", events, deliveries, deliveries-events, dups)
	t.Logf("checkpoint latency: %s", latencies(sessions))
}

// TestEndToEndRestart restarts all processors on the same file, after a
// graceful stop and after all of them were killed, and checks that they
// resume from the checkpoints rather than from the start.
func TestEndToEndRestart(t *testing.T) {
	const partitions = 32
	c := newCluster(t, partitions)
	ids := []string{"proc-1", "proc-2", "proc-3"}

	// Run 1 processes everything and stops gracefully, so every partition
	// is checkpointed at its last event.
	c.publish(100)
	run1 := c.start(ids...)
	c.waitConsumed(30 * time.Second)
	c.stop(run1...)
	c.checkRelinquished()
	stopped := c.checkpoints()

	// Run 2 must start right after those checkpoints.
	c.publish(50)
	run2 := c.start(ids...)
	c.waitConsumed(30 * time.Second)
	for p, ss := range c.sessions(run2...) {
		if first := firstEvent(ss); first != stopped[p]+1 {
			t.Errorf("partition %s: run 2 started at %d, want %d, right after the checkpoint", p, first, stopped[p]+1)
		}
		for _, s := range ss {
			if slices.ContainsFunc(s.Events, func(seq int64) bool { return seq <= stopped[p] }) {
				t.Errorf("partition %s: %s processed events at or before the checkpoint %d again", p, s.Owner, stopped[p])
			}
		}
	}

	// All of run 2 is killed while events flow.
	stopStream := c.stream()
	time.Sleep(time.Second)
	c.kill(run2...)
	stopStream()
	crashed := c.checkpoints()
	sessions2 := c.sessions(run2...)
	for p, ss := range sessions2 {
		confirmed, requested := int64(-1), int64(-1)
		for _, s := range ss {
			confirmed = max(confirmed, s.LastCheckpointed())
			if n := len(s.Checkpoints); n > 0 {
				requested = max(requested, s.Checkpoints[n-1])
			}
		}
		if crashed[p] < confirmed || crashed[p] > requested {
			t.Errorf("partition %s: stored checkpoint %d after the crash, want between the last confirmed %d and the last requested %d",
				p, crashed[p], confirmed, requested)
		}
	}

	// Run 3 restarts with the same owner ids, as restarted hosts would,
	// and must resume exactly at the stored checkpoints.
	c.publish(10)
	run3 := c.start(ids...)
	c.waitConsumed(30 * time.Second)
	reprocessed := 0
	for p, ss := range c.sessions(run3...) {
		if first := firstEvent(ss); first != crashed[p]+1 {
			t.Errorf("partition %s: run 3 started at %d, want %d, right after the stored checkpoint", p, first, crashed[p]+1)
		}
		if n := lastEvent(sessions2[p]) - crashed[p]; n > checkpointEvery {
			t.Errorf("partition %s: %d events processed again after the crash, more than N = %d", p, n, checkpointEvery)
		} else {
			reprocessed += int(max(n, 0))
		}
	}
	c.stop(run3...)
	c.checkRelinquished()
	last := c.lastSequenceNumbers()
	sessions := c.sessions(c.procs...)
	events, deliveries := c.checkProcessed(sessions, last)
	killed := map[string]bool{}
	for _, p := range run2 {
		killed[logName(p)] = true
	}
	checkDuplicates(t, sessions, killed)
	t.Logf("%d events, %d processed; %d processed again after the crash (at most N = %d per partition)",
		events, deliveries, reprocessed, checkpointEvery)
	t.Logf("checkpoint latency: %s", latencies(sessions))
}

// lastSequenceNumbers returns each partition's last sequence number.
func (c *cluster) lastSequenceNumbers() map[string]int64 {
	m := map[string]int64{}
	for _, p := range c.partitions {
		m[p] = c.hub.LastSequenceNumber(p)
	}
	return m
}

// checkRelinquished checks that no partition has an owner: processors
// relinquish their ownerships when they stop.
func (c *cluster) checkRelinquished() {
	c.t.Helper()
	owns := c.ownerships()
	if len(owns) != len(c.partitions) {
		c.t.Errorf("%d ownerships, want %d", len(owns), len(c.partitions))
	}
	for _, o := range owns {
		if o.OwnerID != "" {
			c.t.Errorf("partition %s: owner %q after graceful shutdown, want relinquished (empty)", o.PartitionID, o.OwnerID)
		}
	}
}

// checkProcessed checks that every event up to last was processed at
// least once, and that each session processed consecutive events. It
// returns the number of events and of times events were processed.
func (c *cluster) checkProcessed(sessions map[string][]*demo.Session, last map[string]int64) (events, deliveries int) {
	c.t.Helper()
	for _, p := range c.partitions {
		seen := make([]bool, last[p]+1)
		for _, s := range sessions[p] {
			for i, seq := range s.Events {
				if i > 0 && seq != s.Events[i-1]+1 {
					c.t.Errorf("partition %s: %s processed %d after %d", p, s.Owner, seq, s.Events[i-1])
				}
				if seq < 0 || seq > last[p] {
					c.t.Errorf("partition %s: %s processed %d; the last event is %d", p, s.Owner, seq, last[p])
					continue
				}
				seen[seq] = true
				deliveries++
			}
		}
		if i := slices.Index(seen, false); i >= 0 {
			c.t.Errorf("partition %s: event %d never processed", p, i)
		}
		events += len(seen)
	}
	return events, deliveries
}

// checkDuplicates checks that every event processed twice was first
// processed by a processor that then died or lost the partition. For the
// killed processors (killed holds the names of their logs) it
// checks what the store promises: the new owner starts after the last
// checkpoint the dead one stored, so at most N events of a partition are
// processed again, and all of them after that checkpoint. A processor that
// lost a partition to a live one (while balancing) may have processed more
// past its checkpoint; those repeats are reported, not bounded. It returns
// a description of the repeats.
func checkDuplicates(t *testing.T, sessions map[string][]*demo.Session, killed map[string]bool) string {
	t.Helper()
	afterKill, afterSteal := 0, 0
	for p, ss := range sessions {
		firstBy := map[int64]*demo.Session{}
		again := map[*demo.Session][]int64{}
		for _, s := range ss {
			for _, seq := range s.Events {
				if e, ok := firstBy[seq]; ok {
					again[e] = append(again[e], seq)
				} else {
					firstBy[seq] = s
				}
			}
		}
		for e, seqs := range again {
			switch {
			case killed[e.Owner] && e.End == "":
				floor := e.Events[0] - 1 // where it started: a checkpoint
				if cp := e.LastCheckpointed(); cp >= 0 {
					floor = cp
				}
				if len(seqs) > checkpointEvery {
					t.Errorf("partition %s: %d events processed again after %s was killed, more than N = %d", p, len(seqs), e.Owner, checkpointEvery)
				}
				if slices.Min(seqs) <= floor {
					t.Errorf("partition %s: event %d processed again, at or before %s's last checkpoint %d", p, slices.Min(seqs), e.Owner, floor)
				}
				afterKill += len(seqs)
			case e.End == demo.KindLost:
				t.Logf("partition %s: %d events processed again after %s lost it while balancing", p, len(seqs), e.Owner)
				afterSteal += len(seqs)
			default:
				t.Errorf("partition %s: events %v processed again after %s's session ended with %q", p, seqs, e.Owner, e.End)
			}
		}
	}
	return fmt.Sprintf("%d after the kill (at most N = %d per partition), %d after steals between live processors", afterKill, checkpointEvery, afterSteal)
}

// latencies describes how long the processors' checkpoints took, from
// request to confirmation, for the test's log: with several processes on
// one file, this is where waiting for the file shows.
func latencies(sessions map[string][]*demo.Session) string {
	var all []time.Duration
	for _, ss := range sessions {
		for _, s := range ss {
			all = append(all, s.CheckpointLatencies...)
		}
	}
	if len(all) == 0 {
		return "no checkpoints"
	}
	slices.Sort(all)
	at := func(q float64) time.Duration {
		return all[min(len(all)-1, int(q*float64(len(all))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("%d checkpoints, median %s, 99th percentile %s, most %s", len(all), at(0.5), at(0.99), all[len(all)-1].Round(10*time.Microsecond))
}

// firstEvent returns the first event that sessions processed, or -1.
func firstEvent(sessions []*demo.Session) int64 {
	for _, s := range sessions {
		if len(s.Events) > 0 {
			return s.Events[0]
		}
	}
	return -1
}

// lastEvent returns the highest event that sessions processed, or -1.
func lastEvent(sessions []*demo.Session) int64 {
	last := int64(-1)
	for _, s := range sessions {
		if n := len(s.Events); n > 0 {
			last = max(last, s.Events[n-1])
		}
	}
	return last
}

// logName names a process's sessions: the base name of its log.
func logName(p *demo.Process) string { return filepath.Base(p.LogPath) }

// shares formats how many partitions each owner holds: "proc-1 11, proc-2 11".
func shares(owners map[string][]string) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(owners)) {
		parts = append(parts, fmt.Sprintf("%s %d", id, len(owners[id])))
	}
	return strings.Join(parts, ", ")
}
