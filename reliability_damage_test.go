package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/filelock"
	bolt "go.etcd.io/bbolt"
)

// TestReliabilityDamagedFiles damages copies of a populated store in
// hundreds of ways and checks that Open and every operation either return
// exactly the known content or fail with ErrCorrupt/ErrUnsupportedFormat
// naming the file; never a panic, a hang or a wrong value.
//
// The cases run in a child process (the test binary re-executed), one
// after the other. A Go panic is recoverable and the child reports it, but
// a fault in a goroutine the store does not control (bbolt runs tx.Check
// in its own goroutine) kills the process; running in a child turns that
// into a reported case instead of a dead test binary, and the parent
// restarts the child after it to count every other case.
func TestReliabilityDamagedFiles(t *testing.T) { relDamageCampaign(t, relDamageAtOpen, 1) }

// TestReliabilityDamagedWhileReleased runs the same cases with the damage
// written into the file of an open store while the store does not hold it
// (its lease let go of the idle file), as a stray program would, one that
// even puts the file's modification time back: reopening must notice, as
// Open does. A quarter of the cases keep it
// quick; they cover every kind.
func TestReliabilityDamagedWhileReleased(t *testing.T) {
	relDamageCampaign(t, relDamageWhileReleased, 4)
}

// When a damage case writes its damage: before Open, or into the file of
// an open store that released it.
const (
	relDamageAtOpen        = "at-open"
	relDamageWhileReleased = "while-released"
)

func relDamageCampaign(t *testing.T, mode string, scale int) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.db")
	relDamagePopulate(t, orig)

	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	const seed = 20261124
	if testing.Short() {
		scale *= 4
	}
	cases := relDamageCases(data, seed, scale)
	t.Logf("store file: %d bytes, %d pages; %d damaged copies, damaged %s", len(data), len(data)/relPageSize, len(cases), mode)

	outcomes := map[string]int{}
	var failures []string
	start := 0
	for start < len(cases) {
		next, fails := relRunDamageWorker(t, mode, orig, dir, seed, scale, start, len(cases), outcomes)
		failures = append(failures, fails...)
		if next <= start {
			t.Fatalf("damage worker made no progress at case %d", start)
		}
		start = next
	}
	t.Logf("damage summary: cases=%d correct=%d errors=%d wrong=%d bad-errors=%d check-missed=%d panics=%d hangs=%d crashes=%d leaks=%d",
		len(cases), outcomes["correct"], outcomes["error"], outcomes["wrong"], outcomes["bad-error"],
		outcomes["check-missed"], outcomes["panic"], outcomes["hang"], outcomes["crash"], outcomes["leak"])
	if n := outcomes["records in refused files"]; n > 0 {
		t.Logf("salvage recovered %d of the %d records (%.0f%%) of the %d files that calls refused",
			outcomes["salvaged records"], n, 100*float64(outcomes["salvaged records"])/float64(n), outcomes["error"])
	}
	for _, kind := range slices.Sorted(func(yield func(string) bool) {
		for k := range outcomes {
			if strings.HasPrefix(k, "kind ") && !yield(k) {
				return
			}
		}
	}) {
		t.Logf("  %s: %d", kind, outcomes[kind])
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// relRunDamageWorker runs cases [start, end) in one child process and
// returns the index to resume from: end, or the case after one that
// crashed or hung the child.
func relRunDamageWorker(t *testing.T, mode, orig, dir string, seed uint64, scale, start, end int, outcomes map[string]int) (int, []string) {
	cmd := relChildCmd("damage-worker", orig, dir, strconv.FormatUint(seed, 10), strconv.Itoa(scale), strconv.Itoa(start), strconv.Itoa(end), mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := relReadLines(stdout).all()
	waitErr := cmd.Wait()

	var failures []string
	next, current, currentDesc := start, -1, ""
	for _, line := range lines {
		f := strings.SplitN(line, " ", 4)
		switch f[0] {
		case "start":
			current, _ = strconv.Atoi(f[1])
			currentDesc = f[2]
		case "done":
			i, _ := strconv.Atoi(f[1])
			outcome, detail := f[2], ""
			if len(f) > 3 {
				detail = f[3]
			}
			outcomes[outcome]++
			outcomes["kind "+strings.SplitN(currentDesc, ":", 2)[0]+" -> "+outcome]++
			switch outcome {
			case "error":
				var got, of int
				if _, err := fmt.Sscanf(detail, "salvaged %d of %d", &got, &of); err == nil {
					outcomes["salvaged records"] += got
					outcomes["records in refused files"] += of
				}
			case "correct":
			default:
				failures = append(failures, fmt.Sprintf("case %d (%s): %s: %s", i, currentDesc, outcome, detail))
			}
			current, next = -1, i+1
		case "hang":
			i, _ := strconv.Atoi(f[1])
			outcomes["hang"]++
			failures = append(failures, fmt.Sprintf("case %d (%s): hang: %s; goroutines:\n%s", i, currentDesc, strings.Join(f[2:], " "), stderr.String()))
			return i + 1, failures
		}
	}
	if current >= 0 {
		outcomes["crash"]++
		failures = append(failures, fmt.Sprintf("case %d (%s): the process died (%v):\n%s", current, currentDesc, waitErr, relHead(stderr.Bytes(), 4000)))
		return current + 1, failures
	}
	if waitErr != nil {
		t.Fatalf("damage worker failed outside any case: %v\n%s", waitErr, relTail(stderr.Bytes(), 3000))
	}
	return next, failures
}

// relDamageWorker is the child side: it rebuilds the case list from the
// original file and runs cases args[4]..args[5]-1 in mode args[6],
// printing "start I DESC" before and "done I OUTCOME DETAIL" after each.
func relDamageWorker(t *testing.T, args []string) {
	orig, dir, mode := args[0], args[1], args[6]
	seed, _ := strconv.ParseUint(args[2], 10, 64)
	scale, _ := strconv.Atoi(args[3])
	start, _ := strconv.Atoi(args[4])
	end, _ := strconv.Atoi(args[5])
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	cases := relDamageCases(data, seed, scale)
	want := relDamageExpect()
	baseline := runtime.NumGoroutine()
	for i := start; i < end; i++ {
		c := cases[i]
		relPrintf(fmt.Sprintf("start %d %s", i, strings.ReplaceAll(c.desc, " ", "_")))
		path := filepath.Join(dir, fmt.Sprintf("case-%04d.db", i))
		damaged := c.build()
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		relKeepDamaged(path, i) // replaced or removed below once the case ends well
		open := relOpenDamaged
		if mode == relDamageWhileReleased {
			open = func(path string) (*Store, error) { return relDamageWhileIdle(path, data, damaged) }
		}
		keepDir := os.Getenv(relKeepEnv)
		type result struct{ outcome, detail string }
		done := make(chan result, 1)
		go func() {
			outcome, detail := relDamageRun(path, open, c, want)
			done <- result{outcome, detail}
		}()
		keep := false
		select {
		case r := <-done:
			// Every goroutine a case starts must end with it: a store
			// that leaks one per damaged Open would exhaust a process
			// that retries.
			if n := relSettleGoroutines(baseline); n > baseline && r.outcome != "wrong" {
				r = result{"leak", fmt.Sprintf("%d goroutines left running after Close (had %d); %s", n-baseline, baseline, relGoroutineDump())}
			}
			relPrintf(fmt.Sprintf("done %d %s %s", i, r.outcome, strings.ReplaceAll(r.detail, "\n", " | ")))
			keep = !slices.Contains([]string{"correct", "error"}, r.outcome)
		case <-time.After(relDamageCaseTimeout):
			relPrintf(fmt.Sprintf("hang %d no result after %v", i, relDamageCaseTimeout))
			buf := make([]byte, 1<<20)
			os.Stderr.Write(buf[:runtime.Stack(buf, true)])
			os.Exit(3)
		}
		if !keep && keepDir != "" {
			os.Remove(filepath.Join(keepDir, fmt.Sprintf("damaged-%04d.db", i)))
		}
		os.Remove(path)
	}
}

// relKeepEnv names a directory where the damage test keeps the damaged
// files of failing cases, to reproduce them: bbolt lays out pages in a
// different order in every run (it ranges over a map), so the seed alone
// does not recreate a file. A case that crashes the worker is written
// before it runs.
const relKeepEnv = "BOLTSTORE_REL_KEEP"

func relKeepDamaged(path string, i int) {
	dir := os.Getenv(relKeepEnv)
	if dir == "" {
		return
	}
	if data, err := os.ReadFile(path); err == nil {
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("damaged-%04d.db", i)), data, 0o600)
	}
}

