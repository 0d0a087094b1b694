package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// TestTornCommitFallsBack simulates a power cut during a commit's one
// fsync: the disk then holds any mix of the commit's writes, down to single
// 512-byte sectors of a page. From each such file the store must open
// either the commit before (which the caller was never told succeeded) or
// the commit whole, and pass Check: never a damaged file, never a mix.
func TestTornCommitFallsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.db")
	s := openTestStore(t, path, nil)
	claim := func(etags []*azcore.ETag, owner string) []azeventhubs.Ownership {
		var os []azeventhubs.Ownership
		for i, e := range etags {
			os = append(os, ownership(fmt.Sprint(i), owner, e))
		}
		won, err := s.ClaimOwnership(ctx, os, nil)
		if err != nil || len(won) != len(etags) {
			t.Fatalf("claim: %v, won %d of %d", err, len(won), len(etags))
		}
		return won
	}
	// Two commits first: the second is the first one-sync commit.
	first := claim([]*azcore.ETag{nil, nil, nil}, "first")
	seq := int64(1)
	if err := s.SetCheckpoint(ctx, checkpoint("0", nil, &seq), nil); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The commit that is cut: a renewal of three partitions and, in the
	// same batch, nothing else, so that it is all or nothing.
	second := claim([]*azcore.ETag{first[0].ETag, first[1].ETag, first[2].ETag}, "second")
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
	if len(changed) < 3 {
		t.Fatalf("the commit changed %d sectors; the test needs a commit that writes several pages", len(changed))
	}
	owners := func(list []azeventhubs.Ownership) string {
		var b []byte
		for _, o := range list {
			b = fmt.Appendf(b, "%s:%s:%s ", o.PartitionID, o.OwnerID, *o.ETag)
		}
		return string(b)
	}
	wantBefore, wantAfter := owners(first), owners(second)
	rng := rand.New(rand.NewPCG(1, 2))
	outcomes := map[string]int{}
	for i := range 300 {
		torn := append([]byte(nil), before...)
		torn = append(torn, make([]byte, max(0, len(after)-len(before)))...)
		// Case 0 lands everything, case 1 nothing; the rest a random mix.
		for _, at := range changed {
			land := i == 0 || i > 1 && rng.IntN(2) == 0
			if land {
				copy(torn[at:min(at+sector, len(after))], after[at:])
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("torn-%d.db", i))
		if err := os.WriteFile(p, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		ts, err := Open(p, nil)
		if err != nil {
			t.Fatalf("case %d: Open of a file cut during a commit: %v", i, err)
		}
		list, err := ts.ListOwnership(ctx, testNS, testHub, testGroup, nil)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		switch got := owners(list); got {
		case wantBefore:
			outcomes["before"]++
		case wantAfter:
			outcomes["after"]++
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
	t.Logf("%d sectors written by the commit; of 300 cuts, %d opened as before it and %d as after it", len(changed), outcomes["before"], outcomes["after"])
	if outcomes["before"] == 0 || outcomes["after"] == 0 {
		t.Errorf("outcomes %v: the cuts should produce both", outcomes)
	}
}
