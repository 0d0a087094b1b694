package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/ehcheckpoints/boltstore/internal/fsync"
	bolt "go.etcd.io/bbolt"
)

// One fsync per commit. bbolt syncs twice per commit: its data pages, and
// then its meta page, so that a meta page on disk never points at pages
// that are not. The store instead lets bbolt write both without syncing,
// writes a commit record (the checksum of every page the commit wrote)
// into the rest of the new meta page, and syncs once. A crash during that
// sync can leave the new meta page on disk without some of its pages; the
// store tells by the record, and then falls back to the previous commit,
// whose pages the new one did not touch (bbolt never reuses a page the
// previous commit still uses) and which was on disk before the new one
// began. The caller was not told the new commit succeeded, so nothing
// acknowledged is lost.
//
// The record sits in the meta page's unused tail, which bbolt zeroes when
// it writes the page and otherwise ignores:
//
//	magic uint32, txid uint64, flags uint32, count uint32,
//	count × (page id uint64, CRC-32C uint32), CRC-32C of all before it
//
// in native byte order, like bbolt's own fields. recordSynced marks a
// commit whose pages were synced before its record was written: bbolt's own
// two-sync commit, or one that wrote more pages than a record holds.
// recordNextAcknowledged says that the commit after this one was synced and
// acknowledged (noteAcknowledged, right after that sync), so that damage
// to it is not mistaken for a commit cut short.
//
// Only a file whose previous commit has a record is held to this: a file
// last written by an older boltstore, by a backup or by compaction is
// trusted as bbolt would trust it, and its next commit syncs the bbolt way.
// Recovery runs before the format marker can be read, so a later format
// that changes what a record means must also change commitRecordMagic:
// this version then trusts that format's commits instead of undoing them.
const (
	commitRecordAt     = metaEnd + 48 // leaves room for bbolt's meta to grow
	commitRecordMagic  = 0xB057C0DE
	commitRecordHeader = 4 + 8 + 4 + 4
	commitRecordEntry  = 8 + 4
	recordSynced       = 1

	recordNextAcknowledged = 2
)

// commitRecord is what the store knows of one commit's pages.
type commitRecord struct {
	txid  uint64
	flags uint32
	pages []pageSum
}

type pageSum struct {
	id  uint64
	sum uint32
}

// capacity is how many page checksums fit in a record in a meta page of
// pageSize bytes.
func recordCapacity(pageSize int) int {
	return (pageSize - commitRecordAt - commitRecordHeader - 4) / commitRecordEntry
}

