package fsync

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// NewFile creates dest through a temporary file in its directory: fill
// writes the file at the temporary path, and only a complete file is
// synced and linked into place, so dest is either absent or whole, and a
// file that appears at dest meanwhile is not replaced. An existing dest is
// an error (fs.ErrExist).
func NewFile(dest string, fill func(tmp string) error) error {
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("%s: %w", dest, fs.ErrExist)
	}
	dir := filepath.Dir(dest)
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Close(); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := Path(tmp); err != nil {
		return err
	}
	if err := os.Link(tmp, dest); err != nil {
		return err
	}
	return Path(dir)
}
