package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// bbolt trusts its pages: a damaged child pointer makes it read outside
// the file (a fault), and a pointer back to an ancestor makes it recurse
// until the stack overflows, which no recover can catch. bbolt's own
// Check walks the same pointers, in a goroutine of its own. So before
// anything walks the tree, verifyPages reads every reachable page from the
// file itself and checks that the pointers stay in range and form a tree.
//
// The page format (go.etcd.io/bbolt/internal/common), native byte order:
//
//	page header:    id uint64, flags uint16, count uint16, overflow uint32
//	branch element: pos uint32, ksize uint32, pgid uint64
//	leaf element:   flags uint32, pos uint32, ksize uint32, vsize uint32
//	bucket value:   root pgid uint64, sequence uint64, [inline leaf page]
//
// An element's pos is relative to the element itself.
const (
	pageHeaderSize   = 16
	pageElementSize  = 16
	bucketHeaderSize = 16
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	bucketLeafFlag   = 0x01
	// maxTreeDepth is far beyond any real store (a depth of 10 holds
	// billions of keys) and stops a walk long before the stack is at risk.
	maxTreeDepth = 64
)

// pageReader reads the pages of a tree from the file itself, each at most
// once.
type pageReader struct {
	file      *os.File
	pageSize  int
	highWater uint64 // pages at or above it are not in use
	seen      map[uint64]bool
}

type pageVerifier struct {
	pageReader
}

// verifyPages checks the page structure of the file tx reads. damage
// describes what is wrong with the file (callers add its path); err is a
// failure to read it at all, which says nothing about the file.
func verifyPages(path string, tx *bolt.Tx) (damage, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pageSize := tx.DB().Info().PageSize
	v := &pageVerifier{newPageReader(f, pageSize, uint64(tx.Size())/uint64(pageSize))}
	if damage := v.walk(uint64(tx.Cursor().Bucket().Root()), 0); damage != nil {
		return damage, nil
	}
	return v.checkFreelist(), nil
}

// checkFreelist checks that no page is both free and in use, by the tree
// or as the freelist itself: bbolt would hand it out again and overwrite
// live data (a tree that points into itself makes cursors loop forever),
// and bbolt's Check does not compare overflow pages with the freelist.
func (v *pageVerifier) checkFreelist() error {
	meta, _ := newestMeta(v.file)
	if meta == nil {
		return fmt.Errorf("both bbolt meta pages are damaged")
	}
	fl, err := readFreelist(v.file, meta)
	if err != nil || fl.page == 0 {
		return err
	}
	for i := uint64(0); i <= fl.overflow; i++ {
		if v.seen[fl.page+i] {
			return fmt.Errorf("page %d: used by the tree and by the freelist", fl.page+i)
		}
		v.seen[fl.page+i] = true
	}
	for i, id := range fl.ids {
		switch {
		case id < 2 || id >= v.highWater:
			return fmt.Errorf("freelist: page %d is outside the file's %d pages", id, v.highWater)
		case i > 0 && id <= fl.ids[i-1]:
			return fmt.Errorf("freelist: page %d is listed out of order or twice", id)
		case v.seen[id]:
			return fmt.Errorf("page %d: in use and listed as free", id)
		}
	}
	return nil
}

// freelist is the freelist page of a meta page and the ids it lists.
type freelist struct {
	page, overflow uint64 // page is 0 when the file keeps no freelist
	ids            []uint64
}

const (
	freelistPageFlag = 0x10
	noFreelist       = ^uint64(0)
)

