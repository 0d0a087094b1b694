package fsync

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed creates an empty file in dir that has no name until it is
// linked, so that nothing is left of it if the process dies first. The
// link goes through /proc: linking the descriptor itself (AT_EMPTY_PATH)
// needs a privilege. It fails, and NewFile falls back to a temporary name,
// where the file system cannot do this or /proc is not mounted.
func createUnnamed(dir string) (pendingFile, error) {
	f, err := os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE, 0o600)
	if err != nil {
		return pendingFile{}, err
	}
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if _, err := os.Stat(proc); err != nil {
		f.Close()
		return pendingFile{}, err
	}
	return pendingFile{
		File: f,
		link: func(dest string) error {
			if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, dest, unix.AT_SYMLINK_FOLLOW); err != nil {
				return &os.LinkError{Op: "link", Old: f.Name(), New: dest, Err: err}
			}
			return nil
		},
		discard: func() { f.Close() },
	}, nil
}
