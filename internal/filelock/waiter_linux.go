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
// description (an OFD lock, so it belongs to f, not to the process).
func AnnounceWaiter(f *os.File) error {
	return waiterLock(f, unix.F_RDLCK)
}

// WithdrawWaiter releases the waiter lock taken by AnnounceWaiter.
func WithdrawWaiter(f *os.File) error {
	return waiterLock(f, unix.F_UNLCK)
}

// WaiterPresent reports whether any other open file description of the file
// holds the waiter lock.
func WaiterPresent(f *os.File) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: waiterOffset, Len: 1}
	if err := retryEINTR(func() error { return unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk) }); err != nil {
		return false, &os.PathError{Op: "fcntl F_OFD_GETLK", Path: f.Name(), Err: err}
	}
	return lk.Type != unix.F_UNLCK, nil
}

func waiterLock(f *os.File, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: waiterOffset, Len: 1}
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
