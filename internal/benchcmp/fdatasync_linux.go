package benchcmp

import (
	"errors"
	"os"
	"syscall"
)

// fdatasync is what bbolt calls on Linux for each of its two syncs per
// commit, so the floor uses it too.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
