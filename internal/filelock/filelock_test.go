package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func openTwice(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	a, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestTryLockExcludesOtherDescriptions(t *testing.T) {
	a, b := openTwice(t)
	if err := TryLock(a); err != nil {
		t.Fatal(err)
	}
	if err := TryLock(a); err != nil {
		t.Fatalf("re-lock through the same description: %v", err)
	}
	if err := TryLock(b); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("second description got %v, want ErrWouldBlock", err)
	}
	if err := Unlock(a); err != nil {
		t.Fatal(err)
	}
	if err := TryLock(b); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// TestSharedLocksShareAndExcludeTheExclusiveOne: two descriptions hold the
// shared lock at once, and the exclusive one waits until both let go.
func TestSharedLocksShareAndExcludeTheExclusiveOne(t *testing.T) {
	a, b := openTwice(t)
	c, err := os.Open(a.Name()) // read-only, as a read-only store opens it
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := TryLockShared(a); err != nil {
		t.Fatal(err)
	}
	if err := TryLockShared(c); err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	if err := TryLock(b); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("exclusive lock beside shared ones: %v, want ErrWouldBlock", err)
	}
	for _, f := range []*os.File{a, c} {
		if err := Unlock(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := TryLock(b); err != nil {
		t.Fatalf("exclusive lock once the shared ones are gone: %v", err)
	}
	if err := TryLockShared(c); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("shared lock beside the exclusive one: %v, want ErrWouldBlock", err)
	}
}

func TestWaiterSignal(t *testing.T) {
	if !WaiterSignals {
		t.Skip("no open-file-description locks on this platform")
	}
	holder, waiter := openTwice(t)
	if present, err := WaiterPresent(holder); err != nil || present {
		t.Fatalf("before announce: present=%v err=%v", present, err)
	}
	if err := AnnounceWaiter(waiter, false); err != nil {
		t.Fatal(err)
	}
	if present, err := WaiterPresent(holder); err != nil || !present {
		t.Fatalf("after announce: present=%v err=%v", present, err)
	}
	if writer, err := WriterWaiting(holder); err != nil || writer {
		t.Fatalf("a waiting reader seen as a writer: %v err=%v", writer, err)
	}
	if err := AnnounceWaiter(waiter, true); err != nil {
		t.Fatal(err)
	}
	if writer, err := WriterWaiting(holder); err != nil || !writer {
		t.Fatalf("a waiting writer not seen: %v err=%v", writer, err)
	}
	if present, err := WaiterPresent(waiter); err != nil || present {
		t.Fatalf("a waiter must not see itself: present=%v err=%v", present, err)
	}
	if err := WithdrawWaiter(waiter); err != nil {
		t.Fatal(err)
	}
	if present, err := WaiterPresent(holder); err != nil || present {
		t.Fatalf("after withdraw: present=%v err=%v", present, err)
	}
	if writer, err := WriterWaiting(holder); err != nil || writer {
		t.Fatalf("after withdraw, a writer still waits: %v err=%v", writer, err)
	}
}