// relSettleGoroutines waits up to a second for the number of goroutines
// to fall to want (a closed store's helpers notice within milliseconds),
// and returns the number left.
func relSettleGoroutines(want int) int {
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

// relGoroutineDump returns the start of a dump of all goroutines.
func relGoroutineDump() string {
	buf := make([]byte, 1<<16)
	return relTail(buf[:runtime.Stack(buf, true)], 4000)
}

// relDamageCaseTimeout bounds one case. A healthy case takes milliseconds
// even under the race detector; this is generous for a loaded CI machine.
const relDamageCaseTimeout = 20 * time.Second

const relPageSize = 4096

// Coordinates of the populated store's consumer groups, spelled the way the
// lists are called (mixed case: names are case-insensitive).
var relDamageGroups = [][3]string{
	{"relDamage-A.servicebus.windows.net", "Orders", "$Default"},
	{"relDamage-A.servicebus.windows.net", "Payments", "Audit"},
	{"relDamage-B.servicebus.windows.net", "Orders", "$Default"},
}

// relDamageClock is the store clock during damage cases, so the record a
// claim writes is known exactly.
var relDamageClock = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// relDamageContent returns what relDamagePopulate writes: batches of
// records (one PutRecords transaction each), records then deleted (one
// transaction), and the final record (the last transaction).
func relDamageContent() (batches [][]Record, deleted []Record, final Record) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	rec := func(g int, typ RecordType, partition string, i int) Record {
		r := Record{Type: typ, Namespace: strings.ToLower(relDamageGroups[g][0]), EventHub: strings.ToLower(relDamageGroups[g][1]),
			ConsumerGroup: strings.ToLower(relDamageGroups[g][2]), PartitionID: partition}
		if typ == RecordOwnership {
			r.OwnerID = fmt.Sprintf("processor-%d", i%3)
			r.ETag = fmt.Sprintf("etag-%d-%s-%08x", g, partition, i*2654435761)
			r.LastModifiedTime = base.Add(time.Duration(i) * time.Second)
			if i%13 == 5 {
				r.OwnerID = "" // relinquished
			}
			return r
		}
		if i%7 != 3 {
			off := strconv.Itoa(i * 4096)
			if i%17 == 0 {
				off = ""
			}
			r.Offset = &off
		}
		if i%11 != 4 || r.Offset == nil {
			seq := int64(i) * 1000
			r.SequenceNumber = &seq
		}
		r.WrittenAt = base.Add(time.Duration(i) * time.Millisecond)
		return r
	}
	// Group 0 is large enough that its buckets need several leaf pages and
	// a branch page; the others are small.
	var batch []Record
	for i := range 200 {
		p := strconv.Itoa(i)
		batch = append(batch, rec(0, RecordOwnership, p, i), rec(0, RecordCheckpoint, p, i))
		if len(batch) == 100 {
			batches = append(batches, batch)
			batch = nil
		}
	}
	for i, p := range []string{"0", "1", "2", "10", "p-east", "p-west"} {
		batch = append(batch, rec(1, RecordOwnership, p, i+1), rec(1, RecordCheckpoint, p, i))
	}
	for i, p := range []string{"0", "1", "2"} {
		batch = append(batch, rec(2, RecordOwnership, p, i), rec(2, RecordCheckpoint, p, i+1))
	}
	batches = append(batches, batch)
	// Deleting leaves free pages in the file, which damage may hit too.
	for i := 150; i < 200; i++ {
		deleted = append(deleted, rec(0, RecordCheckpoint, strconv.Itoa(i), i))
	}
	return batches, deleted, rec(2, RecordCheckpoint, "9", 9)
}

