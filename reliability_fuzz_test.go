package boltstore

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// Hostile input: every entry point either stores exactly what it was
// given and hands it back, or refuses with ErrInvalidArgument and writes
// nothing. Plain names (relPlainName) must be accepted, so a store that
// refused everything would fail.

// relFuzzStore opens a store for one fuzz target; fuzzing runs the target
// many times in each worker process, against the same store.
func relFuzzStore(f *testing.F) *Store {
	s, err := Open(filepath.Join(f.TempDir(), "fuzz.db"), &Options{NoSync: true, IdleRelease: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	return s
}

// relPlainName reports whether s is a name any store must accept: the
// characters Event Hubs itself allows in names, and a sane length.
func relPlainName(s string) bool {
	return len(s) > 0 && len(s) <= 64 && !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(".-_$", r))
	})
}

// relMustBeInvalid fails unless err is ErrInvalidArgument naming the file.
func relMustBeInvalid(t *testing.T, s *Store, op string, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("%s: %v; want ErrInvalidArgument naming the file", op, err)
	}
}

// relASCIIUpper changes the case of ASCII letters only, which the store
// must treat as the same coordinates.
func relASCIIUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func FuzzRelClaimOwnership(f *testing.F) {
	long := strings.Repeat("n", 64<<10)
	for _, c := range []struct {
		ns, hub, group, partition, owner, etag string
		mode                                   uint8
	}{
		{"ns.servicebus.windows.net", "hub", "$Default", "0", "owner", "", 0},
		{"ns.servicebus.windows.net", "hub", "$Default", "0", "owner", "", 3}, // renew
		{"NS.servicebus.windows.net", "HUB", "$default", "0", "", "", 3},      // relinquish, other casing
		{"ns", "hub", "g", "0", "o", "stale-etag", 2},
		{"ns", "hub", "g", "1", "o", "", 1}, // empty, non-nil etag: create only
		{"ns\x00", "hub", "g", "0", "o", "", 0},
		{"ns", "hu\xffb", "g", "0", "o", "", 0},
		{"ns", "hub", "g", "0", "o\xc3", "", 0},
		{long, "hub", "g", "0", "o", "", 0},
		{"ns", "hub", "g", long, "o", "", 0},
		{"ns", "hub", "g", "0", long, "", 0},
		{"ns", "hub", "g", "0", "o", long, 2},
		{"/", "..", "../..", "a/../b", "/etc/passwd", "..", 2},
		{"ns", "hub", "g", "", "o", "", 0},
		{"", "", "", "", "", "", 1},
		{"ns", "hub", "g", "\u212a", "ǅ", "", 0}, // Kelvin sign, titlecase
		{"ns", "hub", "g", "\u0085", "o", "", 0}, // C1 control
		{"ns", "hub", "g", "\u2028", "o", "", 0}, // line separator
		{"ns", "hub", "g", "00", "o", "", 0},     // not a canonical number
		{"ns", "hub", "g", "99999999999999999999", "o", "", 0},
		{"İstanbul", "ΣΑΣ", "ß", "Ⱥ", "o", "", 0}, // case folding that changes length
	} {
		f.Add(c.ns, c.hub, c.group, c.partition, c.owner, c.etag, c.mode)
	}
	s := relFuzzStore(f)
	f.Fuzz(func(t *testing.T, ns, hub, group, partition, owner, etag string, mode uint8) {
		ctx := context.Background()
		before, listErr := s.ListOwnership(ctx, ns, hub, group, nil)
		if listErr != nil {
			relMustBeInvalid(t, s, "ListOwnership", listErr)
		}
		i := slices.IndexFunc(before, func(o azeventhubs.Ownership) bool { return o.PartitionID == partition })
		o := azeventhubs.Ownership{FullyQualifiedNamespace: ns, EventHubName: hub, ConsumerGroup: group, PartitionID: partition, OwnerID: owner}
		switch mode % 4 {
		case 1:
			o.ETag = relPtr(azcore.ETag(""))
		case 2:
			o.ETag = relPtr(azcore.ETag(etag))
		case 3:
			if i >= 0 {
				o.ETag = before[i].ETag
			}
		}
		plain := relPlainName(ns) && relPlainName(hub) && relPlainName(group) && relPlainName(partition) &&
			(owner == "" || relPlainName(owner)) && (mode%4 != 2 || etag == "" || relPlainName(etag))

		claimed, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{o}, nil)
		if err != nil {
			relMustBeInvalid(t, s, "ClaimOwnership", err)
			if plain {
				t.Fatalf("ClaimOwnership refused plain input %+v: %v", o, err)
			}
			if listErr == nil {
				after, err := s.ListOwnership(ctx, ns, hub, group, nil)
				if err != nil || !slices.EqualFunc(before, after, relSameOwnership) {
					t.Fatalf("a refused claim changed the group: %v", err)
				}
			}
			return
		}
		if listErr != nil {
			t.Fatalf("ClaimOwnership accepted coordinates that ListOwnership refused (%v)", listErr)
		}
		want := ""
		if o.ETag != nil {
			want = string(*o.ETag)
		}
		shouldWin := want == "" && i < 0 || want != "" && i >= 0 && string(*before[i].ETag) == want
		after, err := s.ListOwnership(ctx, relASCIIUpper(ns), relASCIIUpper(hub), relASCIIUpper(group), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !shouldWin {
			if len(claimed) != 0 {
				t.Fatalf("claim with etag %q won against stored %v", want, before)
			}
			return
		}
		if len(claimed) != 1 {
			t.Fatalf("claim that should win returned %+v", claimed)
		}
		c := claimed[0]
		if c.FullyQualifiedNamespace != ns || c.EventHubName != hub || c.ConsumerGroup != group || c.PartitionID != partition ||
			c.OwnerID != owner || c.ETag == nil || *c.ETag == "" || want != "" && string(*c.ETag) == want {
			t.Fatalf("claim returned %+v for %+v", c, o)
		}
		j := slices.IndexFunc(after, func(a azeventhubs.Ownership) bool { return a.PartitionID == partition })
		if j < 0 {
			t.Fatalf("claimed partition %q missing from the list %+v", partition, after)
		}
		a := after[j]
		if a.FullyQualifiedNamespace != relASCIIUpper(ns) || a.OwnerID != owner || *a.ETag != *c.ETag || !a.LastModifiedTime.Equal(c.LastModifiedTime) {
			t.Fatalf("list returned %+v, the claim %+v", a, c)
		}
	})
}

