package fsync

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed creates an empty file in dir that has no name until it is
// linked at dest, so that nothing is left of it if the process dies first;
// errors about it name dest. The link goes through /proc: linking the
// descriptor itself (AT_EMPTY_PATH) needs a privilege. It fails, and
// NewFile falls back to a temporary name, where the file system cannot do
// this or /proc is not mounted.
func createUnnamed(dir, dest string) (pendingFile, error) {
	fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return pendingFile{}, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dest)
	proc := "/proc/self/fd/" + strconv.Itoa(fd)
	if _, err := os.Stat(proc); err != nil {
		f.Close()
		return pendingFile{}, err
	}
	return pendingFile{
		File: f,
		link: func(dest string) error {
			if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, dest, unix.AT_SYMLINK_FOLLOW); err != nil {
				return &os.LinkError{Op: "link", Old: "a new file in " + dir, New: dest, Err: err}
			}
			return nil
		},
		discard: func() { f.Close() },
	}, nil
}