// relDamagePopulate writes relDamageContent into a new store at path.
// The commits are synced, as by default, so that the store notes the last
// one as acknowledged (noteAcknowledged) and damage to it is told apart.
func relDamagePopulate(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	batches, deleted, final := relDamageContent()
	for _, b := range batches {
		if err := s.PutRecords(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteRecords(ctx, deleted); err != nil || n != len(deleted) {
		t.Fatalf("DeleteRecords: %d, %v", n, err)
	}
	if err := s.PutRecords(ctx, []Record{final}); err != nil {
		t.Fatal(err)
	}
	// The pristine file must read back exactly, or every case below would
	// be judged against the wrong content.
	want := relDamageExpect()
	if got, err := s.Records(ctx, Scope{}); err != nil || relRecordsDiff(got, want) != "" {
		t.Fatalf("pristine store: %v %s", err, relRecordsDiff(got, want))
	}
}

// relDamageExpect returns the known content of the populated store, in
// the order Records returns it.
func relDamageExpect() []Record {
	batches, deleted, final := relDamageContent()
	all := []Record{final}
	for _, b := range batches {
		for _, r := range b {
			if !slices.ContainsFunc(deleted, func(d Record) bool { return relRecordKey(d) == relRecordKey(r) }) {
				all = append(all, r)
			}
		}
	}
	slices.SortFunc(all, relCompareRecords)
	return all
}

func relRecordKey(r Record) string {
	return strings.Join([]string{string(r.Type), r.Namespace, r.EventHub, r.ConsumerGroup, r.PartitionID}, "\x00")
}

// relCompareRecords orders records as Records documents: by namespace,
// event hub, consumer group (all folded), type (ownership first) and
// partition (canonical numbers numerically, then other ids bytewise).
func relCompareRecords(a, b Record) int {
	typeRank := func(t RecordType) int {
		if t == RecordOwnership {
			return 0
		}
		return 1
	}
	return cmp.Or(
		strings.Compare(a.Namespace, b.Namespace),
		strings.Compare(a.EventHub, b.EventHub),
		strings.Compare(a.ConsumerGroup, b.ConsumerGroup),
		cmp.Compare(typeRank(a.Type), typeRank(b.Type)),
		relComparePartitions(a.PartitionID, b.PartitionID),
	)
}

func relComparePartitions(a, b string) int {
	num := func(s string) bool {
		_, err := strconv.ParseUint(s, 10, 63)
		return err == nil && (s == "0" || s[0] != '0')
	}
	switch na, nb := num(a), num(b); {
	case na && nb:
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	case na:
		return -1
	case nb:
		return 1
	}
	return strings.Compare(a, b)
}

// relRecordsDiff describes the first difference between two record lists,
// or returns "" when they are equal.
func relRecordsDiff(got, want []Record) string {
	for i := range min(len(got), len(want)) {
		if d := relRecordDiff(got[i], want[i]); d != "" {
			return fmt.Sprintf("record %d: %s", i, d)
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d records, want %d", len(got), len(want))
	}
	return ""
}

func relRecordDiff(g, w Record) string {
	if relRecordKey(g) != relRecordKey(w) || g.OwnerID != w.OwnerID || g.ETag != w.ETag ||
		!g.LastModifiedTime.Equal(w.LastModifiedTime) || !g.WrittenAt.Equal(w.WrittenAt) ||
		!relEqualPtr(g.Offset, w.Offset) || !relEqualPtr(g.SequenceNumber, w.SequenceNumber) {
		return fmt.Sprintf("got %s, want %s", relShowRecord(g), relShowRecord(w))
	}
	return ""
}

func relShowRecord(r Record) string {
	return fmt.Sprintf("{%s %s/%s/%s/%q owner=%q etag=%q mod=%v off=%s seq=%s written=%v}", r.Type, r.Namespace, r.EventHub,
		r.ConsumerGroup, r.PartitionID, r.OwnerID, r.ETag, r.LastModifiedTime, relShowPtr(r.Offset), relShowPtr(r.SequenceNumber), r.WrittenAt)
}

func relEqualPtr[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func relShowPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("%v", *p)
}

// relGroupRecords selects the records of group g (by list coordinates).
func relGroupRecords(all []Record, g [3]string, typ RecordType) []Record {
	var out []Record
	for _, r := range all {
		if r.Type == typ && r.Namespace == strings.ToLower(g[0]) && r.EventHub == strings.ToLower(g[1]) && r.ConsumerGroup == strings.ToLower(g[2]) {
			out = append(out, r)
		}
	}
	return out
}

// relOwnershipsAsRecords converts a ListOwnership result to Records, after
// checking that it is spelled as the call was.
func relOwnershipsAsRecords(list []azeventhubs.Ownership, g [3]string) ([]Record, string) {
	out := make([]Record, 0, len(list))
	for _, o := range list {
		if o.FullyQualifiedNamespace != g[0] || o.EventHubName != g[1] || o.ConsumerGroup != g[2] || o.ETag == nil {
			return nil, fmt.Sprintf("ownership %+v does not carry the call's coordinates and an etag", o)
		}
		out = append(out, Record{Type: RecordOwnership, Namespace: strings.ToLower(g[0]), EventHub: strings.ToLower(g[1]),
			ConsumerGroup: strings.ToLower(g[2]), PartitionID: o.PartitionID, OwnerID: o.OwnerID, ETag: string(*o.ETag),
			LastModifiedTime: o.LastModifiedTime})
	}
	return out, ""
}

// relCheckpointsAsRecords is relOwnershipsAsRecords for checkpoints;
// WrittenAt, which lists do not return, is taken from want.
func relCheckpointsAsRecords(list []azeventhubs.Checkpoint, g [3]string, want []Record) ([]Record, string) {
	out := make([]Record, 0, len(list))
	for i, c := range list {
		if c.FullyQualifiedNamespace != g[0] || c.EventHubName != g[1] || c.ConsumerGroup != g[2] {
			return nil, fmt.Sprintf("checkpoint %+v does not carry the call's coordinates", c)
		}
		r := Record{Type: RecordCheckpoint, Namespace: strings.ToLower(g[0]), EventHub: strings.ToLower(g[1]),
			ConsumerGroup: strings.ToLower(g[2]), PartitionID: c.PartitionID, Offset: c.Offset, SequenceNumber: c.SequenceNumber}
		if i < len(want) {
			r.WrittenAt = want[i].WrittenAt
		}
		out = append(out, r)
	}
	return out, ""
}

// relDamageCase is one damaged copy of the populated store.
type relDamageCase struct {
	desc  string
	build func() []byte
	// mustFail: Open must fail; unsupported: with ErrUnsupportedFormat.
	mustFail, unsupported bool
}

// relDamageCases builds the list of damaged copies of data. It is a pure
// function of its arguments, so the parent and the worker agree on it.
// scale > 1 keeps every kind but fewer random cases of each.
func relDamageCases(data []byte, seed uint64, scale int) []relDamageCase {
	pages := len(data) / relPageSize
	var cases []relDamageCase
	add := func(desc string, build func() []byte) {
		cases = append(cases, relDamageCase{desc: desc, build: build})
	}
	rng := func(kind uint64, i int) *rand.Rand { return rand.New(rand.NewPCG(seed^kind, uint64(i))) }
	// Page types as the original file has them (a freed page keeps its
	// old header, which is what damage in it would meet too).
	var leaves, branches, inUse []int
	for p := range pages {
		switch binary.LittleEndian.Uint16(data[p*relPageSize+8:]) {
		case 0x01:
			branches = append(branches, p)
			inUse = append(inUse, p)
		case 0x02:
			leaves = append(leaves, p)
			inUse = append(inUse, p)
		case 0x04, 0x10:
			inUse = append(inUse, p)
		}
	}

	for i := range 60 / scale {
		r := rng(1, i)
		n := 1 + r.IntN(8)
		offs := make([]int, n)
		for j := range offs {
			offs[j] = r.IntN(len(data))
		}
		add(fmt.Sprintf("random-bytes: %d bytes at %v", n, offs), func() []byte {
			d := bytes.Clone(data)
			for _, o := range offs {
				d[o] ^= byte(1 + r.IntN(255))
			}
			return d
		})
	}
	for i := range 150 / scale {
		r := rng(2, i)
		page, n := r.IntN(pages), 1+r.IntN(64)
		off := page*relPageSize + r.IntN(relPageSize-n)
		add(fmt.Sprintf("page-run: %d random bytes at %d (page %d)", n, off, page), func() []byte {
			d := bytes.Clone(data)
			for j := range n {
				d[off+j] = byte(r.Uint32())
			}
			return d
		})
	}
	for page := range pages {
		add(fmt.Sprintf("zero-page: page %d", page), func() []byte {
			d := bytes.Clone(data)
			clear(d[page*relPageSize : (page+1)*relPageSize])
			return d
		})
	}
	for i := range 40 / scale {
		r := rng(3, i)
		n := r.IntN(len(data))
		if i%2 == 0 {
			n = r.IntN(pages) * relPageSize
		}
		add(fmt.Sprintf("truncate: to %d bytes", n), func() []byte { return bytes.Clone(data[:n]) })
	}
	add("zero-length: empty file", func() []byte { return nil })
	for i := range 60 / scale {
		r := rng(4, i)
		page := inUse[r.IntN(len(inUse))]
		field := []struct {
			name      string
			off, size int
		}{{"id", 0, 8}, {"flags", 8, 2}, {"count", 10, 2}, {"overflow", 12, 4}}[r.IntN(4)]
		add(fmt.Sprintf("page-header: page %d %s", page, field.name), func() []byte {
			d := bytes.Clone(data)
			at := d[page*relPageSize+field.off : page*relPageSize+field.off+field.size]
			switch r.IntN(3) {
			case 0: // off by one, the most plausible undetected damage
				at[0]++
			case 1:
				at[0]--
			default:
				for j := range at {
					at[j] = byte(r.Uint32())
				}
			}
			return d
		})
	}
	for i := range 24 / scale {
		r := rng(5, i)
		page := branches[r.IntN(len(branches))]
		count := int(binary.LittleEndian.Uint16(data[page*relPageSize+10:]))
		elem := r.IntN(count)
		var pgid uint64
		switch i % 3 {
		case 0:
			pgid = uint64(r.IntN(pages)) // another page of the file, maybe an ancestor
		case 1:
			pgid = uint64(page) // itself: a cycle
		default:
			pgid = r.Uint64() >> r.IntN(64) // anywhere, usually far outside the file
		}
		add(fmt.Sprintf("branch-pgid: page %d element %d -> %d", page, elem, pgid), func() []byte {
			d := bytes.Clone(data)
			// branchPageElement: pos uint32, ksize uint32, pgid uint64.
			binary.LittleEndian.PutUint64(d[page*relPageSize+16+elem*16+8:], pgid)
			return d
		})
	}
	for i := range 40 / scale {
		r := rng(6, i)
		page := leaves[r.IntN(len(leaves))]
		count := int(binary.LittleEndian.Uint16(data[page*relPageSize+10:]))
		elem := r.IntN(max(count, 1))
		field := []string{"flags", "pos", "ksize", "vsize"}[r.IntN(4)]
		value := []uint32{r.Uint32(), 1 << 31, 1 << 20, relPageSize}[r.IntN(4)]
		add(fmt.Sprintf("leaf-element: page %d element %d %s = %d", page, elem, field, value), func() []byte {
			d := bytes.Clone(data)
			// leafPageElement: flags, pos, ksize, vsize, all uint32.
			at := page*relPageSize + 16 + elem*16 + 4*slices.Index([]string{"flags", "pos", "ksize", "vsize"}, field)
			binary.LittleEndian.PutUint32(d[at:], value)
			return d
		})
	}
	for i := range 16 / scale {
		r := rng(7, i)
		page := inUse[r.IntN(len(inUse))]
		value := []uint32{1 << 31, 1<<32 - 1, 1 << 16, uint32(pages)}[i%4]
		add(fmt.Sprintf("overflow: page %d overflow = %d", page, value), func() []byte {
			d := bytes.Clone(data)
			binary.LittleEndian.PutUint32(d[page*relPageSize+12:], value)
			return d
		})
	}
	if fl := relFreelistPage(data); fl > 0 {
		at := fl * relPageSize
		count := int(binary.LittleEndian.Uint16(data[at+10:]))
		for _, damage := range []struct {
			desc string
			fn   func(d []byte)
		}{
			{"first id repeated", func(d []byte) { copy(d[at+24:at+32], d[at+16:at+24]) }},
			{"ids out of order", func(d []byte) { binary.LittleEndian.PutUint64(d[at+16:], uint64(pages)) }},
			{"a reachable page listed as free", func(d []byte) { binary.LittleEndian.PutUint64(d[at+16:], uint64(leaves[0])) }},
			{"id beyond the file", func(d []byte) { binary.LittleEndian.PutUint64(d[at+16+8*(count-1):], 1<<40) }},
			{"count 0xffff with a huge leading count", func(d []byte) {
				binary.LittleEndian.PutUint16(d[at+10:], 0xffff)
				binary.LittleEndian.PutUint64(d[at+16:], 1<<40)
			}},
			{"count +1000", func(d []byte) { binary.LittleEndian.PutUint16(d[at+10:], uint16(count+1000)) }},
		} {
			if count < 2 {
				break
			}
			add(fmt.Sprintf("freelist: page %d %s", fl, damage.desc), func() []byte {
				d := bytes.Clone(data)
				damage.fn(d)
				return d
			})
		}
	}
	// A bucket's name is its key in the parent's page: damage to it makes
	// the bucket, and all records below, unreachable by name.
	for _, at := range relBucketKeyEnds(data, leaves) {
		add(fmt.Sprintf("bucket-name: last byte of the key at %d", at), func() []byte {
			d := bytes.Clone(data)
			d[at] ^= 0x01
			return d
		})
	}
	for _, page := range leaves {
		count := binary.LittleEndian.Uint16(data[page*relPageSize+10:])
		if count == 0 {
			continue
		}
		add(fmt.Sprintf("leaf-count: page %d count %d -> %d", page, count, count-1), func() []byte {
			d := bytes.Clone(data)
			binary.LittleEndian.PutUint16(d[page*relPageSize+10:], count-1)
			return d
		})
	}
	for _, f := range []struct {
		name    string
		content []byte
	}{
		{"text", []byte("partition,offset\n0,4096\n")},
		{"random-4KiB", relRandomBytes(seed, 4096)},
		{"random-64KiB", relRandomBytes(seed+1, 64<<10)},
		{"sqlite-header", append([]byte("SQLite format 3\x00"), make([]byte, 8192)...)},
	} {
		cases = append(cases, relDamageCase{desc: "not-a-store: " + f.name, build: func() []byte { return f.content }})
	}
	for _, f := range []struct {
		name  string
		setup func(tx *bolt.Tx) error
	}{
		{"no-buckets", func(*bolt.Tx) error { return nil }},
		{"other-buckets", func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("widgets"))
			if err == nil {
				err = b.Put([]byte("k"), []byte("v"))
			}
			return err
		}},
	} {
		cases = append(cases, relDamageCase{desc: "foreign-bbolt: " + f.name, mustFail: true, unsupported: true, build: func() []byte {
			return relBoltFile(f.setup)
		}})
	}
	// A store whose format marker lost its key is damaged rather than
	// foreign, so either error will do, but Open must not accept it.
	cases = append(cases, relDamageCase{desc: "format-marker: key missing", mustFail: true, build: func() []byte {
		return relBoltFile(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketMarker); return err })
	}})
	for _, v := range []byte{FormatVersion + 1, 255, 0} {
		cases = append(cases, relDamageCase{desc: fmt.Sprintf("format-version: %d", v), mustFail: true, unsupported: true, build: func() []byte {
			return relSetFormat(data, v)
		}})
	}
	return cases
}

