// Package fsync makes written data durable the way bbolt does, so that the
// store's own syncs and the benchmark's floor cost what bbolt's do.
package fsync

import (
	"errors"
	"os"
	"syscall"
)

// Fdatasync flushes f's data, and the metadata needed to read it, to disk:
// what bbolt calls on Linux for each of its syncs.
func Fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
