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