// relBucketKeyEnds returns the offset of the last byte of every bucket
// key in the given leaf pages of a bbolt file, inline buckets included.
func relBucketKeyEnds(data []byte, leaves []int) []int {
	var ends []int
	// walk reads the leaf page at off (element positions are relative to
	// each element) and descends into inline buckets.
	var walk func(off, end int)
	walk = func(off, end int) {
		if off+16 > end || binary.LittleEndian.Uint16(data[off+8:]) != 0x02 {
			return
		}
		for i := range int(binary.LittleEndian.Uint16(data[off+10:])) {
			elem := off + 16 + 16*i
			if elem+16 > end {
				return
			}
			flags := binary.LittleEndian.Uint32(data[elem:])
			pos := int(binary.LittleEndian.Uint32(data[elem+4:]))
			ksize := int(binary.LittleEndian.Uint32(data[elem+8:]))
			vsize := int(binary.LittleEndian.Uint32(data[elem+12:]))
			key := elem + pos
			if flags&1 == 0 || ksize == 0 || key+ksize+vsize > end {
				continue
			}
			ends = append(ends, key+ksize-1)
			// bucket value: root page id (0 = inline), sequence, then
			// the inline page.
			if value := key + ksize; vsize > 16 && binary.LittleEndian.Uint64(data[value:]) == 0 {
				walk(value+16, value+vsize)
			}
		}
	}
	for _, page := range leaves {
		walk(page*relPageSize, (page+1)*relPageSize)
	}
	return ends
}

