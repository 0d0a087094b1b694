package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/fsync"
)

// TestTornCommitFallsBack simulates a power cut during a commit's one
// fsync: the disk then holds any mix of the commit's writes, down to single
// 512-byte sectors of a page. From each such file the store must open
// either the commit before (which the caller was never told succeeded) or
// the commit whole, and pass Check: never a damaged file, never a mix.
//
// In the noted variant the store is closed and reopened before the cut
// commit, so the commit before it carries the acknowledged note: the cut
// must still fall back, never be refused as damage.
func TestTornCommitFallsBack(t *testing.T) {
	for _, noted := range []bool{false, true} {
		t.Run(fmt.Sprint("noted=", noted), func(t *testing.T) { testTornCommitFallsBack(t, noted) })
	}
}

func testTornCommitFallsBack(t *testing.T, noted bool) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.db")
	// The store must not let go of the file, and note its last commit,
	// before the test copies it.
	held := &Options{IdleRelease: time.Hour}
	s := openTestStore(t, path, held)
	const groups, partitions = 3, 16
	claim := func(etags []*azcore.ETag, owner string) []azeventhubs.Ownership {
		// Sixteen partitions in each of three groups: more ownership
		// records than one page holds, so the commit writes several.
		var claims []azeventhubs.Ownership
		for i, e := range etags {
			o := ownership(fmt.Sprint(i%partitions), owner, e)
			o.ConsumerGroup = fmt.Sprint("group-", i/partitions)
			claims = append(claims, o)
		}
		won, err := s.ClaimOwnership(ctx, claims, nil)
		if err != nil || len(won) != len(etags) {
			t.Fatalf("claim: %v, won %d of %d", err, len(won), len(etags))
		}
		return won
	}
	// Two commits first: the second is the first one-sync commit.
	first := claim(make([]*azcore.ETag, groups*partitions), "first")
	seq := int64(1)
	if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	if noted {
		s.Close()
		s = openTestStore(t, path, held)
		if !acknowledgedNoted(t, path) {
			t.Fatal("the last commit is not noted as acknowledged")
		}
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !noted {
		// The store notes each commit after its sync; a machine crash
		// before that note reached the disk leaves the file without it.
		before = withoutNote(t, before)
	}
	// The commit that is cut: a renewal of every partition and, in the
	// same batch, nothing else, so that it is all or nothing.
	renewals := make([]*azcore.ETag, len(first))
	for i, o := range first {
		renewals[i] = o.ETag
	}
	second := claim(renewals, "second")
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	const sector = 512
	var changed []int // sectors the commit wrote
	for at := 0; at < len(after); at += sector {
		end := min(at+sector, len(after))
		if at >= len(before) || !bytes.Equal(before[at:end], after[at:end]) {
			changed = append(changed, at)
		}
	}
	if len(changed) < 6 {
		t.Fatalf("the commit changed %d sectors; the test needs a commit that writes several pages", len(changed))
	}
	owners := func(list []azeventhubs.Ownership) string {
		var b []byte
		for _, o := range list {
			b = fmt.Appendf(b, "%s/%s:%s:%s ", o.ConsumerGroup, o.PartitionID, o.OwnerID, *o.ETag)
		}
		return string(b)
	}
	wantBefore, wantAfter := owners(first), owners(second)
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := map[string]int{}
	pageSize := metaPageSize(after)
	cutTxID := max(metaTxID(after[:pageSize]), metaTxID(after[pageSize:2*pageSize]))
	notePage := int(metaPageAt(cutTxID-1, pageSize))
	for i := range 300 {
		torn := append([]byte(nil), before...)
		torn = append(torn, make([]byte, max(0, len(after)-len(before)))...)
		// Case 0 lands everything, case 1 nothing; the rest a random mix.
		for _, at := range changed {
			land := i == 0 || i > 1 && rng.IntN(2) == 0
			if at >= notePage && at < notePage+pageSize {
				// The note that the commit was acknowledged is written
				// after its sync, so it reaches the disk after all of it.
				land = i == 0
			}
			if land {
				copy(torn[at:min(at+sector, len(after))], after[at:])
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("torn-%d.db", i))
		if err := os.WriteFile(p, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		// Salvage reads the file as Open will, before Open repairs it.
		salvaged, lost, err := Salvage(ctx, p)
		if err != nil || len(lost) > 0 {
			t.Fatalf("case %d: Salvage of a file cut during a commit: %v, lost %v", i, err, lost)
		}
		var salvagedOwners []azeventhubs.Ownership
		for _, r := range salvaged {
			if r.Type == RecordOwnership {
				etag := azcore.ETag(r.ETag)
				salvagedOwners = append(salvagedOwners, azeventhubs.Ownership{ConsumerGroup: r.ConsumerGroup, PartitionID: r.PartitionID, OwnerID: r.OwnerID, ETag: &etag})
			}
		}
		listAll := func(s *Store) []azeventhubs.Ownership {
			var list []azeventhubs.Ownership
			for g := range 3 {
				l, err := s.ListOwnership(ctx, testNS, testHub, fmt.Sprint("group-", g), nil)
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				list = append(list, l...)
			}
			return list
		}
		// A read-only store, which cannot undo the commit, reads the file
		// as Open will unless the commit must be undone, and then refuses.
		var readOnlyList []azeventhubs.Ownership
		rs, readOnlyErr := Open(p, &Options{ReadOnly: true})
		if readOnlyErr == nil {
			readOnlyList = listAll(rs)
			rs.Close()
		}
		ts, err := Open(p, nil)
		if err != nil {
			t.Fatalf("case %d: Open of a file cut during a commit: %v", i, err)
		}
		undone, undid := ts.UndoneCommit()
		list := listAll(ts)
		switch {
		case undid && !errors.Is(readOnlyErr, ErrReadOnly):
			t.Fatalf("case %d: read-only Open of a file whose last commit needs undoing: %v, want ErrReadOnly", i, readOnlyErr)
		case !undid && readOnlyErr != nil:
			t.Fatalf("case %d: read-only Open: %v", i, readOnlyErr)
		case !undid && owners(readOnlyList) != owners(list):
			t.Fatalf("case %d: read-only Open gives ownerships %s, Open %s", i, owners(readOnlyList), owners(list))
		}
		if got, salvaged := owners(list), owners(salvagedOwners); got != salvaged {
			t.Fatalf("case %d: Open gives ownerships %s, Salvage %s", i, got, salvaged)
		}
		switch got := owners(list); {
		case got == wantBefore && undid:
			outcomes["undone"]++
			if undone != cutTxID {
				t.Fatalf("case %d: UndoneCommit says %d, want the cut commit, %d", i, undone, cutTxID)
			}
		case got == wantBefore:
			outcomes["before"]++
		case got == wantAfter && !undid:
			outcomes["after"]++
		case got == wantAfter:
			t.Fatalf("case %d: opened after the commit, yet UndoneCommit says it undid commit %d", i, undone)
		default:
			t.Fatalf("case %d: ownerships %s, want %s (before the commit) or %s (after)", i, got, wantBefore, wantAfter)
		}
		if err := ts.Check(ctx); err != nil {
			t.Fatalf("case %d: Check: %v", i, err)
		}
		// The file takes new commits after falling back.
		if err := ts.SetCheckpoint(ctx, checkpoint("1", nil, &seq), nil); err != nil {
			t.Fatalf("case %d: a commit after the fallback: %v", i, err)
		}
		ts.Close()
		os.Remove(p)
	}
	t.Logf("%d sectors written by the commit; of 300 cuts, %d opened as before it without and %d with undoing it, %d as after it", len(changed), outcomes["before"], outcomes["undone"], outcomes["after"])
	if outcomes["before"] == 0 || outcomes["undone"] == 0 || outcomes["after"] == 0 {
		t.Errorf("outcomes %v: the cuts should produce all three", outcomes)
	}
}

// TestFailedSyncIsReverted makes a commit's fdatasync fail, as a disk error
// does. The commit is then in the page cache, whole, and on Linux a second
// sync reports success without writing it; the store must undo the commit
// rather than build on it: the caller was told it failed, and from then on
// the store, and a store opened afresh, must show the value before it.
func TestFailedSyncIsReverted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	set := func(s *Store, seq int64) error { return s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil) }
	stored := func(s *Store) int64 {
		t.Helper()
		cps, err := s.ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
		if err != nil || len(cps) != 1 {
			t.Fatalf("ListCheckpoints: %v, %d checkpoints", err, len(cps))
		}
		return *cps[0].SequenceNumber
	}
	if err := set(s, 1); err != nil {
		t.Fatal(err)
	}

	failures := 1
	syncData = func(f *os.File) error {
		if failures > 0 {
			failures--
			return syscall.EIO
		}
		return fsync.Fdatasync(f)
	}
	t.Cleanup(func() { syncData = fsync.Fdatasync })
	if err := set(s, 2); !errors.Is(err, syscall.EIO) {
		t.Fatalf("SetCheckpoint whose sync failed: got %v, want EIO", err)
	}
	if got := stored(s); got != 1 {
		t.Errorf("after the failed commit the store shows sequence number %d, want 1", got)
	}
	if got := stored(openTestStore(t, path, nil)); got != 1 {
		t.Errorf("a store opened after the failed commit shows sequence number %d, want 1", got)
	}

	if err := set(s, 3); err != nil {
		t.Fatalf("SetCheckpoint after the failed one: %v", err)
	}
	s.Close()
	s = openTestStore(t, path, nil)
	if got := stored(s); got != 3 {
		t.Errorf("after reopening, sequence number %d, want 3", got)
	}
	if err := s.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestDamagedAcknowledgedCommitIsReported damages the newest commit of a
// file its store noted as acknowledged, once after Close and once in a copy
// taken while the store held the file, as a process that died left it: the
// store notes each commit right after its sync. Open must report the damage
// instead of falling back to the commit before, which would silently lose
// a checkpoint. The same damage to a copy without the note, as a machine
// that crashed before the note reached the disk leaves it, still falls
// back: it could be a crash during the commit's sync.
func TestDamagedAcknowledgedCommitIsReported(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.db")
	s := openTestStore(t, path, &Options{IdleRelease: time.Hour}) // no note before Close
	for seq := range int64(3) {
		if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
			t.Fatal(err)
		}
	}
	held, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	closed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unnoted := withoutNote(t, held)
	last, ok := newestCommitRecord(t, path)
	txid, pageSize := last.txid, os.Getpagesize()
	if !ok || len(last.pages) == 0 {
		t.Fatalf("the last commit has no record of its pages (%v)", ok)
	}
	dataPage := int(last.pages[0].id)
	damages := []struct {
		name, want string
		at         int // byte offset to flip
	}{
		{"a page the commit wrote", fmt.Sprintf("page %d, written by commit %d", dataPage, txid), dataPage*pageSize + pageSize/2},
		{"its meta page", fmt.Sprintf("meta page of commit %d", txid), int(metaPageAt(txid, pageSize)) + metaTxIDAt},
		{"its commit record", fmt.Sprintf("commit record of commit %d", txid), int(metaPageAt(txid, pageSize)) + commitRecordAt + commitRecordHeader},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			damaged := func(data []byte) string {
				p := filepath.Join(t.TempDir(), "damaged.db")
				data = bytes.Clone(data)
				data[d.at] ^= 0x55
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			for name, noted := range map[string][]byte{"after Close": closed, "held": held} {
				p := damaged(noted)
				if ds, err := Open(p, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), d.want) {
					if err == nil {
						ds.Close()
					}
					t.Errorf("%s: Open of a file whose acknowledged last commit is damaged: %v, want ErrCorrupt naming %q", name, err, d.want)
				}
				// Salvage reads what is left and says what it lost.
				if records, lost, err := Salvage(ctx, p); err != nil || len(lost) == 0 || !strings.Contains(lost[0].Error(), d.want) {
					t.Errorf("%s: Salvage: %d records, lost %v, %v; want the loss named first", name, len(records), lost, err)
				}
			}
			// Without the note the same damage is a commit cut short.
			ds, err := Open(damaged(unnoted), nil)
			if err != nil {
				t.Fatalf("Open without the note: %v", err)
			}
			defer ds.Close()
			cps, err := ds.ListCheckpoints(ctx, testNS, testHub, testGroup, nil)
			if err != nil || len(cps) != 1 || *cps[0].SequenceNumber != 1 {
				t.Errorf("without the note: %v, %+v; want the commit before the last (sequence 1)", err, cps)
			}
		})
	}
}

