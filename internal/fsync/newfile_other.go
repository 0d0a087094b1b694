//go:build !linux

package fsync

// createUnnamed fails: only Linux makes files without a name here.
func createUnnamed(string, string) (pendingFile, error) { return pendingFile{}, errNoUnnamedFiles }
