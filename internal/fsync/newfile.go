package fsync

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// NewFile creates dest whole or not at all. fill writes the new file
// through f, open for reading and writing, before the file has its name;
// only a complete file is synced and linked at dest. So dest is either
// absent or whole, and a file that appears at dest meanwhile is not
// replaced. An existing dest is an error (fs.ErrExist). NewFile closes f,
// so fill must not.
//
// Where the file system can make a file without a name (O_TMPFILE on
// Linux), a process that dies during fill leaves nothing behind. Elsewhere
// the file is made under a hidden temporary name in dest's directory,
// ".<name>.new-*", which such a process leaves; so does one that dies while
// NewFile copies an unnamed file the system would not link.
func NewFile(dest string, fill func(f *os.File) error) error {
	return newFile(dest, fill, createUnnamed)
}

// newFile is NewFile, making the file with unnamed, if not nil, where it
// can, else under a temporary name.
func newFile(dest string, fill func(*os.File) error, unnamed func(dir, dest string) (pendingFile, error)) error {
	if info, err := os.Lstat(dest); err == nil {
		if info.IsDir() {
			return fmt.Errorf("%s: is a directory: %w", dest, fs.ErrExist)
		}
		return fmt.Errorf("%s: %w", dest, fs.ErrExist)
	}
	dir := filepath.Dir(dest)
	var p pendingFile
	err := errNoUnnamedFiles
	if unnamed != nil {
		p, err = unnamed(dir, dest)
	}
	isUnnamed := err == nil
	if err != nil {
		if p, err = createNamed(dir, filepath.Base(dest)); err != nil {
			// Name dest, not the temporary file that was never made.
			if pathErr := (*fs.PathError)(nil); errors.As(err, &pathErr) {
				err = fmt.Errorf("%s: %w", dest, pathErr.Err)
			}
			return err
		}
	}
	defer p.discard()
	if err := fill(p.File); err != nil {
		return err
	}
	if err := p.Sync(); err != nil {
		return err
	}
	if err := p.link(dest); err != nil {
		if !isUnnamed || errors.Is(err, fs.ErrExist) {
			return err
		}
		// Made but not named (a system that refuses the link through
		// /proc): copy it to a file made under a temporary name.
		size, serr := p.Seek(0, io.SeekEnd)
		if serr != nil {
			return err
		}
		copyErr := newFile(dest, func(f *os.File) error {
			_, err := io.Copy(f, io.NewSectionReader(p.File, 0, size))
			return err
		}, nil)
		if copyErr != nil {
			return fmt.Errorf("%w (copying the file after: %w)", err, copyErr)
		}
		return nil
	}
	return Path(dir)
}

// errNoUnnamedFiles is why NewFile uses a temporary name.
var errNoUnnamedFiles = errors.New("files without a name are not supported here")

// pendingFile is a file NewFile is making.
type pendingFile struct {
	*os.File
	link    func(dest string) error // gives the file its name
	discard func()                  // closes it, and removes any temporary name
}

// createNamed creates an empty file under a temporary name in dir.
func createNamed(dir, base string) (pendingFile, error) {
	f, err := os.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return pendingFile{}, err
	}
	tmp := f.Name()
	return pendingFile{
		File:    f,
		link:    func(dest string) error { return os.Link(tmp, dest) },
		discard: func() { f.Close(); os.Remove(tmp) },
	}, nil
}
