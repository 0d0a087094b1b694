package benchcmp

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ehcheckpoints/boltstore/internal/fsync"
)

// floorFileSize is the size the floor's file is preallocated to. Writing
// inside an existing, already synced extent keeps fdatasync from having to
// flush any metadata, so the floor is one data write and one cache flush:
// the least any durable commit can cost on the disk.
const floorFileSize = 1 << 20

// FloorWriteSize is how much the floor writes per operation: one page, as
// bbolt does for the meta page of every commit.
const FloorWriteSize = 4096

// Floor is the physical floor of a durable commit: a 4 KiB write at a
// fixed offset of a preallocated file, followed by fdatasync.
type Floor struct {
	f   *os.File
	buf []byte
}

// OpenFloor creates the floor's file in dir, which should be the directory
// the store files are in, so that both are on the same disk.
func OpenFloor(dir string) (*Floor, error) {
	f, err := os.CreateTemp(dir, "fdatasync-floor-*")
	if err != nil {
		return nil, err
	}
	fl := &Floor{f: f, buf: make([]byte, FloorWriteSize)}
	// Write the whole file once and sync it, so that every later write
	// overwrites allocated, already durable blocks. It is written a page
	// at a time, as bbolt grows a file: one large write leaves it in
	// large page-cache folios, which make each later 4 KiB write and its
	// sync slower (about 7% here) and the floor too high.
	for off := int64(0); off < floorFileSize; off += FloorWriteSize {
		if _, err := f.WriteAt(fl.buf, off); err != nil {
			fl.Close()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		fl.Close()
		return nil, err
	}
	if err := fsync.Path(filepath.Dir(f.Name())); err != nil {
		fl.Close()
		return nil, err
	}
	return fl, nil
}

// Write does one durable 4 KiB write, at the start of the file.
func (fl *Floor) Write() error { return fl.WritePages(firstPage) }

var firstPage = []int64{0}

// WritePages writes a 4 KiB page at each of the page numbers given, all
// inside the preallocated file, and then syncs them with one fdatasync, as
// a commit of that many pages does. A page past the file would grow it and
// time a metadata flush too, so it is refused.
func (fl *Floor) WritePages(pages []int64) error {
	// Change a byte so that the pages are really dirty each time.
	fl.buf[0]++
	for _, p := range pages {
		if p < 0 || p >= floorFileSize/FloorWriteSize {
			return fmt.Errorf("page %d is outside the floor's %d pages", p, floorFileSize/FloorWriteSize)
		}
		if _, err := fl.f.WriteAt(fl.buf, p*FloorWriteSize); err != nil {
			return err
		}
	}
	if err := fsync.Fdatasync(fl.f); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// Close closes and removes the file.
func (fl *Floor) Close() error {
	err := fl.f.Close()
	if rmErr := os.Remove(fl.f.Name()); err == nil {
		err = rmErr
	}
	return err
}