// relFreelistPage returns the freelist page of the newer meta page of a
// bbolt file, or 0.
func relFreelistPage(data []byte) int {
	best, freelist := uint64(0), 0
	for m := range 2 {
		// meta: magic, version, pageSize, flags (uint32 each), root
		// bucket (16 bytes), freelist, pgid, txid (uint64 each).
		meta := data[m*relPageSize+16:]
		if txid := binary.LittleEndian.Uint64(meta[48:]); txid >= best {
			best, freelist = txid, int(binary.LittleEndian.Uint64(meta[32:]))
		}
	}
	if (freelist+1)*relPageSize > len(data) || binary.LittleEndian.Uint16(data[freelist*relPageSize+8:]) != 0x10 {
		return 0
	}
	return freelist
}

func relRandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// relBoltFile returns the bytes of a fresh bbolt file set up by fn.
func relBoltFile(fn func(tx *bolt.Tx) error) []byte {
	dir, err := os.MkdirTemp("", "relbolt")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		panic(err)
	}
	if err := db.Update(fn); err != nil {
		panic(err)
	}
	if err := db.Close(); err != nil {
		panic(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return b
}

// relSetFormat returns a copy of the store file data with its format
// marker set to v, written through bbolt as a newer boltstore would.
func relSetFormat(data []byte, v byte) []byte {
	dir, err := os.MkdirTemp("", "relformat")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		panic(err)
	}
	if err := relUpdateAsStore(path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMarker).Put(keyFormat, []byte{v})
	}); err != nil {
		panic(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return b
}

// relUpdateAsStore changes the store file at path in one bbolt commit and,
// as a store would, vouches for the commit with a record (commit.go), or
// the store would undo it as a commit cut short.
func relUpdateAsStore(path string, change func(tx *bolt.Tx) error) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	var txid uint64
	err = db.Update(func(tx *bolt.Tx) error {
		txid = uint64(tx.ID())
		return change(tx)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	record := commitRecord{txid: txid, flags: recordSynced}.encode()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(record, int64(txid%2)*int64(os.Getpagesize())+commitRecordAt)
	return err
}

// relDamageRun opens the damaged file at path and runs every operation on
// it. It returns the outcome: "correct" (everything returned the final
// content), "error" (some calls
// failed with an allowed error, the rest returned correct data), or a
// failure: "wrong", "bad-error", "check-missed", "panic".
func relDamageRun(path string, open func(string) (*Store, error), c relDamageCase, want []Record) (outcome, detail string) {
	defer func() {
		if r := recover(); r != nil {
			outcome, detail = "panic", fmt.Sprint(r)
		}
	}()
	ctx := context.Background()
	var errs []string
	// allowed reports whether err is a failure the store may give for a
	// damaged file, and notes it: it names the file, and an ErrCorrupt
	// says what to do: run check, or, where nothing is left to check,
	// restore a backup (Check's own report need not tell to run check).
	allowed := func(op string, err error) bool {
		msg := err.Error()
		advice := op == "Check" || strings.Contains(msg, "ehcheckpoints check") || strings.Contains(msg, "restore it from a backup")
		ok := strings.Contains(msg, path) &&
			(errors.Is(err, ErrCorrupt) && advice || errors.Is(err, ErrUnsupportedFormat))
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: %v", op, err))
		}
		return ok
	}
	s, err := open(path)
	// Salvage, on the same damaged file, returns only records it held.
	salvaged, _, salvageErr := Salvage(ctx, path)
	if d := relJudgeSalvage(salvaged, want); d != "" {
		if s != nil {
			s.Close()
		}
		return "wrong", d
	}
	if err != nil {
		if !allowed("Open", err) {
			return "bad-error", strings.Join(errs, "; ")
		}
		if c.unsupported && !errors.Is(err, ErrUnsupportedFormat) {
			return "bad-error", fmt.Sprintf("Open: %v, want ErrUnsupportedFormat", err)
		}
		return "error", fmt.Sprintf("salvaged %d of %d; %v", len(salvaged), len(want), err)
	}
	defer s.Close()
	if c.mustFail && !relEveryCallFails(s) {
		return "wrong", "the store accepted a file that is not a store of this format"
	}

	// Reads: each either fails with an allowed error or matches the final
	// content. The store synced its last commit and noted that
	// (noteAcknowledged), so the content before that commit is wrong too:
	// falling back to it would lose the commit silently.
	failed := false
	var wrong []string
	judge := func(op string, err error, got func(all []Record) ([]Record, []Record, string)) {
		if err != nil {
			failed = true
			allowed(op, err)
			return
		}
		gotF, wantF, d := got(want)
		if d == "" {
			d = relRecordsDiff(gotF, wantF)
		}
		if d != "" {
			wrong = append(wrong, op+": "+d)
		}
	}
	unknown := [3]string{"relDamage-A.servicebus.windows.net", "Orders", "no-such-group"}
	for _, g := range append(slices.Clone(relDamageGroups), unknown) {
		owns, err := s.ListOwnership(ctx, g[0], g[1], g[2], nil)
		judge(fmt.Sprintf("ListOwnership(%s)", g), err, func(all []Record) ([]Record, []Record, string) {
			got, d := relOwnershipsAsRecords(owns, g)
			return got, relGroupRecords(all, g, RecordOwnership), d
		})
		cps, err := s.ListCheckpoints(ctx, g[0], g[1], g[2], nil)
		judge(fmt.Sprintf("ListCheckpoints(%s)", g), err, func(all []Record) ([]Record, []Record, string) {
			w := relGroupRecords(all, g, RecordCheckpoint)
			got, d := relCheckpointsAsRecords(cps, g, w)
			return got, w, d
		})
	}
	recs, err := s.Records(ctx, Scope{})
	judge("Records", err, func(all []Record) ([]Record, []Record, string) { return recs, all, "" })
	checkErr := s.Check(ctx)
	if checkErr != nil {
		allowed("Check", checkErr)
	}

	// Writes: renew a claim with its known etag and replace a checkpoint,
	// then read the group back with the writes applied.
	g := relDamageGroups[0]
	etag := azcore.ETag(relGroupRecords(want, g, RecordOwnership)[5].ETag)
	claimed, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2],
		PartitionID: "5", OwnerID: "damage-test", ETag: &etag}}, nil)
	claimOK := err == nil
	if err != nil {
		failed = true
		allowed("ClaimOwnership", err)
	} else if len(claimed) != 1 || claimed[0].ETag == nil || *claimed[0].ETag == etag || !claimed[0].LastModifiedTime.Equal(relDamageClock) {
		wrong = append(wrong, fmt.Sprintf("ClaimOwnership with the current etag: got %+v, want one won claim with a new etag", claimed))
	}
	seq := int64(424242)
	err = s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2],
		PartitionID: "5", SequenceNumber: &seq}, nil)
	cpOK := err == nil
	if err != nil {
		failed = true
		allowed("SetCheckpoint", err)
	}
	applyWrites := func(all []Record) []Record {
		all = slices.Clone(all)
		for i, r := range all {
			if r.Namespace != strings.ToLower(g[0]) || r.EventHub != strings.ToLower(g[1]) || r.ConsumerGroup != strings.ToLower(g[2]) || r.PartitionID != "5" {
				continue
			}
			if r.Type == RecordOwnership && claimOK && len(claimed) == 1 {
				all[i].OwnerID, all[i].ETag, all[i].LastModifiedTime = "damage-test", string(*claimed[0].ETag), relDamageClock
			}
			if r.Type == RecordCheckpoint && cpOK {
				all[i].Offset, all[i].SequenceNumber, all[i].WrittenAt = nil, &seq, relDamageClock
			}
		}
		return all
	}
	owns, err := s.ListOwnership(ctx, g[0], g[1], g[2], nil)
	judge("ListOwnership after writes", err, func(all []Record) ([]Record, []Record, string) {
		got, d := relOwnershipsAsRecords(owns, g)
		return got, relGroupRecords(applyWrites(all), g, RecordOwnership), d
	})
	cps, err := s.ListCheckpoints(ctx, g[0], g[1], g[2], nil)
	judge("ListCheckpoints after writes", err, func(all []Record) ([]Record, []Record, string) {
		w := relGroupRecords(applyWrites(all), g, RecordCheckpoint)
		got, d := relCheckpointsAsRecords(cps, g, w)
		return got, w, d
	})

	switch {
	case len(wrong) > 0:
		return "wrong", strings.Join(wrong, "; ")
	case len(errs) > 0:
		return "bad-error", strings.Join(errs, "; ")
	case failed && checkErr == nil:
		return "check-missed", "Check found nothing, but other calls failed on damage"
	case failed:
		return "error", fmt.Sprintf("salvaged %d of %d", len(salvaged), len(want))
	case salvageErr != nil || len(salvaged) != len(want):
		// Every call read the file whole, so Salvage must too.
		return "wrong", fmt.Sprintf("Salvage found %d of %d records (%v) in a file every call read whole", len(salvaged), len(want), salvageErr)
	}
	return "correct", ""
}