// relSameOwnership compares what a list returns of an ownership.
func relSameOwnership(a, b azeventhubs.Ownership) bool {
	return a.PartitionID == b.PartitionID && a.OwnerID == b.OwnerID && relEqualPtr(a.ETag, b.ETag) && a.LastModifiedTime.Equal(b.LastModifiedTime)
}

func relSameCheckpoint(a, b azeventhubs.Checkpoint) bool {
	return a.PartitionID == b.PartitionID && relEqualPtr(a.Offset, b.Offset) && relEqualPtr(a.SequenceNumber, b.SequenceNumber)
}

func FuzzRelSetCheckpoint(f *testing.F) {
	for _, c := range []struct {
		ns, hub, group, partition, offset string
		hasOffset                         bool
		seq                               int64
		hasSeq                            bool
	}{
		{"ns.servicebus.windows.net", "hub", "$Default", "0", "4096", true, 17, true},
		{"ns", "hub", "g", "0", "", true, 0, false},             // empty but present offset
		{"ns", "hub", "g", "1", "", false, 0, true},             // sequence number 0 only
		{"ns", "hub", "g", "2", "", false, -1, true},            // negative
		{"ns", "hub", "g", "3", "", false, math.MinInt64, true}, // most negative
		{"ns", "hub", "g", "4", "18446744073709551615", true, math.MaxInt64, true},
		{"ns", "hub", "g", "5", strings.Repeat("9", 64<<10), true, 0, false}, // 64 KiB offset
		{"ns", "hub", "g", "6", "", false, 0, false},                         // neither
		{"ns", "hub", "g", "7", "off\x00set", true, 1, true},
		{"ns", "hub", "g", "8", "\xff", true, 1, true},
		{"../..", "/", "a/../b", "..", "/dev/null", true, 1, true},
		{"ns", "hub", "g", strings.Repeat("p", 64<<10), "1", true, 1, true},
	} {
		f.Add(c.ns, c.hub, c.group, c.partition, c.offset, c.hasOffset, c.seq, c.hasSeq)
	}
	s := relFuzzStore(f)
	f.Fuzz(func(t *testing.T, ns, hub, group, partition, offset string, hasOffset bool, seq int64, hasSeq bool) {
		ctx := context.Background()
		before, listErr := s.ListCheckpoints(ctx, ns, hub, group, nil)
		if listErr != nil {
			relMustBeInvalid(t, s, "ListCheckpoints", listErr)
		}
		cp := azeventhubs.Checkpoint{FullyQualifiedNamespace: ns, EventHubName: hub, ConsumerGroup: group, PartitionID: partition}
		if hasOffset {
			cp.Offset = &offset
		}
		if hasSeq {
			cp.SequenceNumber = &seq
		}
		plain := relPlainName(ns) && relPlainName(hub) && relPlainName(group) && relPlainName(partition) &&
			(hasSeq || hasOffset) && (!hasOffset || offset == "" || relPlainName(offset))

		err := s.SetCheckpoint(ctx, cp, nil)
		if err != nil {
			relMustBeInvalid(t, s, "SetCheckpoint", err)
			if plain {
				t.Fatalf("SetCheckpoint refused plain input %+v: %v", cp, err)
			}
			if listErr == nil {
				after, err := s.ListCheckpoints(ctx, ns, hub, group, nil)
				if err != nil || !slices.EqualFunc(before, after, relSameCheckpoint) {
					t.Fatalf("a refused checkpoint changed the group: %v", err)
				}
			}
			return
		}
		if listErr != nil {
			t.Fatalf("SetCheckpoint accepted coordinates that ListCheckpoints refused (%v)", listErr)
		}
		if !hasOffset && !hasSeq {
			t.Fatal("SetCheckpoint accepted a checkpoint with neither offset nor sequence number")
		}
		after, err := s.ListCheckpoints(ctx, relASCIIUpper(ns), relASCIIUpper(hub), relASCIIUpper(group), nil)
		if err != nil {
			t.Fatal(err)
		}
		j := slices.IndexFunc(after, func(a azeventhubs.Checkpoint) bool { return a.PartitionID == partition })
		if j < 0 || !relSameCheckpoint(after[j], cp) || after[j].ConsumerGroup != relASCIIUpper(group) {
			t.Fatalf("stored %+v, the list has %+v", cp, after)
		}
	})
}

