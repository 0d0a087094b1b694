package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// Coordinates of the crash test's records.
const (
	relCrashNS    = "relcrash.servicebus.windows.net"
	relCrashHub   = "hub"
	relCrashGroup = "$Default"
	// relCrashWriters goroutines each own relCrashPartitions checkpoint
	// partitions and one two-partition claim.
	relCrashWriters    = 4
	relCrashPartitions = 3
)

// relCrashOwner is the owner id of the n-th claim of writer g. The counter
// in it tells the parent which claim the stored record comes from.
func relCrashOwner(g, n int) string { return fmt.Sprintf("writer%d-claim%d", g, n) }

// relCrashClaimPartitions are the two partitions writer g claims together.
func relCrashClaimPartitions(g int) [2]string {
	return [2]string{fmt.Sprintf("own-%d-a", g), fmt.Sprintf("own-%d-b", g)}
}

// relCrashState is what the store holds for the crash test: per checkpoint
// partition the sequence number, per writer the claim counter and the
// etags of its two partitions.
type relCrashState struct {
	seq    map[string]int64
	claim  map[int]int
	etags  map[int][2]string
	exists map[int]bool
}

func relNewCrashState() relCrashState {
	return relCrashState{seq: map[string]int64{}, claim: map[int]int{}, etags: map[int][2]string{}, exists: map[int]bool{}}
}

// TestReliabilityCrash SIGKILLs a writer process at random moments, dozens
// of times, and checks after each kill that every acknowledged checkpoint
// and claim is in the file, that at most the one write in flight per
// goroutine went further, that a two-partition claim is all or nothing,
// and that the file passes Check.
//
// Each writer goroutine owns its partitions and writes them in sequence,
// so after a kill a checkpoint holds exactly the last acknowledged
// sequence number or the next one (in flight when the process died, and
// committed but not yet reported), and a claim is the last acknowledged
// one or the next.
//
// A SIGKILL loses nothing the kernel has accepted, so this shows that a
// write is in the file once the call returns and that a kill mid-commit
// leaves a consistent file; surviving power loss also needs the fsyncs,
// which no process-level test can observe.
func TestReliabilityCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	kills := 100
	if testing.Short() {
		kills = 20
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	stored := relNewCrashState()
	var acked, ackedClaims, inFlightCommitted, earlyKills int
	readyTime := 300 * time.Millisecond // updated from measurements
	for run := range kills {
		// Most kills land while writes run; every fourth lands at a random
		// moment of the writer's start, which includes Open (and, in the
		// first run, creating the file).
		early := run%4 == 3
		cmd := relChildCmd("crash-writer", path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := relReadLines(stdout)
		if early {
			earlyKills++
			time.Sleep(time.Duration(rng.Int64N(int64(readyTime))))
		} else {
			// A writer that never gets ready is killed by the timer, and
			// the missing "ready" line fails the test below.
			timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
			ok := lines.waitFor(func(l string) bool { return l == "ready" })
			timer.Stop()
			if !ok {
				cmd.Wait()
				t.Fatalf("run %d: writer did not start:\n%s%s", run, lines.other.String(), relHead(stderr.Bytes(), 4000))
			}
			readyTime = time.Since(started)
			time.Sleep(time.Duration(rng.Int64N(int64(150 * time.Millisecond))))
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		out := lines.all()
		_ = cmd.Wait() // "signal: killed", or an exit status if it failed first
		if bytes.Contains(stderr.Bytes(), []byte("DATA RACE")) || bytes.Contains(stderr.Bytes(), []byte("panic")) {
			t.Fatalf("run %d: writer failed:\n%s", run, relHead(stderr.Bytes(), 4000))
		}

		// What the writer acknowledged before it died.
		ack := relNewCrashState()
		for _, l := range out {
			f := strings.Fields(l)
			switch f[0] {
			case "cp":
				seq, _ := strconv.ParseInt(f[2], 10, 64)
				ack.seq[f[1]] = max(ack.seq[f[1]], seq)
				acked++
			case "own":
				g, _ := strconv.Atoi(f[1])
				n, _ := strconv.Atoi(f[2])
				if n > ack.claim[g] {
					ack.claim[g], ack.etags[g], ack.exists[g] = n, [2]string{f[3], f[4]}, true
				}
				ackedClaims++
			case "ready":
			default:
				t.Fatalf("run %d: writer reported %q", run, l)
			}
		}

		got := relCrashRead(t, path)
		for g := range relCrashWriters {
			for j := range relCrashPartitions {
				p := strconv.Itoa(g*relCrashPartitions + j)
				// The writer starts from what is stored, so the lowest
				// acceptable value is the last acknowledged one, or what
				// the previous check found when nothing was acknowledged.
				low := max(stored.seq[p], ack.seq[p])
				switch got.seq[p] {
				case low:
				case low + 1:
					inFlightCommitted++
				default:
					t.Fatalf("run %d: partition %s holds sequence number %d; last acknowledged %d (stored before the run: %d)",
						run, p, got.seq[p], ack.seq[p], stored.seq[p])
				}
			}
			low, lowEtags, lowExists := stored.claim[g], stored.etags[g], stored.exists[g]
			if ack.exists[g] && ack.claim[g] >= low {
				low, lowEtags, lowExists = ack.claim[g], ack.etags[g], true
			}
			switch {
			case got.claim[g] == low && got.exists[g] == lowExists && got.etags[g] == lowEtags:
			case got.claim[g] == low+1 && got.exists[g] && got.etags[g][0] != lowEtags[0] && got.etags[g][1] != lowEtags[1]:
				inFlightCommitted++
			default:
				t.Fatalf("run %d: writer %d's claim is #%d with etags %v (exists %v); last acknowledged #%d with %v",
					run, g, got.claim[g], got.etags[g], got.exists[g], low, lowEtags)
			}
		}
		stored = got
	}
	if acked < kills || ackedClaims < kills/2 {
		t.Fatalf("only %d checkpoints and %d claims acknowledged over %d runs: the writer hardly ran", acked, ackedClaims, kills)
	}
	t.Logf("%d kills (%d during start-up); %d acknowledged checkpoints and %d acknowledged two-partition claims, none lost; "+
		"%d writes in flight at a kill were found committed; the file passed Check after every kill",
		kills, earlyKills, acked, ackedClaims, inFlightCommitted)
}

// relCrashRead opens the store after a kill, checks it, and returns its
// state.
func relCrashRead(t *testing.T, path string) relCrashState {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return relNewCrashState() // killed before the file was created
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open after a kill: %v", err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check after a kill: %v", err)
	}
	return relCrashStoreState(t, s)
}