// relJudgeSalvage checks records Salvage returned: each must be exactly a
// record of the store's content.
func relJudgeSalvage(got, want []Record) string {
	held := map[string]Record{}
	for _, r := range want {
		held[relRecordKey(r)] = r
	}
	for _, r := range got {
		if w, ok := held[relRecordKey(r)]; !ok || relRecordDiff(r, w) != "" {
			return "Salvage returned " + relShowRecord(r) + ", which the file never held"
		}
	}
	return ""
}

// relOpenDamaged opens a damaged file as the damage cases do.
func relOpenDamaged(path string) (*Store, error) {
	return Open(path, &Options{NoSync: true, LockTimeout: 5 * time.Second, IdleRelease: time.Millisecond,
		Now: func() time.Time { return relDamageClock }})
}

// relDamageWhileIdle puts the undamaged file back at path, opens a store
// on it, waits until the store lets go of the idle file, and then writes
// the damaged content in place.
func relDamageWhileIdle(path string, good, damaged []byte) (*Store, error) {
	if err := os.WriteFile(path, good, 0o600); err != nil {
		return nil, err
	}
	s, err := relOpenDamaged(path)
	if err != nil {
		return nil, fmt.Errorf("the undamaged file: %w", err)
	}
	g := relDamageGroups[0]
	if _, err := s.ListOwnership(context.Background(), g[0], g[1], g[2], nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("the undamaged file: %w", err)
	}
	if err := relWaitUnlocked(path); err != nil {
		s.Close()
		return nil, err
	}
	// File timestamps tick in milliseconds; let the damage land in a
	// later tick than the last write, as rot does.
	time.Sleep(10 * time.Millisecond)
	before, err := os.Stat(path)
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		s.Close()
		return nil, err
	}
	// As a program that hides its write would, put the modification time
	// back: only the change time still tells.
	if err := os.Chtimes(path, time.Time{}, before.ModTime()); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// relWaitUnlocked waits until no store holds the flock of path.