// readFreelist reads the freelist meta points to, checking first that its
// header describes ids that fit in its pages.
func readFreelist(f *os.File, meta []byte) (freelist, error) {
	id := binary.NativeEndian.Uint64(meta[metaFreelistAt:])
	if id == noFreelist {
		return freelist{}, nil
	}
	pageSize := uint64(binary.NativeEndian.Uint32(meta[metaPageSizeAt:]))
	highWater := binary.NativeEndian.Uint64(meta[metaHighWaterAt:])
	if id < 2 || id >= highWater {
		return freelist{}, fmt.Errorf("freelist page %d: outside the file's %d pages", id, highWater)
	}
	// One read for the header and the ids that fit the first page, which
	// is all of them unless the freelist overflows.
	buf := getPageBuffer(int(pageSize))
	defer pageBuffers.Put(buf)
	header := (*buf)[:pageSize]
	if _, err := f.ReadAt(header, int64(id*pageSize)); err != nil {
		return freelist{}, fmt.Errorf("freelist page %d: %v", id, err)
	}
	overflow := uint64(binary.NativeEndian.Uint32(header[12:]))
	switch {
	case binary.NativeEndian.Uint64(header) != id || binary.NativeEndian.Uint16(header[8:]) != freelistPageFlag:
		return freelist{}, fmt.Errorf("freelist page %d: not a freelist page", id)
	case id+overflow >= highWater:
		return freelist{}, fmt.Errorf("freelist page %d: %d overflow pages run past the file's %d pages", id, overflow, highWater)
	}
	// A count of 0xFFFF means the real count is the first uint64.
	skip, count := uint64(0), uint64(binary.NativeEndian.Uint16(header[10:]))
	if count == 0xFFFF {
		skip, count = 1, binary.NativeEndian.Uint64(header[pageHeaderSize:])
	}
	if count > highWater || pageHeaderSize+8*(skip+count) > (overflow+1)*pageSize {
		return freelist{}, fmt.Errorf("freelist page %d: %d ids do not fit in %d pages", id, count, overflow+1)
	}
	raw := header[pageHeaderSize+8*skip:]
	if pageHeaderSize+8*(skip+count) > pageSize {
		raw = make([]byte, 8*count)
		if _, err := f.ReadAt(raw, int64(id*pageSize+pageHeaderSize+8*skip)); err != nil {
			return freelist{}, fmt.Errorf("freelist page %d: %v", id, err)
		}
	}
	fl := freelist{page: id, overflow: overflow, ids: make([]uint64, count)}
	for i := range fl.ids {
		fl.ids[i] = binary.NativeEndian.Uint64(raw[8*i:])
	}
	return fl, nil
}

func newPageReader(f *os.File, pageSize int, highWater uint64) pageReader {
	return pageReader{file: f, pageSize: pageSize, highWater: highWater, seen: map[uint64]bool{0: true, 1: true}}
}

func (v *pageVerifier) walk(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: tree deeper than %d levels", id, maxTreeDepth)
	}
	page, err := v.read(id)
	if err != nil {
		return err
	}
	return v.checkPage(id, page, depth)
}

