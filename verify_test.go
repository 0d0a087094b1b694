package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestDamagedPointersAreCaught bends one branch-page pointer at a time to
// an ancestor, to itself and outside the file: bbolt would recurse forever
// or fault, so Open must refuse the file first.
func TestDamagedPointersAreCaught(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.db")
	s := openTestStore(t, path, &Options{NoSync: true})
	for g := range 300 {
		cp := checkpoint("0", nil, ptr(int64(g)))
		cp.ConsumerGroup = fmt.Sprintf("group-%03d", g)
		if err := s.SetCheckpoint(context.Background(), cp, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	reachable := reachablePages(t, path)
	var branches []int
	for id := 2; (id+1)*pageSize <= len(clean); id++ {
		page := clean[id*pageSize:]
		if reachable[uint64(id)] && binary.NativeEndian.Uint16(page[8:]) == branchPageFlag {
			branches = append(branches, id)
		}
	}
	if len(branches) == 0 {
		t.Fatal("the populated store has no branch page to damage")
	}
	// Damage in a page the last commit wrote makes the store fall back to
	// the commit before it (commit.go), which is intact.
	lastCommit := relLastCommitPages(clean)
	for _, id := range branches {
		for _, target := range []uint64{uint64(id), 3, 1 << 20, 1 << 50} {
			damaged := append([]byte(nil), clean...)
			// The first element's child pointer.
			binary.NativeEndian.PutUint64(damaged[id*pageSize+pageHeaderSize+8:], target)
			bad := filepath.Join(dir, fmt.Sprintf("bad-%d-%d.db", id, target))
			if err := os.WriteFile(bad, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			store, err := Open(bad, nil)
			if err == nil {
				// A pointer that happens to stay valid must still give
				// correct data or an error; listing is the check.
				_, err = store.ListCheckpoints(context.Background(), testNS, testHub, "group-000", nil)
				store.Close()
			}
			if err != nil {
				assertError(t, err, ErrCorrupt, bad, "ehcheckpoints check")
			}
			if target == uint64(id) && err == nil && !lastCommit[id] {
				t.Fatalf("page %d pointing at itself was not noticed", id)
			}
		}
	}
}

// reachablePages lists the pages in use in a healthy store file.
func reachablePages(t *testing.T, path string) map[uint64]bool {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seen map[uint64]bool
	err = db.View(func(tx *bolt.Tx) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		v := &pageVerifier{newPageReader(f, db.Info().PageSize, uint64(tx.Size())/uint64(db.Info().PageSize))}
		clear(v.seen)
		err = v.walk(uint64(tx.Cursor().Bucket().Root()), 0)
		seen = v.seen
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// relLastCommitPages returns the pages the last commit in a store file's
// contents wrote, as its commit record lists them.
func relLastCommitPages(data []byte) map[int]bool {
	f, err := os.CreateTemp("", "boltstore-damage-")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		panic(err)
	}
	pages := map[int]bool{}
	if meta, _ := newestMeta(f); meta != nil {
		if r, ok := readCommitRecord(f, metaTxID(meta), metaPageSize(meta)); ok {
			for _, p := range r.pages {
				pages[int(p.id)] = true
			}
		}
	}
	return pages
}
