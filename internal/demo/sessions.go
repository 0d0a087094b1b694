package demo

import (
	"cmp"
	"slices"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// Session is what one processor did with one partition, from receiving
// its partition client to closing or losing it.
type Session struct {
	Owner, Partition string
	// Opened and Ended are when the session began and ended; Ended is zero
	// if the process was killed first.
	Opened, Ended time.Time
	// End is how the session ended: KindClose, KindLost or KindError, or
	// "" if the log stops first because the process was killed.
	End Kind
	// Events are the sequence numbers processed, in order.
	Events []int64
	// Checkpoints are the sequence numbers of the checkpoints requested
	// and Checkpointed those confirmed stored, in order.
	Checkpoints, Checkpointed []int64
	// CheckpointLatencies are how long each confirmed checkpoint took.
	CheckpointLatencies []time.Duration
}

// LastCheckpointed returns the session's last stored checkpoint, or -1.
func (s *Session) LastCheckpointed() int64 {
	if len(s.Checkpointed) == 0 {
		return -1
	}
	return s.Checkpointed[len(s.Checkpointed)-1]
}

// Sessions splits the log of the processor owner into sessions, ordered by
// the time they opened.
func Sessions(owner string, entries []Entry) []*Session {
	var all []*Session
	open := map[string]*Session{}
	requested := map[string]time.Time{} // pending checkpoints, by partition
	for _, e := range entries {
		s := open[e.Partition]
		switch e.Kind {
		case KindOpen:
			s = &Session{Owner: owner, Partition: e.Partition, Opened: e.Time}
			open[e.Partition] = s
			all = append(all, s)
		case KindEvent:
			s.Events = append(s.Events, e.Seq)
		case KindCheckpoint:
			s.Checkpoints = append(s.Checkpoints, e.Seq)
			requested[e.Partition] = e.Time
		case KindCheckpointed:
			s.Checkpointed = append(s.Checkpointed, e.Seq)
			s.CheckpointLatencies = append(s.CheckpointLatencies, e.Time.Sub(requested[e.Partition]))
		case KindClose, KindLost, KindError:
			s.End, s.Ended = e.Kind, e.Time
			delete(open, e.Partition)
		}
	}
	return all
}

// ByPartition groups sessions by partition, each group ordered by the
// time the sessions opened.
func ByPartition(sessions []*Session) map[string][]*Session {
	m := map[string][]*Session{}
	for _, s := range sessions {
		m[s.Partition] = append(m[s.Partition], s)
	}
	for _, ss := range m {
		slices.SortStableFunc(ss, func(a, b *Session) int { return a.Opened.Compare(b.Opened) })
	}
	return m
}

// Duplicates counts the events of a partition's sessions processed more
// than once.
func Duplicates(sessions []*Session) int {
	seen := map[int64]bool{}
	n := 0
	for _, s := range sessions {
		for _, seq := range s.Events {
			if seen[seq] {
				n++
			}
			seen[seq] = true
		}
	}
	return n
}

// Owners returns the partitions that each owner holds: those with its
// OwnerID whose ownership is younger than expiry. Relinquished and expired
// partitions are left out, as a processor's load balancer sees them.
func Owners(ownerships []azeventhubs.Ownership, now time.Time, expiry time.Duration) map[string][]string {
	owners := map[string][]string{}
	for _, o := range ownerships {
		if o.OwnerID != "" && now.Sub(o.LastModifiedTime) < expiry {
			owners[o.OwnerID] = append(owners[o.OwnerID], o.PartitionID)
		}
	}
	for _, ps := range owners {
		slices.SortFunc(ps, comparePartitions)
	}
	return owners
}

// Balanced reports whether exactly the processors ids hold all partitions,
// each its share: partitions/len(ids), or one more.
func Balanced(owners map[string][]string, ids []string, partitions int) bool {
	if len(owners) != len(ids) {
		return false
	}
	share, total := partitions/len(ids), 0
	for _, id := range ids {
		n := len(owners[id])
		if n < share || n > share+1 {
			return false
		}
		total += n
	}
	return total == partitions
}

// comparePartitions orders numeric partition ids by value.
func comparePartitions(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}