// relCrashStoreState reads the crash test's records. A claim's two
// partitions must carry the same claim: they were written in one
// transaction.
func relCrashStoreState(t *testing.T, s *Store) relCrashState {
	t.Helper()
	ctx := context.Background()
	st := relNewCrashState()
	cps, err := s.ListCheckpoints(ctx, relCrashNS, relCrashHub, relCrashGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range cps {
		if cp.SequenceNumber == nil || cp.Offset == nil || *cp.Offset != strconv.FormatInt(*cp.SequenceNumber, 10) {
			t.Fatalf("checkpoint %s: offset %v and sequence number %v do not belong together", cp.PartitionID, relShowPtr(cp.Offset), relShowPtr(cp.SequenceNumber))
		}
		st.seq[cp.PartitionID] = *cp.SequenceNumber
	}
	owns, err := s.ListOwnership(ctx, relCrashNS, relCrashHub, relCrashGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	byPartition := map[string]azeventhubs.Ownership{}
	for _, o := range owns {
		byPartition[o.PartitionID] = o
	}
	for g := range relCrashWriters {
		parts := relCrashClaimPartitions(g)
		a, okA := byPartition[parts[0]]
		b, okB := byPartition[parts[1]]
		if okA != okB || okA && a.OwnerID != b.OwnerID {
			t.Fatalf("writer %d's claim is half applied: %+v / %+v", g, a, b)
		}
		if !okA {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(a.OwnerID, "writer%d-claim%d", new(int), &n); err != nil || a.OwnerID != relCrashOwner(g, n) {
			t.Fatalf("writer %d's partitions have owner %q", g, a.OwnerID)
		}
		st.claim[g], st.etags[g], st.exists[g] = n, [2]string{string(*a.ETag), string(*b.ETag)}, true
	}
	return st
}

// relCrashWriter is the child side: it continues from what the store
// holds and writes until it is killed, printing each acknowledged write.
func relCrashWriter(t *testing.T, args []string) {
	ctx := context.Background()
	s, err := Open(args[0], nil)
	if err != nil {
		relPrintf("error Open: " + strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	st := relCrashStoreState(t, s)
	relPrintf("ready")
	fail := func(what string, err error) {
		relPrintf(fmt.Sprintf("error %s: %v", what, strings.ReplaceAll(fmt.Sprint(err), "\n", " ")))
		os.Exit(1)
	}
	for g := range relCrashWriters {
		go func() {
			parts := relCrashClaimPartitions(g)
			claim, etags, exists := st.claim[g], st.etags[g], st.exists[g]
			// Each goroutine keeps its own sequence numbers.
			last := make([]int64, relCrashPartitions)
			for j := range last {
				last[j] = st.seq[strconv.Itoa(g*relCrashPartitions+j)]
			}
			for {
				for j := range relCrashPartitions {
					p := strconv.Itoa(g*relCrashPartitions + j)
					seq := last[j] + 1
					offset := strconv.FormatInt(seq, 10)
					if err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: relCrashNS, EventHubName: relCrashHub,
						ConsumerGroup: relCrashGroup, PartitionID: p, Offset: &offset, SequenceNumber: &seq}, nil); err != nil {
						fail("SetCheckpoint", err)
					}
					last[j] = seq
					relPrintf(fmt.Sprintf("cp %s %d", p, seq))
				}
				claims := make([]azeventhubs.Ownership, 2)
				for i, p := range parts {
					claims[i] = azeventhubs.Ownership{FullyQualifiedNamespace: relCrashNS, EventHubName: relCrashHub, ConsumerGroup: relCrashGroup,
						PartitionID: p, OwnerID: relCrashOwner(g, claim+1)}
					if exists {
						claims[i].ETag = relPtr(azcore.ETag(etags[i]))
					}
				}
				won, err := s.ClaimOwnership(ctx, claims, nil)
				if err != nil {
					fail("ClaimOwnership", err)
				}
				if len(won) != 2 {
					fail("ClaimOwnership", fmt.Errorf("won %d of 2 claims that renew with the current etags", len(won)))
				}
				claim, etags, exists = claim+1, [2]string{string(*won[0].ETag), string(*won[1].ETag)}, true
				relPrintf(fmt.Sprintf("own %d %d %s %s", g, claim, etags[0], etags[1]))
			}
		}()
	}
	select {} // until killed
}

// relPtr returns a pointer to a copy of v.
func relPtr[T any](v T) *T { return &v }
