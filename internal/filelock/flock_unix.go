//go:build unix

package filelock

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// TryLock takes an exclusive flock on f without blocking. It returns
// ErrWouldBlock when another open file description holds it. Taking it again
// through the same description is a no-op, which is what lets bbolt re-lock
// the file handed to it.
func TryLock(f *os.File) error { return tryFlock(f, unix.LOCK_EX) }

// TryLockShared takes a shared flock on f without blocking, as bbolt does
// for a read-only database: it returns ErrWouldBlock while another open
// file description holds the exclusive one.
func TryLockShared(f *os.File) error { return tryFlock(f, unix.LOCK_SH) }

func tryFlock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return ErrWouldBlock
		default:
			return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
	}
}

// Unlock releases the flock taken by TryLock.
func Unlock(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
	return nil
}
