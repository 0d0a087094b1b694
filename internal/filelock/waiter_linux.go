package filelock

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// waiterOffset is the byte the waiter lock covers. It lies far beyond any
// real store file, and record locks beyond EOF are legal, so the lock never
// touches data.
const waiterOffset = 1 << 62

// WaiterSignals reports whether this platform can signal waiters. Without
// it, a holder only hands the file over when it goes idle.
const WaiterSignals = true

// AnnounceWaiter takes the shared waiter lock through f's open file
// description (an OFD lock, so it belongs to f, not to the process). A
// writer, which waits for the exclusive flock, also takes the next byte:
// readers, who share the flock, let it in first (WriterWaiting).
func AnnounceWaiter(f *os.File, writer bool) error {
	n := int64(1)
	if writer {
		n = 2
	}
	return waiterLock(f, unix.F_RDLCK, n)
}

// WithdrawWaiter releases the waiter lock taken by AnnounceWaiter.
func WithdrawWaiter(f *os.File) error {
	return waiterLock(f, unix.F_UNLCK, 2)
}

// WaiterPresent reports whether any other open file description of the file
// holds the waiter lock.
func WaiterPresent(f *os.File) (bool, error) { return lockHeld(f, waiterOffset) }

// WriterWaiting reports whether any other open file description of the
// file announced itself as a waiting writer.
func WriterWaiting(f *os.File) (bool, error) { return lockHeld(f, waiterOffset+1) }

func lockHeld(f *os.File, at int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: at, Len: 1}
	if err := retryEINTR(func() error { return unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk) }); err != nil {
		return false, &os.PathError{Op: "fcntl F_OFD_GETLK", Path: f.Name(), Err: err}
	}
	return lk.Type != unix.F_UNLCK, nil
}

func waiterLock(f *os.File, typ int16, n int64) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: waiterOffset, Len: n}
	if err := retryEINTR(func() error { return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk) }); err != nil {
		return &os.PathError{Op: "fcntl F_OFD_SETLK", Path: f.Name(), Err: err}
	}
	return nil
}

func retryEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
