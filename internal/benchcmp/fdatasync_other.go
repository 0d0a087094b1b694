//go:build !linux

package benchcmp

import "os"

// fdatasync falls back to fsync where there is no fdatasync; bbolt does
// the same there.
func fdatasync(f *os.File) error { return f.Sync() }
