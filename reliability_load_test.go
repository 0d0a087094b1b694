package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/anishathalye/porcupine"
	"golang.org/x/sys/unix"
)

const (
	relLoadNS         = "relload.servicebus.windows.net"
	relLoadHub        = "hub"
	relLoadGroup      = "$Default"
	relLoadProcesses  = 3
	relLoadGoroutines = 32
	relLoadPartitions = 16
)

// relMono reads CLOCK_MONOTONIC, which all processes on a host share, so
// the histories of the three load processes can be merged by time.
func relMono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// relLoadOp is one operation of the load history on one register: the
// ownership of a partition ("own/P") or its checkpoint ("cp/P").
//
//	claim: Expected etag ("" = create only), Owner -> Won, ETag (new)
//	list:  -> ETag, Owner as listed ("" = no record)
//	cpset: Value
//	cpget: -> Value as listed ("" = no checkpoint)
type relLoadOp struct {
	Kind     string `json:"k"`
	Key      string `json:"p"`
	Expected string `json:"x,omitempty"`
	Owner    string `json:"o,omitempty"`
	Won      bool   `json:"w,omitempty"`
	ETag     string `json:"e,omitempty"`
	Value    string `json:"v,omitempty"`
	Client   int    `json:"c"`
	Call     int64  `json:"t0"`
	Return   int64  `json:"t1"`
}

// relRegister is the model state of one register: the etag and owner of
// an ownership record, or the value of a checkpoint in ETag.
type relRegister struct{ ETag, Owner string }