func FuzzRelList(f *testing.F) {
	for _, c := range [][3]string{
		{"ns.servicebus.windows.net", "hub", "$Default"},
		{"ns", "hub", ""},
		{"", "", ""},
		{"ns\x00", "hub", "g"},
		{"ns", "\xfe\xff", "g"},
		{strings.Repeat("n", 64<<10), "hub", "g"},
		{"..", "/", "../../etc"},
		{"ns", "hub", "\u0000\u0085\u2028"},
	} {
		f.Add(c[0], c[1], c[2])
	}
	s := relFuzzStore(f)
	// One record of each kind in a plain group, so lists of other
	// spellings and other groups have something to get wrong.
	ctx := context.Background()
	if _, err := s.ClaimOwnership(ctx, []azeventhubs.Ownership{{FullyQualifiedNamespace: "ns", EventHubName: "hub", ConsumerGroup: "g", PartitionID: "0", OwnerID: "o"}}, nil); err != nil {
		f.Fatal(err)
	}
	if err := s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: "ns", EventHubName: "hub", ConsumerGroup: "g", PartitionID: "0", SequenceNumber: relPtr(int64(1))}, nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ns, hub, group string) {
		// Only the plain group's own spellings may list its records.
		isPlainGroup := strings.EqualFold(ns, "ns") && strings.EqualFold(hub, "hub") && strings.EqualFold(group, "g") &&
			relPlainName(ns) && relPlainName(hub) && relPlainName(group)
		owns, err := s.ListOwnership(ctx, ns, hub, group, nil)
		if err != nil {
			relMustBeInvalid(t, s, "ListOwnership", err)
		} else if (len(owns) == 1) != isPlainGroup || len(owns) > 1 ||
			len(owns) == 1 && (owns[0].FullyQualifiedNamespace != ns || owns[0].EventHubName != hub || owns[0].ConsumerGroup != group) {
			t.Fatalf("ListOwnership(%q, %q, %q) = %+v", ns, hub, group, owns)
		}
		cps, err := s.ListCheckpoints(ctx, ns, hub, group, nil)
		if err != nil {
			relMustBeInvalid(t, s, "ListCheckpoints", err)
		} else if (len(cps) == 1) != isPlainGroup || len(cps) > 1 ||
			len(cps) == 1 && (cps[0].FullyQualifiedNamespace != ns || cps[0].EventHubName != hub || cps[0].ConsumerGroup != group) {
			t.Fatalf("ListCheckpoints(%q, %q, %q) = %+v", ns, hub, group, cps)
		}
		// The admin API's scopes take any string; they only select.
		recs, err := s.Records(ctx, Scope{Namespace: ns, EventHub: hub, ConsumerGroup: group})
		if err != nil {
			t.Fatalf("Records(%q, %q, %q): %v", ns, hub, group, err)
		}
		for _, r := range recs {
			if ns != "" && !strings.EqualFold(r.Namespace, ns) || hub != "" && !strings.EqualFold(r.EventHub, hub) || group != "" && !strings.EqualFold(r.ConsumerGroup, group) {
				t.Fatalf("Records(%q, %q, %q) returned %+v", ns, hub, group, r)
			}
		}
	})
}

