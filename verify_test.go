package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
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

// TestGroupDamageIsCaught changes the groups and record keys as damage
// could, each change leaving bbolt's pages sound: records some group's
// lists would no longer find, or find under the wrong group. Open must
// refuse each file as damaged, naming it and what is wrong.
func TestGroupDamageIsCaught(t *testing.T) {
	groupKeyOfName := func(group string) []byte { return newGroupKey(testNS, testHub, group).key }
	for _, c := range []struct {
		name   string
		change func(tx *bolt.Tx) error
		want   string
	}{
		{"group entry lost", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketGroups).Delete(groupKeyOfName("alpha"))
		}, "no consumer group has the id"},
		{"two groups share an id", func(tx *bolt.Tx) error {
			g := tx.Bucket(bucketGroups)
			return g.Put(groupKeyOfName("bravo"), bytes.Clone(g.Get(groupKeyOfName("alpha"))))
		}, "have the same id"},
		{"group key without its last name", func(tx *bolt.Tx) error {
			g := tx.Bucket(bucketGroups)
			k := groupKeyOfName("alpha")
			id := bytes.Clone(g.Get(k))
			if err := g.Delete(k); err != nil {
				return err
			}
			return g.Put(k[:len(k)-1], id)
		}, "consumer group key"},
		{"record key with a longer encoding of its group id", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketCheckpoint)
			k, v := c.Cursor().First()
			k, v = bytes.Clone(k), bytes.Clone(v)
			if err := c.Delete(k); err != nil {
				return err
			}
			return c.Put(append([]byte{groupIDShort, k[0]}, k[1:]...), v)
		}, "has no group id"},
		{"group sequence behind the ids given", func(tx *bolt.Tx) error {
			return tx.Bucket(bucketGroups).SetSequence(1)
		}, "beyond the last one given"},
		{"group entry's flag made it a bucket", func(tx *bolt.Tx) error {
			g := tx.Bucket(bucketGroups)
			if err := g.Delete(groupKeyOfName("alpha")); err != nil {
				return err
			}
			_, err := g.CreateBucket(groupKeyOfName("alpha"))
			return err
		}, "is malformed"},
		{"bucket renamed", func(tx *bolt.Tx) error {
			// bbolt renames no bucket: copy o to p and delete o.
			p, err := tx.CreateBucket([]byte("p"))
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketOwnership).ForEach(func(k, v []byte) error { return p.Put(bytes.Clone(k), bytes.Clone(v)) }); err != nil {
				return err
			}
			return tx.DeleteBucket(bucketOwnership)
		}, `unexpected bucket "p"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cp.db")
			s := openTestStore(t, path, nil)
			for _, group := range []string{"alpha", "bravo"} {
				cp := checkpoint("0", nil, ptr(int64(1)))
				cp.ConsumerGroup = group
				if err := s.SetCheckpoint(context.Background(), cp, nil); err != nil {
					t.Fatal(err)
				}
				o := ownership("0", "me", nil)
				o.ConsumerGroup = group
				if _, err := s.ClaimOwnership(context.Background(), []azeventhubs.Ownership{o}, nil); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			if err := relUpdateAsStore(path, c.change); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open accepted the file")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v; want ErrCorrupt naming the file and saying %q", err, c.want)
			}
		})
	}
}

// TestGroupIDsAreNeverShared damages what gives and finds group ids in a
// file the store already has open, where only the write or read itself can
// notice: a groups sequence set back, which would hand a new group the id
// of one that has records, and a group entry turned into a bucket, which
// would make its records seem gone. Both must be errors.
func TestGroupIDsAreNeverShared(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "plain.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	alpha, bravo := newGroupKey(testNS, testHub, "alpha"), newGroupKey(testNS, testHub, "bravo")
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initBolt(tx); err != nil {
			return err
		}
		id, err := groupIDFor(tx, alpha)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketCheckpoint).Put(recordKey(id, appendPartitionKey(nil, "0")), []byte("record")); err != nil {
			return err
		}
		if err := tx.Bucket(bucketGroups).SetSequence(0); err != nil {
			return err
		}
		if id, err := groupIDFor(tx, bravo); err == nil || !strings.Contains(err.Error(), "sequence is damaged") {
			t.Errorf("a new group after the sequence was set back: id %x, %v; want an error", id, err)
		}
		g := tx.Bucket(bucketGroups)
		if err := g.Delete(alpha.key); err != nil {
			return err
		}
		if _, err := g.CreateBucket(bytes.Clone(alpha.key)); err != nil {
			return err
		}
		if id, err := lookupGroup(tx, alpha); err == nil {
			t.Errorf("a group entry that is a bucket: id %x, no error", id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBboltCheckPanicReadsAsDamage zeroes a meta page, on which bbolt's
// own consistency check panics: Open reports damage, naming where the
// check stopped, not a "panic".
func TestBboltCheckPanicReadsAsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.db")
	s := openTestStore(t, path, nil)
	if err := s.SetCheckpoint(context.Background(), checkpoint("0", nil, ptr(int64(1))), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(data[:os.Getpagesize()])
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, nil)
	if err == nil {
		s.Close()
	}
	assertError(t, err, ErrCorrupt, path, "bbolt's consistency check stopped at")
	if strings.Contains(err.Error(), "panic") {
		t.Errorf("the error reads as a crash: %v", err)
	}
}