// relLoadModel is the sequential specification porcupine checks the
// history against: per register, claims succeed exactly when their
// expected etag is the current one, and reads see the current state.
var relLoadModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(relLoadOp).Key
			byKey[k] = append(byKey[k], op)
		}
		var parts [][]porcupine.Operation
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range byKey {
				if !yield(k) {
					return
				}
			}
		}) {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() any { return relRegister{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(relRegister), input.(relLoadOp), output.(relLoadOp)
		switch in.Kind {
		case "claim":
			matches := st.ETag == in.Expected // "" expects no record
			if out.Won {
				return matches, relRegister{ETag: out.ETag, Owner: in.Owner}
			}
			return !matches, st
		case "list":
			return out.ETag == st.ETag && out.Owner == st.Owner, st
		case "cpset":
			return true, relRegister{ETag: in.Value}
		case "cpget":
			return out.Value == st.ETag, st
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(relLoadOp), output.(relLoadOp)
		return fmt.Sprintf("%s %s x=%q o=%q -> won=%v e=%q v=%q", in.Kind, in.Key, in.Expected, in.Owner, out.Won, out.ETag, out.Value)
	},
}

// TestReliabilityLoad runs three processes of 32 goroutines each, claiming
// and checkpointing 16 partitions of one file for 20 seconds with default
// options, and checks from the merged history that no call failed, that
// every partition's claims form one chain (no etag was won twice, so no two
// owners at once), that the final checkpoints are acknowledged writes not
// overwritten later, and, with porcupine, that the whole history of
// claims, lists and checkpoints is linearizable.
func TestReliabilityLoad(t *testing.T) {
	duration := 20 * time.Second
	if testing.Short() {
		duration = 5 * time.Second
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "load.db")
	start := relMono() + int64(3*time.Second) // time for every process to open the store
	type child struct {
		cmd    *exec.Cmd
		lines  *relLines
		stderr *bytes.Buffer
		hist   string
	}
	var children []child
	for p := range relLoadProcesses {
		hist := filepath.Join(dir, fmt.Sprintf("history-%d.jsonl", p))
		cmd := relChildCmd("load-worker", path, strconv.Itoa(p), strconv.FormatInt(start, 10), duration.String(), hist)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		children = append(children, child{cmd: cmd, lines: relReadLines(stdout), stderr: &stderr, hist: hist})
	}
	var history []relLoadOp
	var errorsSeen int
	for p, c := range children {
		out := c.lines.all()
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("load process %d: %v\n%s%s", p, err, c.lines.other.String(), relHead(c.stderr.Bytes(), 4000))
		}
		for _, l := range out {
			if n, ok := strings.CutPrefix(l, "errors "); ok {
				e, _ := strconv.Atoi(n)
				errorsSeen += e
			}
		}
		ops, err := relReadHistory(c.hist)
		if err != nil {
			t.Fatal(err)
		}
		history = append(history, ops...)
	}
	if errorsSeen > 0 {
		t.Fatalf("%d calls failed under load", errorsSeen)
	}

	// The final state, read after every process finished, is the last
	// operation of each register.
	ctx := context.Background()
	s := openTestStore(t, path, nil)
	call := relMono()
	owns, err := s.ListOwnership(ctx, relLoadNS, relLoadHub, relLoadGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := s.ListCheckpoints(ctx, relLoadNS, relLoadHub, relLoadGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	ret := relMono()
	final := map[string]relLoadOp{}
	for p := range relLoadPartitions {
		id := strconv.Itoa(p)
		listed := relLoadOp{Kind: "list", Key: "own/" + id, Client: -1, Call: call, Return: ret}
		if i := slices.IndexFunc(owns, func(o azeventhubs.Ownership) bool { return o.PartitionID == id }); i >= 0 {
			listed.ETag, listed.Owner = string(*owns[i].ETag), owns[i].OwnerID
		}
		got := relLoadOp{Kind: "cpget", Key: "cp/" + id, Client: -1, Call: call, Return: ret}
		if i := slices.IndexFunc(cps, func(c azeventhubs.Checkpoint) bool { return c.PartitionID == id }); i >= 0 {
			got.Value = *cps[i].Offset
			if *cps[i].Offset != strconv.FormatInt(*cps[i].SequenceNumber, 10) {
				t.Fatalf("partition %s: offset %s with sequence number %d", id, *cps[i].Offset, *cps[i].SequenceNumber)
			}
		}
		final[listed.Key], final[got.Key] = listed, got
		history = append(history, listed, got)
	}

	stats := relCheckClaimChains(t, history, final)
	relCheckFinalCheckpoints(t, history, final)

	kept := relPruneForced(history)
	ops := make([]porcupine.Operation, len(kept))
	for i, op := range kept {
		ops[i] = porcupine.Operation{ClientId: op.Client + 1, Input: op, Call: op.Call, Output: op, Return: op.Return}
	}
	checkStart := time.Now()
	// The verbose check, which also records partial linearizations for a
	// visualization, takes ten times longer; it runs only to explain a
	// failure.
	switch porcupine.CheckOperationsTimeout(relLoadModel, ops, 2*time.Minute) {
	case porcupine.Ok:
	case porcupine.Illegal:
		_, info := porcupine.CheckOperationsVerbose(relLoadModel, ops, 2*time.Minute)
		// Outside t.TempDir, which goes with the test.
		file := filepath.Join(os.TempDir(), fmt.Sprintf("boltstore-linearizability-%d.html", os.Getpid()))
		if err := porcupine.VisualizePath(relLoadModel, info, file); err == nil {
			t.Logf("visualization of the illegal history: %s", file)
		}
		t.Fatal("the claim and checkpoint history is not linearizable")
	default:
		t.Fatalf("porcupine could not decide within its time limit (%d operations)", len(ops))
	}
	secs := duration.Seconds()
	t.Logf("%d processes x %d goroutines, %v: %d claims (%.0f/s; %d won, %d lost), %d handovers between owners, %d relinquishes, "+
		"%d checkpoints (%.0f/s), %d list reads; 0 errors; claim chains intact; history of %d operations linearizable "+
		"(porcupine checked the %d that race with a change of their register, %v)",
		relLoadProcesses, relLoadGoroutines, duration, stats.claims, float64(stats.claims)/secs, stats.won, stats.claims-stats.won,
		stats.handovers, stats.relinquishes, stats.cpsets, float64(stats.cpsets)/secs, stats.reads, len(history), len(ops),
		time.Since(checkStart).Round(time.Millisecond))
}

func relReadHistory(path string) ([]relLoadOp, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ops []relLoadOp
	dec := json.NewDecoder(bytes.NewReader(data))
	for dec.More() {
		var op relLoadOp
		if err := dec.Decode(&op); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

type relLoadStats struct {
	claims, won, handovers, relinquishes, cpsets, reads int
}

// relCheckClaimChains checks each partition's successful claims: each
// expected etag is won at most once (a second winner would be a second
// owner), each expected etag was issued by an earlier winner, and
// following the etags from the first claim visits every winner, in an
// order real time allows, and ends at the final record.
func relCheckClaimChains(t *testing.T, history []relLoadOp, final map[string]relLoadOp) relLoadStats {
	t.Helper()
	var st relLoadStats
	byExpected := map[string]map[string][]relLoadOp{} // key -> expected etag -> winners
	for _, op := range history {
		switch op.Kind {
		case "claim":
			st.claims++
			if !op.Won {
				continue
			}
			st.won++
			if byExpected[op.Key] == nil {
				byExpected[op.Key] = map[string][]relLoadOp{}
			}
			byExpected[op.Key][op.Expected] = append(byExpected[op.Key][op.Expected], op)
		case "cpset":
			st.cpsets++
		default:
			st.reads++
		}
	}
	issued := map[string]bool{}
	for _, byKey := range byExpected {
		for _, ws := range byKey {
			for _, w := range ws {
				if issued[w.ETag] || w.ETag == "" {
					t.Fatalf("%s: etag %q issued twice (or empty)", w.Key, w.ETag)
				}
				issued[w.ETag] = true
			}
		}
	}
	for p := range relLoadPartitions {
		key := "own/" + strconv.Itoa(p)
		winners := byExpected[key]
		for expected, ws := range winners {
			if len(ws) > 1 {
				t.Fatalf("%s: %d claims expecting etag %q won (owners %q and %q): two owners at once", key, len(ws), expected, ws[0].Owner, ws[1].Owner)
			}
		}
		n, etag, owner, previous := 0, "", "", relLoadOp{}
		for {
			ws, ok := winners[etag]
			if !ok {
				break
			}
			w := ws[0]
			if n > 0 && w.Return < previous.Call {
				t.Fatalf("%s: the claim on etag %q returned before the claim that issued it was made", key, etag)
			}
			switch {
			case w.Owner == "":
				st.relinquishes++
			case n > 0 && w.Owner != owner:
				st.handovers++
			}
			n, etag, owner, previous = n+1, w.ETag, w.Owner, w
		}
		total := 0
		for _, ws := range winners {
			total += len(ws)
		}
		if n != total {
			t.Fatalf("%s: %d successful claims, but only %d follow one another from the first", key, total, n)
		}
		if f := final[key]; f.ETag != etag || f.Owner != owner {
			t.Fatalf("%s: the record is %q/%q, the last successful claim gave %q/%q", key, f.ETag, f.Owner, etag, owner)
		}
	}
	return st
}

// relPruneForced drops the ownership reads and lost claims that every
// linearization of the rest of the history satisfies, and leaves porcupine
// the ones that race with a change of their register: with 96 clients
// those others make its search take minutes. Dropping them is exact, not
// an approximation. Think of a linearization as a point in each
// operation's interval; a read-only operation that has, in its interval,
// a point where the state is what it returned, whatever points the writes
// took, fits into any linearization of the rest. Let W be the claim that
// issued etag E and R the one that replaced it (relCheckClaimChains has
// shown both unique, and etags never reissued), so the state is E exactly
// between W's point and R's point:
//
//   - A list that saw E (with W's owner) has such a point if W returned
//     before the list did and R, if any, was made after the list was.
//     For "no record" (E empty) the issuing claim is the start.
//   - A lost claim expecting E has one if R returned before the claim did:
//     E is dead from R's point on.
//
// Checkpoint operations are all kept.
func relPruneForced(history []relLoadOp) []relLoadOp {
	issuedBy := map[string]relLoadOp{}   // key + new etag -> winning claim
	replacedBy := map[string]relLoadOp{} // key + expected etag -> winning claim
	for _, op := range history {
		if op.Kind == "claim" && op.Won {
			issuedBy[op.Key+"\x00"+op.ETag] = op
			replacedBy[op.Key+"\x00"+op.Expected] = op
		}
	}
	var kept []relLoadOp
	for _, op := range history {
		switch op.Kind {
		case "list":
			w, issued := issuedBy[op.Key+"\x00"+op.ETag]
			r, replaced := replacedBy[op.Key+"\x00"+op.ETag]
			afterIssue := op.ETag == "" && op.Owner == "" || issued && w.Return < op.Return && w.Owner == op.Owner
			if afterIssue && (!replaced || r.Call > op.Call) {
				continue
			}
		case "claim":
			if r, replaced := replacedBy[op.Key+"\x00"+op.Expected]; !op.Won && replaced && r.Return < op.Return {
				continue
			}
		}
		kept = append(kept, op)
	}
	return kept
}

// relCheckFinalCheckpoints checks that each partition's checkpoint is an
// acknowledged write that no other write followed entirely (writes that
// overlap in time may land in either order).
func relCheckFinalCheckpoints(t *testing.T, history []relLoadOp, final map[string]relLoadOp) {
	t.Helper()
	writes := map[string][]relLoadOp{}
	for _, op := range history {
		if op.Kind == "cpset" {
			writes[op.Key] = append(writes[op.Key], op)
		}
	}
	for p := range relLoadPartitions {
		key := "cp/" + strconv.Itoa(p)
		v := final[key].Value
		i := slices.IndexFunc(writes[key], func(w relLoadOp) bool { return w.Value == v })
		switch {
		case v == "" && len(writes[key]) == 0:
			continue
		case i < 0:
			t.Fatalf("%s holds %q, which no acknowledged write wrote", key, v)
		}
		w := writes[key][i]
		for _, later := range writes[key] {
			if later.Call > w.Return {
				t.Fatalf("%s holds %q, but %q was written after that write returned: an acknowledged checkpoint was lost", key, v, later.Value)
			}
		}
	}
}

// relLoadWorker is one load process: args are the store path, the process
// number, the CLOCK_MONOTONIC start time, the duration and the history
// file to write.
func relLoadWorker(t *testing.T, args []string) {
	proc, _ := strconv.Atoi(args[1])
	start, _ := strconv.ParseInt(args[2], 10, 64)
	duration, err := time.ParseDuration(args[3])
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(args[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(time.Duration(start - relMono()))
	end := start + int64(duration)
	ctx := context.Background()

	var (
		mu      sync.Mutex
		history []relLoadOp
		errs    int
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if errs < 5 {
			t.Error(err)
		}
		errs++
	}
	for g := range relLoadGoroutines {
		wg.Go(func() {
			client := proc*relLoadGoroutines + g
			me := fmt.Sprintf("p%d-g%d", proc, g)
			rng := rand.New(rand.NewPCG(uint64(client), uint64(start)))
			var ops []relLoadOp
			var counter int64
			for relMono() < end {
				parts := rng.Perm(relLoadPartitions)[:1+rng.IntN(3)]
				call := relMono()
				owns, err := s.ListOwnership(ctx, relLoadNS, relLoadHub, relLoadGroup, nil)
				ret := relMono()
				if err != nil {
					fail(err)
					continue
				}
				claims := make([]azeventhubs.Ownership, len(parts))
				for i, p := range parts {
					id := strconv.Itoa(p)
					listed := relLoadOp{Kind: "list", Key: "own/" + id, Client: client, Call: call, Return: ret}
					claims[i] = azeventhubs.Ownership{FullyQualifiedNamespace: relLoadNS, EventHubName: relLoadHub, ConsumerGroup: relLoadGroup, PartitionID: id, OwnerID: me}
					if j := slices.IndexFunc(owns, func(o azeventhubs.Ownership) bool { return o.PartitionID == id }); j >= 0 {
						listed.ETag, listed.Owner = string(*owns[j].ETag), owns[j].OwnerID
						claims[i].ETag = owns[j].ETag
						if owns[j].OwnerID == me && rng.IntN(5) == 0 {
							claims[i].OwnerID = "" // relinquish, as a processor does on shutdown
						}
					}
					ops = append(ops, listed)
				}
				call = relMono()
				won, err := s.ClaimOwnership(ctx, claims, nil)
				ret = relMono()
				if err != nil {
					fail(err)
					continue
				}
				for _, c := range claims {
					op := relLoadOp{Kind: "claim", Key: "own/" + c.PartitionID, Owner: c.OwnerID, Client: client, Call: call, Return: ret}
					if c.ETag != nil {
						op.Expected = string(*c.ETag)
					}
					if j := slices.IndexFunc(won, func(o azeventhubs.Ownership) bool { return o.PartitionID == c.PartitionID }); j >= 0 {
						op.Won, op.ETag = true, string(*won[j].ETag)
					}
					ops = append(ops, op)
					if !op.Won || c.OwnerID == "" {
						continue
					}
					// The new owner checkpoints where it got to.
					counter++
					seq := int64(client)<<32 | counter
					offset := strconv.FormatInt(seq, 10)
					call := relMono()
					err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: relLoadNS, EventHubName: relLoadHub, ConsumerGroup: relLoadGroup,
						PartitionID: c.PartitionID, Offset: &offset, SequenceNumber: &seq}, nil)
					ret := relMono()
					if err != nil {
						fail(err)
						continue
					}
					ops = append(ops, relLoadOp{Kind: "cpset", Key: "cp/" + c.PartitionID, Value: offset, Client: client, Call: call, Return: ret})
					if rng.IntN(10) != 0 {
						continue
					}
					// Shut down: relinquish the partition just won.
					c.OwnerID, c.ETag = "", relPtr(azcore.ETag(op.ETag))
					call = relMono()
					freed, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{c}, nil)
					ret = relMono()
					if err != nil {
						fail(err)
						continue
					}
					release := relLoadOp{Kind: "claim", Key: "own/" + c.PartitionID, Expected: string(*c.ETag), Client: client, Call: call, Return: ret}
					if len(freed) == 1 {
						release.Won, release.ETag = true, string(*freed[0].ETag)
					}
					ops = append(ops, release)
				}
				if rng.IntN(8) == 0 {
					call := relMono()
					cps, err := s.ListCheckpoints(ctx, relLoadNS, relLoadHub, relLoadGroup, nil)
					ret := relMono()
					if err != nil {
						fail(err)
						continue
					}
					for _, p := range rng.Perm(relLoadPartitions)[:2] {
						id := strconv.Itoa(p)
						op := relLoadOp{Kind: "cpget", Key: "cp/" + id, Client: client, Call: call, Return: ret}
						if j := slices.IndexFunc(cps, func(c azeventhubs.Checkpoint) bool { return c.PartitionID == id }); j >= 0 {
							op.Value = *cps[j].Offset
						}
						ops = append(ops, op)
					}
				}
			}
			mu.Lock()
			history = append(history, ops...)
			mu.Unlock()
		})
	}
	wg.Wait()

	f, err := os.Create(args[4])
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, op := range history {
		if err := enc.Encode(op); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	relPrintf(fmt.Sprintf("errors %d", errs))
}