// read returns page id with its overflow pages, checking that the pointer
// to it is in range and the first it meets, and that the page says it is
// page id.
func (r *pageReader) read(id uint64) ([]byte, error) {
	switch {
	case id < 2 || id >= r.highWater:
		return nil, fmt.Errorf("page %d: pointer outside the file's %d pages", id, r.highWater)
	case r.seen[id]:
		return nil, fmt.Errorf("page %d: referenced twice", id)
	}
	r.seen[id] = true
	header := make([]byte, pageHeaderSize)
	if _, err := r.file.ReadAt(header, int64(id)*int64(r.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	overflow := uint64(binary.NativeEndian.Uint32(header[12:]))
	if gotID := binary.NativeEndian.Uint64(header); gotID != id {
		return nil, fmt.Errorf("page %d: header says page %d", id, gotID)
	}
	if id+overflow >= r.highWater {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the file's %d pages", id, overflow, r.highWater)
	}
	page := make([]byte, (overflow+1)*uint64(r.pageSize))
	if _, err := r.file.ReadAt(page, int64(id)*int64(r.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	for i := uint64(1); i <= overflow; i++ {
		if r.seen[id+i] {
			return nil, fmt.Errorf("page %d: overflow of page %d, and referenced elsewhere", id+i, id)
		}
		r.seen[id+i] = true
	}
	return page, nil
}

// checkPage checks one branch or leaf page, stored at id or inline in a
// bucket value (id 0), and walks what it points to.
func (v *pageVerifier) checkPage(id uint64, page []byte, depth int) error {
	elems, err := parsePage(id, page)
	if err != nil {
		return err
	}
	for _, e := range elems {
		switch {
		case e.branch, e.bucket && e.inline == nil:
			if err := v.walk(e.child, depth+1); err != nil {
				return err
			}
		case e.bucket:
			if err := v.checkPage(0, e.inline, depth+1); err != nil {
				return fmt.Errorf("inline bucket %q: %w", e.key, err)
			}
		}
	}
	return nil
}

// pageElement is one element of a branch or leaf page. child is the page a
// branch element or a bucket points to; a bucket small enough to be kept
// inline has its page in inline instead.
type pageElement struct {
	key, value     []byte
	branch, bucket bool
	child          uint64
	inline         []byte
}

// parsePage checks one branch or leaf page, stored at id or inline in a
// bucket value (id 0), and returns its elements.
func parsePage(id uint64, page []byte) ([]pageElement, error) {
	if len(page) < pageHeaderSize {
		return nil, fmt.Errorf("page %d: %d bytes is too short", id, len(page))
	}
	flags := binary.NativeEndian.Uint16(page[8:])
	count := int(binary.NativeEndian.Uint16(page[10:]))
	if pageHeaderSize+count*pageElementSize > len(page) {
		return nil, fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	elems := make([]pageElement, count)
	// bbolt writes element data contiguously, in element order, right
	// after the element array (common.WriteInodeToPage). A page that says
	// otherwise has a damaged count or element, which would drop or
	// misplace records without breaking key order.
	next := uint64(pageHeaderSize + count*pageElementSize)
	for i := range count {
		at := pageHeaderSize + i*pageElementSize
		elem := page[at : at+pageElementSize]
		var pos, ksize, vsize uint64
		switch flags {
		case branchPageFlag:
			pos, ksize = uint64(binary.NativeEndian.Uint32(elem)), uint64(binary.NativeEndian.Uint32(elem[4:]))
		case leafPageFlag:
			pos, ksize, vsize = uint64(binary.NativeEndian.Uint32(elem[4:])), uint64(binary.NativeEndian.Uint32(elem[8:])), uint64(binary.NativeEndian.Uint32(elem[12:]))
		default:
			return nil, fmt.Errorf("page %d: unexpected page type %#x", id, flags)
		}
		start := uint64(at) + pos
		if start != next {
			return nil, fmt.Errorf("page %d: element %d starts at byte %d, want %d", id, i, start, next)
		}
		if start+ksize+vsize > uint64(len(page)) {
			return nil, fmt.Errorf("page %d: element %d lies outside the page", id, i)
		}
		next = start + ksize + vsize
		e := &elems[i]
		e.key = page[start : start+ksize]
		if i > 0 && bytes.Compare(elems[i-1].key, e.key) >= 0 {
			return nil, fmt.Errorf("page %d: keys out of order at element %d", id, i)
		}
		if flags == branchPageFlag {
			e.branch, e.child = true, binary.NativeEndian.Uint64(elem[8:])
			continue
		}
		e.value = page[start+ksize : start+ksize+vsize]
		if binary.NativeEndian.Uint32(elem)&bucketLeafFlag == 0 {
			continue
		}
		e.bucket = true
		if len(e.value) < bucketHeaderSize {
			return nil, fmt.Errorf("page %d: bucket %q has a %d-byte header", id, e.key, len(e.value))
		}
		if e.child = binary.NativeEndian.Uint64(e.value); e.child == 0 {
			e.inline = e.value[bucketHeaderSize:]
		}
	}
	return elems, nil
}

// bboltProblems runs bbolt's consistency check on tx and returns at most
// max of the problems it reports. bbolt reports a panic of its own check
// as "panic: ...", which reads as if the program had crashed; such a
// problem says instead where the check stopped.
func bboltProblems(tx *bolt.Tx, max int) []error {
	var problems []error
	for err := range tx.Check() {
		// Drain the channel, or Check's goroutine blocks forever.
		if len(problems) == max {
			continue
		}
		if rest, ok := strings.CutPrefix(err.Error(), "panic: "); ok {
			err = errors.New("bbolt's consistency check stopped at " + rest)
		}
		problems = append(problems, err)
	}
	return problems
}