func (r commitRecord) encode() []byte {
	b := make([]byte, commitRecordHeader, commitRecordHeader+len(r.pages)*commitRecordEntry+4)
	binary.NativeEndian.PutUint32(b, commitRecordMagic)
	binary.NativeEndian.PutUint64(b[4:], r.txid)
	binary.NativeEndian.PutUint32(b[12:], r.flags)
	binary.NativeEndian.PutUint32(b[16:], uint32(len(r.pages)))
	for _, p := range r.pages {
		b = binary.NativeEndian.AppendUint64(b, p.id)
		b = binary.NativeEndian.AppendUint32(b, p.sum)
	}
	return binary.NativeEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// metaPageAt is the file offset of the meta page commit txid writes: bbolt
// alternates between the first two pages.
func metaPageAt(txid uint64, pageSize int) int64 { return int64(txid%2) * int64(pageSize) }

// readCommitRecord reads the record of commit txid, in a file with pages of
// pageSize bytes; ok is false when there is none, it is damaged, or the
// meta page holds another commit's.
func readCommitRecord(f *os.File, txid uint64, pageSize int) (r commitRecord, ok bool) {
	capacity := recordCapacity(pageSize)
	if capacity <= 0 {
		return r, false
	}
	buf := getPageBuffer(pageSize)
	defer pageBuffers.Put(buf)
	b := (*buf)[:commitRecordHeader+capacity*commitRecordEntry+4]
	if _, err := f.ReadAt(b, metaPageAt(txid, pageSize)+commitRecordAt); err != nil {
		return r, false
	}
	count := int(binary.NativeEndian.Uint32(b[16:]))
	if binary.NativeEndian.Uint32(b) != commitRecordMagic || count > capacity {
		return r, false
	}
	end := commitRecordHeader + count*commitRecordEntry
	if crc32.Checksum(b[:end], castagnoli) != binary.NativeEndian.Uint32(b[end:]) {
		return r, false
	}
	if r.txid = binary.NativeEndian.Uint64(b[4:]); r.txid != txid {
		return r, false
	}
	r.flags = binary.NativeEndian.Uint32(b[12:])
	r.pages = make([]pageSum, count)
	for i := range r.pages {
		at := commitRecordHeader + i*commitRecordEntry
		r.pages[i] = pageSum{id: binary.NativeEndian.Uint64(b[at:]), sum: binary.NativeEndian.Uint32(b[at+8:])}
	}
	return r, true
}

// damagedPage returns the first page r lists that does not hold what the
// commit wrote, or -1 if every one does. A page past the end of the file
// does not; a failure to read one is an error, not a verdict.
func (r commitRecord) damagedPage(f *os.File, pageSize int) (int64, error) {
	ids := make([]uint64, len(r.pages))
	for i, p := range r.pages {
		ids[i] = p.id
	}
	sums, err := pageSums(f, ids, pageSize)
	for i, s := range sums {
		if s.sum != r.pages[i].sum {
			return int64(s.id), nil
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		return int64(r.pages[len(sums)].id), nil
	case err != nil:
		return -1, err
	}
	return -1, nil
}

// pageSums reads the pages ids and returns their checksums. Adjacent pages
// are read together, up to maxPagesPerRead at a time: a commit's pages lie
// in a few runs, and each read is a system call. If the file ends before a
// page, it returns the sums of the pages before that one and io.EOF.
func pageSums(f *os.File, ids []uint64, pageSize int) ([]pageSum, error) {
	buf := getPageBuffer(maxPagesPerRead * pageSize)
	defer pageBuffers.Put(buf)
	sums := make([]pageSum, 0, len(ids))
	for len(ids) > 0 {
		n := 1
		for n < len(ids) && n < maxPagesPerRead && ids[n] == ids[0]+uint64(n) {
			n++
		}
		run := (*buf)[:n*pageSize]
		got, err := f.ReadAt(run, int64(ids[0])*int64(pageSize))
		for i := 0; i < n && (i+1)*pageSize <= got; i++ {
			sums = append(sums, pageSum{id: ids[i], sum: crc32.Checksum(run[i*pageSize:(i+1)*pageSize], castagnoli)})
		}
		if err != nil {
			return sums, err
		}
		ids = ids[n:]
	}
	return sums, nil
}

const maxPagesPerRead = 8

// pageBuffers recycles the buffers commits read whole pages into: without
// them those buffers are a third of what a checkpoint allocates.
var pageBuffers sync.Pool

// getPageBuffer returns a buffer of size bytes from pageBuffers; give it
// back with pageBuffers.Put.
func getPageBuffer(size int) *[]byte {
	if buf, ok := pageBuffers.Get().(*[]byte); ok && cap(*buf) >= size {
		*buf = (*buf)[:size]
		return buf
	}
	buf := make([]byte, size)
	return &buf
}

// metaTxID and metaPageSize read fields of a meta page newestMeta returned.
func metaTxID(meta []byte) uint64      { return binary.NativeEndian.Uint64(meta[metaTxIDAt:]) }
func metaPageSize(meta []byte) int     { return int(binary.NativeEndian.Uint32(meta[metaPageSizeAt:])) }
func metaHighWater(meta []byte) uint64 { return binary.NativeEndian.Uint64(meta[metaHighWaterAt:]) }

// tornCommit reports whether the newest commit in f did not reach the disk
// whole: its record is missing, damaged or does not match its pages, while
// the commit before it has a record. Such a commit was never acknowledged
// (commitDurably returns after the sync), and the commit before it is
// intact. It returns the newest meta page, nil if there is none.
//
// A commit known to have been acknowledged (recordNextAcknowledged) is
// never torn: if it does not match its record, its record is damaged, or
// its meta page is gone, the file was damaged after the commit, and damage
// describes how. Falling back would silently lose the commit.
func tornCommit(f *os.File) (newest []byte, torn bool, damage string, err error) {
	newest, _ = newestMeta(f)
	if newest == nil {
		return nil, false, "", nil
	}
	txid, pageSize := metaTxID(newest), metaPageSize(newest)
	r, recorded := readCommitRecord(f, txid, pageSize)
	if recorded && r.flags&recordNextAcknowledged != 0 {
		return newest, false, fmt.Sprintf("the meta page of commit %d, which was acknowledged, is damaged (page %d)", txid+1, metaPageAt(txid+1, pageSize)/int64(pageSize)), nil
	}
	if txid == 0 {
		return newest, false, "", nil
	}
	previous := readMeta(f, metaPageAt(txid-1, pageSize))
	if previous == nil || metaTxID(previous) != txid-1 {
		return newest, false, "", nil // written whole by bbolt (a new file, a copy): trusted
	}
	before, ok := readCommitRecord(f, txid-1, pageSize)
	if !ok {
		return newest, false, "", nil // not written with records: trusted, as bbolt would
	}
	acknowledged := before.flags&recordNextAcknowledged != 0
	switch {
	case !recorded && acknowledged:
		return newest, false, fmt.Sprintf("the commit record of commit %d, which was acknowledged, is damaged (page %d)", txid, metaPageAt(txid, pageSize)/int64(pageSize)), nil
	case !recorded:
		return newest, true, "", nil
	}
	bad, err := r.damagedPage(f, pageSize)
	switch {
	case err != nil || bad < 0:
		return newest, false, "", err
	case acknowledged:
		return newest, false, fmt.Sprintf("page %d, written by commit %d, which was acknowledged, does not match its checksum", bad, txid), nil
	}
	return newest, true, "", nil
}

// openableMeta returns the meta page the store opens f at: the newest,
// unless its commit is torn, and then the one before it. For a damaged
// acknowledged commit it returns the newest intact meta page, for Salvage
// to read what it can, and tornCommit's description of the damage.
func openableMeta(f *os.File) (meta []byte, damage string, err error) {
	newest, torn, damage, err := tornCommit(f)
	if err != nil || !torn {
		return newest, damage, err
	}
	return readMeta(f, metaPageAt(metaTxID(newest)-1, metaPageSize(newest))), "", nil
}

// recoverTornCommit runs before bbolt opens the file, under the flock. A
// torn newest commit (tornCommit) has its meta page invalidated, so that
// bbolt opens the commit before it, and undone is its transaction id (0
// when there was none, and also returned with a later error); a damaged
// acknowledged one is ErrCorrupt. Then the file is synced: a process killed
// after writing a commit but before syncing it leaves the commit in the
// page cache only, and the next commit's single sync must not be what
// first puts it on disk, in any order.
//
// readOnly, for a file opened read-only, writes nothing: a torn commit,
// which it cannot undo, is ErrReadOnly, and there is no sync.
func recoverTornCommit(path string, f *os.File, readOnly bool) (undone uint64, err error) {
	newest, torn, damage, err := tornCommit(f)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%s: checking the last commit: %w", path, err)
	case damage != "":
		return 0, corruptError(path, damage)
	case readOnly && torn:
		return 0, fmt.Errorf("%s: %w: its last commit, %d, did not reach the disk whole, and reading the commit before it needs that one undone, which opening the file with write access does", path, ErrReadOnly, metaTxID(newest))
	case readOnly:
		return 0, nil
	case torn:
		if err := invalidateMeta(f, newest); err != nil {
			return 0, fmt.Errorf("%s: falling back from an incomplete commit: %w", path, err)
		}
		undone = metaTxID(newest)
	}
	if err := syncData(f); err != nil {
		return undone, fmt.Errorf("%s: syncing the file before using it: %w", path, err)
	}
	return undone, nil
}

// withUndone adds to err, the failure of an open that had undone commit
// undone (0: none), that it had: the undo stays although the open failed,
// and no later open will find the commit to report.
func withUndone(err error, undone uint64) error {
	if err == nil || undone == 0 {
		return err
	}
	return fmt.Errorf("%w (having undone commit %d, which had not reached the disk whole)", err, undone)
}

// noteAcknowledged rewrites the record before, of the commit before the
// newest, with recordNextAcknowledged: the newest commit is on disk and
// acknowledged. commitDurably notes each commit so as soon as its sync
// succeeds, so that a process that dies holding the file leaves its last
// commit noted: the page cache outlives the process. Only the store that
// synced a commit notes it; one found in the file may be another
// process's, whose sync may have failed unseen. A noted commit was whole
// on disk before the note was written, so no crash can have cut it:
// whoever opens the file next takes a mismatch for damage. The note lives
// in the other meta page, which damage to the newest commit's meta page
// spares. It is not synced: the commit is on disk already, so the note is
// true whenever it gets there, and until it does, damage is taken for a
// cut, as in an unnoted file. The write costs about a microsecond, too
// little to tell in SetCheckpoint's time (two sets of eight interleaved
// pairs of runs). The next commit overwrites the note with its own meta
// page.
func noteAcknowledged(f *os.File, before commitRecord, pageSize int) error {
	before.flags |= recordNextAcknowledged
	_, err := f.WriteAt(before.encode(), metaPageAt(before.txid, pageSize)+commitRecordAt)
	return err
}

// invalidateMeta zeroes the checksum of the meta page newestMeta returned,
// so that bbolt opens the file at the commit before it.
func invalidateMeta(f *os.File, meta []byte) error {
	_, err := f.WriteAt(make([]byte, 8), metaPageAt(metaTxID(meta), metaPageSize(meta))+metaChecksumAt)
	return err
}

// syncData is fsync.Fdatasync; tests replace it to make syncs fail.
var syncData = fsync.Fdatasync

// commitState is what a commit leaves for the next one on the same DB: its
// meta page and freelist, which the next commit would otherwise read back
// from the file. Only the store writes the file while it holds it, so the
// next commit of the same DB finds them unchanged.
type commitState struct {
	db     *bolt.DB
	meta   []byte
	free   freelist
	record commitRecord
}

// commitDurably commits tx on the file f, which bbolt has open, and
// returns once the commit is on disk (or, with noSync, written). A commit
// that fails after bbolt wrote its meta page is reverted (revertCommit).
// last, if not nil, is what the previous commit left, and gets what this
// one leaves.
func commitDurably(tx *bolt.Tx, f *os.File, noSync bool, last *commitState) (err error) {
	db := tx.DB()
	txid := uint64(tx.ID())
	defer func() {
		if err != nil {
			revertCommit(f, txid)
		}
	}()
	var before []byte
	var freeBefore freelist
	var previous commitRecord // if recorded: the record to note this commit in
	recorded := false
	if last != nil && last.db == db && metaTxID(last.meta)+1 == txid {
		// The previous commit was this DB's and wrote a record.
		before, freeBefore, previous, recorded = last.meta, last.free, last.record, true
	} else {
		if before, _ = newestMeta(f); before == nil {
			return errors.New("no valid meta page before the commit")
		}
		if freeBefore, err = readFreelist(f, before); err != nil {
			return err
		}
		previous, recorded = readCommitRecord(f, metaTxID(before), metaPageSize(before))
	}
	if last != nil {
		*last = commitState{} // until this commit is done
	}
	pageSize := metaPageSize(before)
	// Without a record before it (a backup, a compacted copy, a file
	// being converted), the file is trusted as bbolt writes it, so this
	// commit must be ordered the bbolt way.
	db.NoSync = noSync || recorded
	if err := tx.Commit(); err != nil {
		return err
	}
	after := readMeta(f, metaPageAt(txid, pageSize))
	if after == nil || metaTxID(after) != txid {
		return errors.New("the commit's meta page is not where it belongs after it")
	}
	freeAfter, err := readFreelist(f, after)
	if err != nil {
		return err
	}
	r := commitRecord{txid: txid}
	written := writtenPages(freeBefore.ids, metaHighWater(before), freeAfter.ids, metaHighWater(after))
	if !recorded || len(written) > recordCapacity(pageSize) {
		// The pages go to disk before a record vouches for them.
		if !noSync && recorded {
			if err := syncData(f); err != nil {
				return err
			}
		}
		r.flags = recordSynced
	} else if r.pages, err = pageSums(f, written, pageSize); err != nil {
		return err
	}
	if _, err := f.WriteAt(r.encode(), metaPageAt(txid, pageSize)+commitRecordAt); err != nil {
		return err
	}
	if !noSync {
		if err := syncData(f); err != nil {
			return err
		}
		if recorded && previous.txid+1 == txid {
			// Best effort: without the note, damage to this commit is
			// taken for a cut.
			_ = noteAcknowledged(f, previous, pageSize)
		}
	}
	if last != nil {
		*last = commitState{db: db, meta: after, free: freeAfter, record: r}
	}
	return nil
}

// revertCommit invalidates the meta page of the failed commit txid, if
// bbolt wrote it, so that the file opens at the commit before it. Left in
// place, the commit would survive in the page cache, and the next open
// would find it whole and keep it: yet after a failed fdatasync Linux
// marks the pages clean, so a second sync succeeds without writing them,
// and later commits would rest on pages the disk may never have received.
// The revert itself is best effort: the commit already failed, and the
// lease recovers the file before its next use.
func revertCommit(f *os.File, txid uint64) {
	if newest, _ := newestMeta(f); newest != nil && metaTxID(newest) == txid {
		if invalidateMeta(f, newest) == nil {
			_ = syncData(f)
		}
	}
}

// writtenPages returns the pages a commit wrote: those it allocated, which
// were free before it (or beyond the file's end) and are not after it.
// Both freelists are sorted.
func writtenPages(freeBefore []uint64, highWaterBefore uint64, freeAfter []uint64, highWaterAfter uint64) []uint64 {
	var written []uint64
	take := func(id uint64) {
		if _, free := slices.BinarySearch(freeAfter, id); !free {
			written = append(written, id)
		}
	}
	for _, id := range freeBefore {
		take(id)
	}
	for id := highWaterBefore; id < highWaterAfter; id++ {
		take(id)
	}
	return written
}