func relWaitUnlocked(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if err := filelock.TryLock(f); err == nil {
			return filelock.Unlock(f)
		}
	}
	return fmt.Errorf("%s: the store kept the idle file for 5s", path)
}

// relEveryCallFails reports whether every read and write of a store on a
// file that is not a store fails.
func relEveryCallFails(s *Store) bool {
	ctx := context.Background()
	g := relDamageGroups[0]
	if _, err := s.ListOwnership(ctx, g[0], g[1], g[2], nil); err == nil {
		return false
	}
	seq := int64(1)
	return s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2],
		PartitionID: "5", SequenceNumber: &seq}, nil) != nil
}

// TestReliabilityDamageWhileOpen damages the file while a store has it
// open but idle (the lease has let go of it), so that the next write
// transaction trips over the damage inside bbolt: each page in the tree
// claims overflow pages up to the next free page, and bbolt panics when a
// commit frees it ("page already freed"). The store must contain that:
// every call returns promptly, with correct data or ErrCorrupt naming the
// file, Close returns, and the next Open refuses the file. A panic in a
// write transaction that left bbolt's writer lock held would instead make
// the lease's db.Close wait forever, and every call after it with it.
func TestReliabilityDamageWhileOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "open.db")
	relDamagePopulate(t, path)
	s, err := Open(path, &Options{NoSync: true, IdleRelease: time.Millisecond, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := relDamageGroups[0]
	if _, err := s.ListOwnership(ctx, g[0], g[1], g[2], nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the lease lets go of the idle file

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	free := relFreeIDs(data)
	damaged := 0
	for p := 2; p < len(data)/relPageSize; p++ {
		flags := binary.LittleEndian.Uint16(data[p*relPageSize+8:])
		i, _ := slices.BinarySearch(free, uint64(p))
		if flags != 0x01 && flags != 0x02 || slices.Contains(free, uint64(p)) || i == len(free) {
			continue
		}
		binary.LittleEndian.PutUint32(data[p*relPageSize+12:], uint32(free[i]-uint64(p)))
		damaged++
	}
	if damaged == 0 {
		t.Fatal("no page in use lies below a free page; nothing to damage")
	}
	// Write in place, as rot would: the store keeps its path, not a handle.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	seq := int64(7)
	calls := []struct {
		name string
		call func() error
	}{
		{"SetCheckpoint", func() error {
			return s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2], PartitionID: "5", SequenceNumber: &seq}, nil)
		}},
		{"ClaimOwnership", func() error {
			_, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2], PartitionID: "new", OwnerID: "o"}}, nil)
			return err
		}},
		{"ListOwnership", func() error {
			// The refused writes must not show; the rest is unchanged.
			owns, err := s.ListOwnership(ctx, g[0], g[1], g[2], nil)
			if err == nil {
				got, d := relOwnershipsAsRecords(owns, g)
				if d == "" {
					d = relRecordsDiff(got, relGroupRecords(relDamageExpect(), g, RecordOwnership))
				}
				if d != "" {
					t.Errorf("ListOwnership after the damage: %s", d)
				}
			}
			return err
		}},
		{"SetCheckpoint again", func() error {
			return s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: g[0], EventHubName: g[1], ConsumerGroup: g[2], PartitionID: "6", SequenceNumber: &seq}, nil)
		}},
		{"Check", func() error { return s.Check(ctx) }},
		{"Close", s.Close},
	}
	failed := 0
	for _, c := range calls {
		done := make(chan error, 1)
		go func() { done <- c.call() }()
		select {
		case err := <-done:
			if err != nil {
				failed++
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
					t.Errorf("%s on a file damaged while open: %v; want ErrCorrupt naming the file", c.name, err)
				}
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s on a file damaged while open did not return within 20s:\n%s", c.name, relGoroutineDump())
		}
	}
	if failed == 0 {
		t.Fatal("no call noticed the damage")
	}
	if s2, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("Open after the damage: %v; want ErrCorrupt", err)
	}
}

// relFreeIDs returns the sorted ids of a bbolt file's freelist.
func relFreeIDs(data []byte) []uint64 {
	fl := relFreelistPage(data)
	if fl == 0 {
		return nil
	}
	at := fl * relPageSize
	var ids []uint64
	for i := range int(binary.LittleEndian.Uint16(data[at+10:])) {
		ids = append(ids, binary.LittleEndian.Uint64(data[at+16+8*i:]))
	}
	slices.Sort(ids)
	return ids
}