// withoutNote returns a copy of the store file data whose newest commit is
// not noted as acknowledged.
func withoutNote(t *testing.T, data []byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "unnote.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	before, ok := commitRecordBack(t, p, 1)
	if !ok || before.flags&recordNextAcknowledged == 0 {
		t.Fatalf("the newest commit is not noted (record before it: %v)", ok)
	}
	before.flags &^= recordNextAcknowledged
	out := bytes.Clone(data)
	copy(out[int(metaPageAt(before.txid, os.Getpagesize()))+commitRecordAt:], before.encode())
	return out
}

// newestCommitRecord reads the record of the newest commit in the file at
// path; ok is false when it has none.
func newestCommitRecord(t *testing.T, path string) (r commitRecord, ok bool) {
	t.Helper()
	return commitRecordBack(t, path, 0)
}

// acknowledgedNoted reports whether the newest commit of the file at path
// is noted as acknowledged (noteAcknowledged), in the record before it.
func acknowledgedNoted(t *testing.T, path string) bool {
	t.Helper()
	before, ok := commitRecordBack(t, path, 1)
	return ok && before.flags&recordNextAcknowledged != 0
}

// commitRecordBack reads the record of the commit back commits before the
// newest in the file at path.
func commitRecordBack(t *testing.T, path string, back uint64) (commitRecord, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	newest, _ := newestMeta(f)
	if newest == nil || metaTxID(newest) < back {
		t.Fatal("no such commit in the file")
	}
	return readCommitRecord(f, metaTxID(newest)-back, metaPageSize(newest))
}

