package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// Check in a process whose processors keep writing: bbolt's own check, run
// beside a commit, read the freelist as the commit changed it (a fatal
// concurrent map access, which no recover catches), and the page walk
// compared the tree with a newer commit's freelist and reported damage.
func TestCheckWhileWriting(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, filepath.Join(t.TempDir(), "cp.db"), nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := int64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				partition := fmt.Sprint(w*8 + int(i%8))
				var err error
				if i%4 == 0 {
					_, err = s.ClaimOwnership(ctx, []azeventhubs.Ownership{ownership(partition, "owner", nil)}, nil)
				} else {
					err = s.SetCheckpoint(ctx, checkpoint(partition, nil, &i), nil)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	checks := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) || checks < 20; checks++ {
		if err := s.Check(ctx); err != nil {
			t.Errorf("Check %d, beside writers: %v", checks, err)
			break
		}
	}
	close(stop)
	wg.Wait()
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check after the writers: %v", err)
	}
}
