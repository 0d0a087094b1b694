package boltstore

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPartitionKeysSortNumerically(t *testing.T) {
	ids := []string{"0", "1", "2", "9", "10", "99", "100", "999999999999999999", "00", "007", "1000000000000000000", "a", "b"}
	for i := 1; i < len(ids); i++ {
		a, b := appendPartitionKey(nil, ids[i-1]), appendPartitionKey(nil, ids[i])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("key of %q does not sort before key of %q", ids[i-1], ids[i])
		}
	}
}

// FuzzNames checks name handling: every string is either refused with
// ErrInvalidArgument or accepted, and an accepted partition id survives its
// key exactly, keys of distinct ids differ, and numeric ids keep their
// order.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"0", "17", "007", "$Default", "a/../b", "\x00", "\xff\xfe", strings.Repeat("n", 70000), "Ünïcödé", "\u212a"} {
		f.Add(s, "1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, s := range []string{a, b} {
			err := checkName("PartitionID", s, true)
			valid := s != "" && len(s) <= maxNameLen && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) })
			if valid != (err == nil) {
				t.Fatalf("checkName(%q) = %v, want valid=%v", s, err, valid)
			}
			if err != nil && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("checkName(%q) = %v, not ErrInvalidArgument", s, err)
			}
			if err == nil {
				id, ok := partitionIDBytes(appendPartitionKey(nil, s))
				if !ok || string(id) != s {
					t.Fatalf("partition %q came back as %q (ok=%v)", s, id, ok)
				}
				folded := appendFolded(nil, s)
				if !bytes.Equal(folded, appendFolded(nil, strings.ToUpper(s))) && strings.ToLower(strings.ToUpper(s)) == strings.ToLower(s) {
					t.Fatalf("%q and its upper case fold differently", s)
				}
			}
		}
		ka, kb := appendPartitionKey(nil, a), appendPartitionKey(nil, b)
		if (a == b) != bytes.Equal(ka, kb) {
			t.Fatalf("ids %q and %q: keys %x and %x", a, b, ka, kb)
		}
		na, errA := strconv.ParseUint(a, 10, 64)
		nb, errB := strconv.ParseUint(b, 10, 64)
		if errA == nil && errB == nil && isCanonicalNumber(a) && isCanonicalNumber(b) && (na < nb) != (bytes.Compare(ka, kb) < 0) {
			t.Fatalf("numeric ids %q and %q sort wrongly", a, b)
		}
		if id, ok := partitionIDBytes([]byte(a)); ok && !bytes.Equal(appendPartitionKey(nil, string(id)), []byte(a)) {
			t.Fatalf("partitionIDBytes accepted %x, which is not the key of %q", a, id)
		}
	})
}

// FuzzGroupKeys checks the keys of the flat layout: a group key of valid
// names splits back into those names folded, group keys of distinct
// groups differ, group id encodings sort as the ids do and none is a
// prefix of another, and only the shortest encoding of an id is read, so
// that each group's records are one run of keys that no other group's
// share. Arbitrary bytes never panic the parsers, and whatever they accept
// encodes back to the same bytes.
func FuzzGroupKeys(f *testing.F) {
	f.Add("ns", "hub", "$Default", "NS", "Hub", "$default", uint64(1), []byte{0x01, 0x00, 0x01, '0'})
	f.Add("a", "b\x00c", "d", "a", "b", "c\x00d", uint64(300), []byte{0xF8, 0x01})
	f.Add("a", "b", "c", "a", "b", "c", uint64(0xF7), []byte{0xF9, 0x00, 0xFF})
	// 1024 bytes as given and 1536 folded, then 1023 folded.
	f.Add(strings.Repeat("\u023a", 512), "b", "c", "a", strings.Repeat("\u023a", 341), "c", uint64(1), []byte{})
	f.Fuzz(func(t *testing.T, ns, hub, group, ns2, hub2, group2 string, id uint64, raw []byte) {
		if checkGroup(ns, hub, group) == nil && checkGroup(ns2, hub2, group2) == nil {
			a, b := newGroupKey(ns, hub, group), newGroupKey(ns2, hub2, group2)
			// Stored names read back valid.
			for _, name := range [][]byte{a.namespace, a.hub, a.group} {
				if err := checkName("name", string(name), true); err != nil {
					t.Fatalf("accepted group %q stores a name that does not validate: %v", []string{ns, hub, group}, err)
				}
			}
			if !bytes.Equal(a.namespace, appendFolded(nil, ns)) || !bytes.Equal(a.hub, appendFolded(nil, hub)) || !bytes.Equal(a.group, appendFolded(nil, group)) {
				t.Fatalf("group key %q split into %q, %q, %q", a.key, a.namespace, a.hub, a.group)
			}
			same := bytes.Equal(a.namespace, b.namespace) && bytes.Equal(a.hub, b.hub) && bytes.Equal(a.group, b.group)
			if same != bytes.Equal(a.key, b.key) {
				t.Fatalf("groups %q and %q: keys %q and %q", []string{ns, hub, group}, []string{ns2, hub2, group2}, a.key, b.key)
			}
		}
		encoded := appendGroupID(nil, id)
		key := recordKey(encoded, []byte{partitionNumeric, 1, '7'})
		if got, partitionKey, ok := splitRecordKey(key); !ok || got != id || string(partitionKey) != "\x00\x017" {
			t.Fatalf("record key %x of id %d split into %d, %x, %v", key, id, got, partitionKey, ok)
		}
		for _, other := range []uint64{id + 1, id ^ 0xFF, id >> 3, id << 5} {
			o := appendGroupID(nil, other)
			if other != id && (bytes.HasPrefix(o, encoded) || bytes.HasPrefix(encoded, o)) {
				t.Fatalf("ids %d and %d: %x and %x, one a prefix of the other", id, other, encoded, o)
			}
			if (id < other) != (bytes.Compare(encoded, o) < 0) {
				t.Fatalf("ids %d and %d: %x and %x sort the other way", id, other, encoded, o)
			}
		}
		if g, ok := splitGroupKey(raw); ok && !bytes.Equal(groupKeyOf(g.namespace, g.hub, g.group).key, raw) {
			t.Fatalf("splitGroupKey accepted %q, which is not the key of its names", raw)
		}
		if got, ok := parseGroupID(raw); ok && !bytes.Equal(appendGroupID(nil, got), raw) {
			t.Fatalf("parseGroupID accepted %x, which is not the shortest encoding of %d", raw, got)
		}
		if got, partitionKey, ok := splitRecordKey(raw); ok && !bytes.Equal(recordKey(appendGroupID(nil, got), partitionKey), raw) {
			t.Fatalf("splitRecordKey accepted %x, which does not begin with the shortest encoding of %d", raw, got)
		}
	})
}