// TestOnlyOwnSyncedCommitIsNoted: a store notes a commit as acknowledged
// only if it synced that commit itself. A NoSync store's commits are not
// known to be on disk, and a commit a store merely found in the file may
// be another process's, whose failed sync it cannot see.
func TestOnlyOwnSyncedCommitIsNoted(t *testing.T) {
	ctx := context.Background()
	set := func(s *Store, seq int64) error { return s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil) }
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, path string)
		want bool
	}{
		{"synced commits", func(t *testing.T, path string) {
			s := openTestStore(t, path, nil)
			for seq := range int64(3) {
				if err := set(s, seq); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
		}, true},
		{"NoSync", func(t *testing.T, path string) {
			s := openTestStore(t, path, &Options{NoSync: true})
			for seq := range int64(3) {
				if err := set(s, seq); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
		}, false},
		{"found in the file", func(t *testing.T, path string) {
			// A copy taken while the writer still held the file: as a
			// writer that died left it.
			other := filepath.Join(t.TempDir(), "writer.db")
			w := openTestStore(t, other, &Options{IdleRelease: time.Hour})
			for seq := range int64(3) {
				if err := set(w, seq); err != nil {
					t.Fatal(err)
				}
			}
			// The writer noted its commit after the sync; a machine
			// crash can keep that note from the disk.
			held, err := os.ReadFile(other)
			if err != nil {
				t.Fatal(err)
			}
			data := withoutNote(t, held)
			w.Close()
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s := openTestStore(t, path, nil)
			if _, err := s.ListCheckpoints(ctx, testNS, testHub, testGroup, nil); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.db")
			tc.run(t, path)
			if got := acknowledgedNoted(t, path); got != tc.want {
				t.Errorf("newest commit noted as acknowledged: %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCommitRecordListsEveryWrittenPage checks the commit record against
// the file: every page a commit changed must be in its record, with its
// checksum. Two stores take turns on the file, each commit by the store
// that did not make the one before it, so a store that took the previous
// commit's meta page and freelist from its own last commit, rather than
// from the file, would list the wrong pages.
func TestCommitRecordListsEveryWrittenPage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	stores := []*Store{openTestStore(t, path, nil), openTestStore(t, path, nil)}
	pageSize := os.Getpagesize()
	for i := range 12 {
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seq := int64(i)
		cp := checkpoint(fmt.Sprint(i%3), nil, &seq)
		if i%4 == 3 {
			cp.ConsumerGroup = fmt.Sprint("group-", i) // a new group: more pages
		}
		if err := stores[i%2].SetCheckpoint(ctx, cp, nil); err != nil {
			t.Fatal(err)
		}
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		record, ok := newestCommitRecord(t, path)
		if !ok {
			t.Fatalf("commit %d: no record", i)
		}
		if record.flags&recordSynced != 0 {
			continue // its pages were synced before the record: it lists none
		}
		listed := map[uint64]uint32{}
		for _, p := range record.pages {
			listed[p.id] = p.sum
		}
		for id := 2; (id+1)*pageSize <= len(after); id++ {
			page := after[id*pageSize : (id+1)*pageSize]
			if (id+1)*pageSize <= len(before) && bytes.Equal(page, before[id*pageSize:(id+1)*pageSize]) {
				continue
			}
			sum, ok := listed[uint64(id)]
			if !ok {
				t.Fatalf("commit %d (txid %d, by store %d): page %d changed but is not in its record %v", i, record.txid, i%2, id, record.pages)
			}
			if sum != crc32.Checksum(page, castagnoli) {
				t.Fatalf("commit %d: page %d's checksum in the record does not match the page", i, id)
			}
		}
	}
}
