//go:build !linux

package fsync

import "os"

// Fdatasync falls back to fsync where there is no fdatasync; bbolt does
// the same there.
func Fdatasync(f *os.File) error { return f.Sync() }