// FuzzRelPutRecords covers the admin entry points that take whole records:
// PutRecords stores a record exactly (etag and times included) or refuses
// it, and DeleteRecords removes exactly it.
func FuzzRelPutRecords(f *testing.F) {
	for _, c := range []struct {
		typ, ns, hub, group, partition, owner, etag, offset string
		sec, nsec                                           int64
		hasOffset, hasSeq                                   bool
		seq                                                 int64
	}{
		{"ownership", "ns", "hub", "g", "0", "o", "etag-1", "", 1_700_000_000, 5, false, false, 0},
		{"checkpoint", "ns", "hub", "g", "0", "", "", "4096", 1_700_000_000, 0, true, true, 7},
		{"checkpoint", "NS", "Hub", "G", "p-1", "", "", "", 0, 0, true, false, 0},
		{"ownership", "ns", "hub", "g", "1", "", "", "", 0, 0, false, false, 0},                              // no etag
		{"lease", "ns", "hub", "g", "1", "o", "e", "", 0, 0, false, false, 0},                                // unknown type
		{"ownership", "ns", "hub", "g", "2", "o", "e", "", -62135596800, 0, false, false, 0},                 // year 1
		{"ownership", "ns", "hub", "g", "3", "o", "e", "", 1 << 40, 0, false, false, 0},                      // year 34 million
		{"checkpoint", "ns", "hub", "g", "4", "", "", "", math.MinInt64 / 1_000_000_000, 0, false, true, -1}, // before 1678
		{"checkpoint", "ns", "hub", "g", "5", "", "", "x\x00", 0, 0, true, false, 0},                         // NUL in offset
		{"ownership", "ns\xff", "hub", "g", "6", "o", "e", "", 0, 0, false, false, 0},                        // invalid UTF-8
		{"ownership", "../..", "/", "..", "a/../b", "/", "..", "", 0, 0, false, false, 0},                    // path-like
		{"ownership", "ns", "hub", "g", strings.Repeat("9", 64<<10), "o", "e", "", 0, 0, false, false, 0},    // 64 KiB
	} {
		f.Add(c.typ, c.ns, c.hub, c.group, c.partition, c.owner, c.etag, c.offset, c.sec, c.nsec, c.hasOffset, c.hasSeq, c.seq)
	}
	s := relFuzzStore(f)
	f.Fuzz(func(t *testing.T, typ, ns, hub, group, partition, owner, etag, offset string, sec, nsec int64, hasOffset, hasSeq bool, seq int64) {
		ctx := context.Background()
		when := time.Unix(sec, nsec).UTC()
		r := Record{Type: RecordType(typ), Namespace: ns, EventHub: hub, ConsumerGroup: group, PartitionID: partition}
		if r.Type == RecordOwnership {
			r.OwnerID, r.ETag, r.LastModifiedTime = owner, etag, when
		} else {
			if hasOffset {
				r.Offset = &offset
			}
			if hasSeq {
				r.SequenceNumber = &seq
			}
			r.WrittenAt = when
		}
		scope := Scope{Namespace: ns, EventHub: hub, ConsumerGroup: group}
		before, err := s.Records(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutRecords(ctx, []Record{r}); err != nil {
			relMustBeInvalid(t, s, "PutRecords", err)
			after, err := s.Records(ctx, scope)
			if err != nil || relRecordsDiff(after, before) != "" {
				t.Fatalf("a refused record changed the store: %v %s", err, relRecordsDiff(after, before))
			}
			return
		}
		recs, err := s.Records(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		want := r
		want.Namespace, want.EventHub, want.ConsumerGroup = strings.ToLower(ns), strings.ToLower(hub), strings.ToLower(group)
		i := slices.IndexFunc(recs, func(g Record) bool { return relRecordKey(g) == relRecordKey(want) })
		if i < 0 {
			t.Fatalf("PutRecords stored %s, Records has %d others", relShowRecord(want), len(recs))
		}
		if d := relRecordDiff(recs[i], want); d != "" {
			t.Fatalf("PutRecords round trip: %s", d)
		}
		if n, err := s.DeleteRecords(ctx, []Record{r}); err != nil || n != 1 {
			t.Fatalf("DeleteRecords of a stored record: %d, %v", n, err)
		}
		if after, err := s.Records(ctx, scope); err != nil || slices.ContainsFunc(after, func(g Record) bool { return relRecordKey(g) == relRecordKey(want) }) {
			t.Fatalf("DeleteRecords left the record: %v", err)
		}
	})
}

// TestRelNilAndEmptyArguments covers the inputs fuzzing does not generate:
// nil slices, nil options, nil pointers, and out-of-range Options.
func TestRelNilAndEmptyArguments(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nil.db")
	if _, err := Open(path, &Options{LockTimeout: -time.Second}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Open with a negative LockTimeout: %v, want ErrInvalidArgument", err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, claims := range [][]azeventhubs.Ownership{nil, {}} {
		got, err := s.ClaimOwnership(ctx, claims, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("ClaimOwnership(%#v) = %v, %v; want nothing and no error", claims, got, err)
		}
	}
	err = s.SetCheckpoint(ctx, azeventhubs.Checkpoint{FullyQualifiedNamespace: "ns", EventHubName: "hub", ConsumerGroup: "g", PartitionID: "0"}, nil)
	relMustBeInvalid(t, s, "SetCheckpoint with nil Offset and SequenceNumber", err)
	if err := s.PutRecords(ctx, nil); err != nil {
		t.Fatalf("PutRecords(nil): %v", err)
	}
	if n, err := s.DeleteRecords(ctx, nil); err != nil || n != 0 {
		t.Fatalf("DeleteRecords(nil) = %d, %v", n, err)
	}
	if _, err := s.DeleteScope(ctx, Scope{}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("DeleteScope of everything: %v, want ErrInvalidArgument", err)
	}
	if recs, err := s.Records(ctx, Scope{}); err != nil || len(recs) != 0 {
		t.Fatalf("Records of an empty store: %v, %v", recs, err)
	}
	if owns, err := s.ListOwnership(ctx, "ns", "hub", "g", nil); err != nil || len(owns) != 0 {
		t.Fatalf("ListOwnership of an empty store: %v, %v", owns, err)
	}
}
