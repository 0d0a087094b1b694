package boltstore

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// TestClaimMixedGroupsMatchesReference claims random mixes of groups,
// partitions, duplicates, losers and stale etags in one call and checks
// that the store decides exactly as the reference does.
func TestClaimMixedGroupsMatchesReference(t *testing.T) {
	ctx := t.Context()
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	ref := newReferenceStore()
	rng := rand.New(rand.NewPCG(1, 2))
	groups := []string{"$Default", "g2", "G2", "g3"}
	etags := map[string]*azcore.ETag{} // what the last winner got, per store
	refEtags := map[string]*azcore.ETag{}
	for round := range 300 {
		n := 1 + rng.IntN(12)
		var a, b []azeventhubs.Ownership
		for range n {
			g := groups[rng.IntN(len(groups))]
			p := fmt.Sprint(rng.IntN(4))
			k := g + "/" + p
			if g == "G2" {
				k = "g2/" + p
			}
			o := azeventhubs.Ownership{FullyQualifiedNamespace: "ns", EventHubName: "hub", ConsumerGroup: g, PartitionID: p, OwnerID: fmt.Sprint("owner", round)}
			oa, ob := o, o
			switch rng.IntN(3) {
			case 0: // current etag
				oa.ETag, ob.ETag = etags[k], refEtags[k]
			case 1: // stale
				stale := azcore.ETag("stale")
				oa.ETag, ob.ETag = &stale, &stale
			}
			a, b = append(a, oa), append(b, ob)
		}
		got, err := s.ClaimOwnership(ctx, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.ClaimOwnership(ctx, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		key := func(o azeventhubs.Ownership) string {
			return fmt.Sprintf("%s/%s/%s", o.ConsumerGroup, o.PartitionID, o.OwnerID)
		}
		gk := slices.Sorted(slices.Values(mapSlice(got, key)))
		wk := slices.Sorted(slices.Values(mapSlice(want, key)))
		if !slices.Equal(gk, wk) {
			t.Fatalf("round %d: claims %v\nstore won %v\nreference won %v", round, mapSlice(a, key), gk, wk)
		}
		for _, o := range got {
			k := fmt.Sprintf("%s/%s", appendFolded(nil, o.ConsumerGroup), o.PartitionID)
			etags[k] = o.ETag
		}
		for _, o := range want {
			k := fmt.Sprintf("%s/%s", appendFolded(nil, o.ConsumerGroup), o.PartitionID)
			refEtags[k] = o.ETag
		}
	}
	for _, g := range groups {
		l1, _ := s.ListOwnership(ctx, "ns", "hub", g, nil)
		l2, _ := ref.ListOwnership(ctx, "ns", "hub", g, nil)
		if len(l1) != len(l2) {
			t.Fatalf("group %s: store lists %d, reference %d", g, len(l1), len(l2))
		}
		for i := range l1 {
			if l1[i].OwnerID != l2[i].OwnerID || l1[i].PartitionID != l2[i].PartitionID {
				t.Fatalf("group %s: store %+v, reference %+v", g, l1[i], l2[i])
			}
		}
	}
}

func mapSlice[T, U any](s []T, f func(T) U) []U {
	out := make([]U, len(s))
	for i, v := range s {
		out[i] = f(v)
	}
	return out
}
