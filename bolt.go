package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// openBolt opens bbolt on f, which already holds the flock, checks that
// the file is a boltstore file of a format this version reads, and
// converts a file of an older layout (migrateLayout), reporting its format
// as convertedFrom, unless keepFormat, which refuses it (ErrOlderFormat).
// With recoverTorn it first falls back from a commit that did not reach
// the disk whole, reporting its transaction id as undone, and syncs the
// file (recoverTornCommit). bbolt panics on some damaged files; the panic
// becomes ErrCorrupt. readOnly opens it for reading on a read-only f: a
// torn commit or an older layout, which need a write, is then ErrReadOnly,
// and the older layout also ErrOlderFormat.
func openBolt(path string, f *os.File, readOnly, keepFormat, recoverTorn bool) (db *bolt.DB, report openReport, err error) {
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, openReport{}, err
	}
	if info.Size() == 0 {
		// Not taken for a new store: the store creates its files whole, so
		// an empty one was made by someone else, or emptied by damage, and
		// starting afresh would lose every checkpoint without a word.
		f.Close()
		return nil, openReport{}, fmt.Errorf("%s: %w: the file is empty, and a store file never is: if you created it empty, remove it and the store creates it; if it held checkpoints, restore it from a backup", path, ErrCorrupt)
	}
	if recoverTorn || readOnly {
		if report.undone, err = recoverTornCommit(path, f, readOnly); err != nil {
			f.Close()
			return nil, openReport{}, withUndone(err, report.undone)
		}
	}
	if err := checkHeader(path, f, info.Size()); err != nil {
		f.Close()
		return nil, openReport{}, withUndone(err, report.undone)
	}
	err = contain(path, func() error {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			// Hand bbolt the descriptor that holds the flock; its own
			// flock on it is then a no-op, and its Close releases it.
			OpenFile:     func(string, int, os.FileMode) (*os.File, error) { return f, nil },
			FreelistType: bolt.FreelistMapType,
			ReadOnly:     readOnly,
			// A read-only DB otherwise loads its freelist in Check, unlocked,
			// while other read transactions of the DB may use it.
			PreLoadFreelist: readOnly,
		})
		if err != nil {
			return classifyOpenError(path, err)
		}
		var version byte
		err := db.View(func(tx *bolt.Tx) (err error) {
			version, err = checkFormat(path, tx, info.Size())
			return err
		})
		switch {
		case err != nil || version == FormatVersion:
			return err
		case readOnly:
			return fmt.Errorf("%s: %w: %w (format %d), which older boltstores refuse once it is converted; opening it with write access converts it", path, ErrReadOnly, ErrOlderFormat, version)
		case keepFormat:
			return fmt.Errorf("%s: %w (format %d), which older boltstores refuse once it is converted", path, ErrOlderFormat, version)
		}
		report.convertedFrom = version
		return migrateLayout(path, db, f, version)
	})
	if err != nil {
		if db != nil {
			_ = db.Close()
		} else {
			f.Close()
		}
		return nil, openReport{}, withUndone(err, report.undone)
	}
	return db, report, nil
}

// openReport is what opening a file did to it besides opening it.
type openReport struct {
	undone        uint64 // the incomplete commit it undid, 0 if none
	convertedFrom byte   // the older format it converted, 0 if none
}

// bbolt's meta page, as far as checkHeader reads it: after the 16-byte page
// header come magic (uint32), version, page size (uint32), flags, the root
// bucket (16 bytes), the freelist page id (uint64), the high-water page id
// (uint64) and the transaction id (uint64), in native byte order.
const (
	boltMagic       = 0xED0CDAED
	metaOffset      = 16
	metaPageSizeAt  = metaOffset + 8
	metaRootAt      = metaOffset + 16 // the root bucket's page id
	metaFreelistAt  = metaOffset + 32
	metaHighWaterAt = metaOffset + 40
	metaTxIDAt      = metaOffset + 48
	metaChecksumAt  = metaOffset + 56
	metaEnd         = metaOffset + 64
)

// openBoltOn opens a new bbolt file that fsync.NewFile is making, through
// a copy of its descriptor: closing the DB closes the file bbolt was
// given, and NewFile still has to sync and link f after that.
func openBoltOn(f *os.File) (*bolt.DB, error) {
	// Close-on-exec, like every descriptor Go opens: a child process
	// started meanwhile must not inherit the file.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	dup := os.NewFile(uintptr(fd), f.Name())
	db, err := bolt.Open(f.Name(), 0o600, &bolt.Options{
		OpenFile: func(string, int, os.FileMode) (*os.File, error) { return dup, nil },
	})
	if err != nil {
		dup.Close() // bbolt closes it on most failures; a second Close is harmless
	}
	return db, err
}

// checkHeader tells a foreign file and a truncated store apart before
// bbolt, whose errors for both are vague ("file size too small", "invalid
// freelist page"), sees the file.
func checkHeader(path string, f *os.File, size int64) error {
	newest, sawMagic := newestMeta(f)
	switch {
	case !sawMagic:
		return fmt.Errorf("%s: %w: not a boltstore file (no bbolt header)", path, ErrUnsupportedFormat)
	case newest == nil:
		return corruptError(path, "both bbolt meta pages are damaged")
	}
	need := binary.NativeEndian.Uint64(newest[metaHighWaterAt:]) * uint64(binary.NativeEndian.Uint32(newest[metaPageSizeAt:]))
	if need > uint64(size) {
		return corruptError(path, fmt.Sprintf("the file is truncated: its metadata needs %d bytes, it has %d", need, size))
	}
	// bbolt allocates as many ids as the freelist header claims before it
	// reads one; a damaged count would end the process out of memory.
	if _, err := readFreelist(f, newest); err != nil {
		return corruptError(path, err.Error())
	}
	return nil
}

// newestMeta returns the meta page bbolt uses: of the two whose checksum
// holds, the one with the higher transaction id; nil if neither holds.
// sawMagic reports whether either page looked like a bbolt meta page. The
// second meta page lies one page in, at the file's page size, which need
// not be this machine's: it is read from the first meta page, or probed
// when that one is damaged.
func newestMeta(f *os.File) (newest []byte, sawMagic bool) {
	read := func(at int64) []byte {
		meta := rawMeta(f, at)
		if meta == nil {
			return nil
		}
		sawMagic = true
		return validMeta(meta)
	}
	newest = read(0)
	candidates := []int64{int64(os.Getpagesize()), 4096, 8192, 16384, 32768, 65536}
	if newest != nil {
		candidates = []int64{int64(binary.NativeEndian.Uint32(newest[metaPageSizeAt:]))}
	}
	for _, at := range candidates {
		meta := read(at)
		if meta == nil || int64(binary.NativeEndian.Uint32(meta[metaPageSizeAt:])) != at {
			continue
		}
		if newest == nil || metaTxID(meta) > metaTxID(newest) {
			newest = meta
		}
		break
	}
	return newest, sawMagic
}

// readMeta reads the meta page at offset at; nil unless it is intact.
func readMeta(f *os.File, at int64) []byte {
	if meta := rawMeta(f, at); meta != nil {
		return validMeta(meta)
	}
	return nil
}

// rawMeta reads what looks like a meta page at offset at: nil unless it
// starts with bbolt's magic number.
func rawMeta(f *os.File, at int64) []byte {
	meta := make([]byte, metaEnd)
	if _, err := f.ReadAt(meta, at); err != nil || binary.NativeEndian.Uint32(meta[metaOffset:]) != boltMagic {
		return nil
	}
	return meta
}

// validMeta returns meta if its checksum holds and its fields are sane.
func validMeta(meta []byte) []byte {
	sum := fnv.New64a()
	sum.Write(meta[metaOffset:metaChecksumAt])
	if sum.Sum64() != binary.NativeEndian.Uint64(meta[metaChecksumAt:]) || !saneMeta(meta) {
		return nil // bbolt falls back to the other meta page, or refuses
	}
	return meta
}

// maxPages bounds a meta page's high-water mark (2^40 pages, far beyond any
// store), so that sizes computed from it cannot overflow.
const maxPages = 1 << 40

// saneMeta checks the fields later arithmetic trusts: a power-of-two page
// size bbolt could have written, and a bounded high-water mark.
func saneMeta(meta []byte) bool {
	pageSize := binary.NativeEndian.Uint32(meta[metaPageSizeAt:])
	highWater := binary.NativeEndian.Uint64(meta[metaHighWaterAt:])
	return pageSize >= 512 && pageSize <= 1<<16 && pageSize&(pageSize-1) == 0 && highWater <= maxPages
}

// classifyOpenError maps bbolt's refusal to open a file to our sentinels.
func classifyOpenError(path string, err error) error {
	switch {
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch):
		return fmt.Errorf("%s: %w: not a boltstore file (%v)", path, ErrUnsupportedFormat, err)
	case errors.Is(err, bolt.ErrChecksum):
		return corruptError(path, err.Error())
	}
	return corruptError(path, "bbolt cannot open it: "+err.Error())
}

// checkFormat verifies the format marker and that the file is as long as
// its metadata says (bbolt would fault on pages past the end of the file),
// and returns the format version.
func checkFormat(path string, tx *bolt.Tx, fileSize int64) (byte, error) {
	if tx.Size() > fileSize {
		return 0, corruptError(path, fmt.Sprintf("the file is truncated: its metadata needs %d bytes, it has %d", tx.Size(), fileSize))
	}
	marker := tx.Bucket(bucketMarker)
	if marker == nil {
		return 0, fmt.Errorf("%s: %w: a bbolt file, but not a boltstore file", path, ErrUnsupportedFormat)
	}
	switch v := marker.Get(keyFormat); {
	case len(v) != 1:
		return 0, corruptError(path, "the format marker is damaged")
	case v[0] > FormatVersion:
		return 0, fmt.Errorf("%s: %w: format version %d is newer than this boltstore reads (%d); upgrade boltstore",
			path, ErrUnsupportedFormat, v[0], FormatVersion)
	case v[0] < oldestFormatVersion:
		return 0, fmt.Errorf("%s: %w: unknown format version %d", path, ErrUnsupportedFormat, v[0])
	default:
		return v[0], nil
	}
}

// initBolt writes the format marker into a freshly created bbolt file.
func initBolt(tx *bolt.Tx) error {
	marker, err := tx.CreateBucket(bucketMarker)
	if err != nil {
		return err
	}
	if err := marker.Put(keyFormat, []byte{FormatVersion}); err != nil {
		return err
	}
	for _, name := range layoutBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

// contain runs fn, turning a bbolt panic or a memory fault on the mapped
// file into ErrCorrupt. bbolt trusts the pages it reads; a damaged page can
// make it index out of range or touch memory past the end of the file.
func contain(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(path, fmt.Sprintf("bbolt failed on a damaged page: %v", r))
		}
	}()
	return fn()
}

// view runs fn in a read transaction on the shared file.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	return s.withDB(ctx, func(db *bolt.DB) error { return db.View(fn) })
}

// viewAlone runs fn in a transaction that no commit runs alongside: a
// write transaction, rolled back. bbolt's Check in a read transaction reads
// the freelist while a commit may change it, which ends the process, and
// the page walk reads the newest meta page from the file, which must be
// the transaction's own. A read-only store commits nothing, and holds the
// file only shared, so no one commits while it reads.
func (s *Store) viewAlone(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if s.opts.ReadOnly {
		return s.view(ctx, fn)
	}
	for {
		discarded := false
		err := s.withDB(ctx, func(db *bolt.DB) error {
			if err := s.committer.lockCommit(ctx); err != nil {
				return fileError(s.path, err)
			}
			defer s.committer.unlockCommit()
			// A failed commit, reverted in the file, leaves this DB's
			// memory ahead of it: run on the DB reopened from the file.
			if discarded = s.lease.discarding(db); discarded {
				return nil
			}
			tx, err := db.Begin(true)
			if err != nil {
				return err
			}
			// Also on a panic: the transaction holds bbolt's writer lock.
			defer func() { _ = tx.Rollback() }()
			return fn(tx)
		})
		if !discarded {
			return err
		}
	}
}

// withDB runs fn on the shared file's DB, containing bbolt's panics.
func (s *Store) withDB(ctx context.Context, fn func(db *bolt.DB) error) error {
	if err := ctx.Err(); err != nil {
		return fileError(s.path, err)
	}
	db, err := s.lease.acquire(ctx, time.Now().Add(s.opts.LockTimeout))
	if err != nil {
		return err
	}
	defer s.lease.release()
	err = contain(s.path, func() error { return fn(db) })
	if errors.Is(err, ErrCorrupt) {
		s.lease.discard()
	}
	return err
}

// Write operations are committed in groups: one goroutine at a time, the
// leader, commits everything queued since its last commit in one
// transaction and one fsync (commit.go). A caller that finds no leader leads
// itself and commits its own write at once, without handing it to another
// goroutine; callers arriving meanwhile queue up and share the next commit,
// which a background goroutine runs once the first caller has its result,
// gathering into its transaction what arrives while it runs (drain).

// Operation states. A caller whose context ends while its operation is
// still pending marks it abandoned, and the leader skips it, so an
// abandoned write is never applied.
const (
	opPending int32 = iota
	opTaken
	opAbandoned
)

// applyFunc applies one operation inside a shared write transaction. It
// returns opErr when the operation fails on its own, having written
// nothing; any other failure is fatal and rolls back the whole batch.
type applyFunc func(w *writeTx) (opErr, fatal error)

// writeTx is a batch's shared write transaction as operations see it.
type writeTx struct {
	*bolt.Tx
	enc *recordEncoder
	// lastGroup and lastID are the group whose id was looked up last, and
	// its id: the writes of a batch are mostly of one group.
	lastGroup, lastID []byte
}

// groupID returns a group's id, giving it one if it has none.
func (w *writeTx) groupID(g groupKey) ([]byte, error) {
	if w.lastID != nil && bytes.Equal(w.lastGroup, g.key) {
		return w.lastID, nil
	}
	id, err := groupIDFor(w.Tx, g)
	if err != nil {
		return nil, corruptError(w.DB().Path(), fmt.Sprintf("consumer group %s: %v", coordinates(string(g.namespace), string(g.hub), string(g.group), ""), err))
	}
	w.lastGroup, w.lastID = g.key, id
	return id, nil
}

// forgetGroups drops the id groupID remembers; a new transaction, or one
// that deletes groups, must.
func (w *writeTx) forgetGroups() { w.lastGroup, w.lastID = nil, nil }

// begin makes tx the batch's transaction.
func (w *writeTx) begin(tx *bolt.Tx) {
	w.Tx = tx
	w.forgetGroups()
	w.enc.newSlab()
}

// recordBucket opens, creating it if missing, the bucket of one kind of
// record.
func (w *writeTx) recordBucket(kind recordKind) (*bolt.Bucket, error) {
	b, err := w.CreateBucketIfNotExists(kind.bucket())
	if errors.Is(err, bolt.ErrIncompatibleValue) {
		// A plain value where the bucket belongs: a damaged bucket flag.
		return nil, corruptError(w.DB().Path(), fmt.Sprintf("bucket of %s records is stored as a plain value", kind.recordType()))
	}
	return b, err
}

type writeOp struct {
	apply    applyFunc
	deadline time.Time // for the file lock
	state    atomic.Int32
	done     chan error
}

// pending reports whether op still waits to be taken into a commit.
func (op *writeOp) pending() bool { return op.state.Load() == opPending }

// committer owns the write path of a Store.
type committer struct {
	store *Store
	wtx   writeTx     // used by the leader only
	last  commitState // likewise

	mu      sync.Mutex
	queue   []*writeOp
	leading bool // a goroutine is committing the queue
	closed  bool
	idle    *sync.Cond // signalled when leading becomes false

	// inCommit is held (a token in it) from before a batch's writes are
	// taken until its commit is on disk, or reverted and its DB discarded.
	// bbolt's writer lock ends earlier, when the pages are written;
	// viewAlone takes this to see no commit half done. A channel rather
	// than a mutex, so that a caller waiting for it can give up when its
	// context ends.
	inCommit chan struct{}
}

func newCommitter(s *Store) *committer {
	c := &committer{store: s, wtx: writeTx{enc: newRecordEncoder()}, inCommit: make(chan struct{}, 1)}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// lockCommit takes inCommit, unless ctx ends first.
func (c *committer) lockCommit(ctx context.Context) error {
	select {
	case c.inCommit <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *committer) unlockCommit() { <-c.inCommit }

// write queues apply for the next commit and waits for its outcome.
func (c *committer) write(ctx context.Context, apply applyFunc) error {
	path := c.store.path
	if err := ctx.Err(); err != nil {
		return fileError(path, err)
	}
	op := &writeOp{apply: apply, deadline: time.Now().Add(c.store.opts.LockTimeout), done: make(chan error, 1)}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return fileError(path, ErrClosed)
	case c.store.opts.ReadOnly:
		c.mu.Unlock()
		return fileError(path, ErrReadOnly)
	}
	c.queue = append(c.queue, op)
	lead := !c.leading
	c.leading = true
	c.mu.Unlock()
	if lead {
		c.lead(ctx, op)
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		select {
		case err := <-op.done:
			// Finished as the context ended: the outcome is known.
			return err
		default:
		}
		// Abandoned already if it led and gave up waiting.
		if op.state.CompareAndSwap(opPending, opAbandoned) || op.state.Load() == opAbandoned {
			return fmt.Errorf("%s: %w (nothing was written)", path, ctx.Err())
		}
		return fmt.Errorf("%s: %w (the write was already being committed; it may or may not have been stored)", path, ctx.Err())
	}
}

// lead commits the queue, own (the caller's write) among it, in the calling
// goroutine, then passes leadership to a background goroutine if more
// writes arrived meanwhile, so that the caller can return.
func (c *committer) lead(ctx context.Context, own *writeOp) {
	batch := c.take()
	var took time.Duration
	if len(batch) > 0 {
		took, _ = c.commit(ctx, own, batch, nil)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 {
		go c.drain(len(batch), took)
		return
	}
	c.stopLeadingLocked()
}

// stopLeadingLocked ends leadership; the queue is empty.
func (c *committer) stopLeadingLocked() {
	c.leading = false
	c.idle.Broadcast()
}

// drain leads until the queue is empty; expected and lastCommit are the
// size and duration of the commit just made. Callers whose writes the last
// commit finished are waking up to send their next ones, and a commit
// costs little more for thirty writes than for one: so each commit drain
// makes waits for as many writes as the last one had, for at most a
// quarter of that commit's time and maxGatherPatience, rather than
// splitting the writers into two half-full commits that stay out of step.
// It waits inside its transaction, applying each write as it comes, so
// that the wait also does the batch's work. A caller that finds no leader
// commits its write itself, at once; one that arrives while drain leads
// waits at most that long more.
func (c *committer) drain(expected int, lastCommit time.Duration) {
	for {
		patience := min(lastCommit/gatherShareOfCommit, maxGatherPatience)
		c.awaitWrite(patience)
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			c.stopLeadingLocked()
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		lastCommit, expected = c.commit(context.Background(), nil, batch, &gatherPlan{expected: expected, patience: patience})
	}
}

// awaitWrite yields until a write is queued, the store is closing or
// patience has passed. It yields rather than sleeps: the writes it waits
// for come from goroutines that are runnable already, within
// microseconds, and a timer that short would round up to a millisecond.
func (c *committer) awaitWrite(patience time.Duration) {
	queued, closing := c.queued()
	for start := time.Now(); queued == 0 && !closing && time.Since(start) < patience; {
		runtime.Gosched()
		queued, closing = c.queued()
	}
}

// gatherPlan is how long a commit gathers writes into its transaction.
type gatherPlan struct {
	expected int           // writes to wait for, those already taken included
	patience time.Duration // how long to wait for them
}

// gather takes the writes queued, lot by lot, and hands each lot to admit,
// which applies them and returns how many it applied and whether to go on.
// It takes writes while fewer than plan.expected are applied (have, so
// far), the store is not closing and plan.patience has not passed,
// yielding when the queue is empty; then until the queue stops growing:
// gatherIdleYields yields in a row that brought no write, or
// maxGatherYields in all.
func (c *committer) gather(have int, plan gatherPlan, admit func([]*writeOp) (applied int, ok bool)) {
	take := func() (took, ok bool) {
		ops := c.take()
		if len(ops) == 0 {
			return false, true
		}
		n, ok := admit(ops)
		have += n
		return true, ok
	}
	for start := time.Now(); have < plan.expected && time.Since(start) < plan.patience; {
		if _, closing := c.queued(); closing {
			break
		}
		took, ok := take()
		if !ok {
			return
		}
		if !took {
			runtime.Gosched()
		}
	}
	for idle, yields := 0, 0; idle < gatherIdleYields && yields < maxGatherYields; yields++ {
		runtime.Gosched()
		took, ok := take()
		if !ok {
			return
		}
		if took {
			idle = 0
		} else {
			idle++
		}
	}
}

// drain waits for the first write, and gather for the rest, each for
// 1/gatherShareOfCommit of the last commit's time, but at most
// maxGatherPatience: on a slow disk a quarter of a commit would be
// milliseconds of a core spent yielding for writers that, if they come at
// all, come within microseconds. gatherIdleYields and maxGatherYields end
// the take-what-still-comes phase: writers just woken arrive within a
// yield or two of each other.
const (
	gatherShareOfCommit = 4
	maxGatherPatience   = 100 * time.Microsecond
	gatherIdleYields    = 2
	maxGatherYields     = 64
)

// queued returns how many writes wait, and whether the store is closing.
func (c *committer) queued() (n int, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue), c.closed
}

func (c *committer) take() []*writeOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.queue
	c.queue = nil
	return batch
}

// requeue puts operations a leader could not commit back at the head of
// the queue, for the next leader.
func (c *committer) requeue(batch []*writeOp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queue = append(batch, c.queue...)
}

// close waits for queued writes to be committed and refuses new ones.
func (c *committer) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for c.leading {
		c.idle.Wait()
	}
}

// commit runs one batch: wait for the file, take the operations still
// wanted, apply them in one transaction, with plan (if not nil) gather
// more into it, commit, and report. If ctx (the leading caller's) ends
// while waiting for the file or for a check, own (that caller's write, if
// not nil) is abandoned and the rest of the batch goes back to the queue
// for the next leader. It returns how long the transaction took, from its
// start until it was on disk, without the wait for the file or for more
// writes: the cost of a commit, which drain's patience is measured in; 0
// when it failed or committed nothing. committed is how many writes it
// took.
func (c *committer) commit(ctx context.Context, own *writeOp, batch []*writeOp, plan *gatherPlan) (took time.Duration, committed int) {
	s := c.store
	giveUp := func(batch []*writeOp) {
		// Abandoned before it is requeued: the next leader must not
		// commit a write whose caller reports that nothing was written.
		if own != nil {
			own.state.CompareAndSwap(opPending, opAbandoned)
		}
		c.requeue(batch)
	}
	db, batch := c.acquire(ctx, batch)
	if db == nil {
		if len(batch) > 0 {
			giveUp(batch)
		}
		return 0, 0
	}
	defer s.lease.releaseAfterWrite()
	// A check may hold the file for long; a caller that leads waits for
	// it no longer than its context allows.
	if err := c.lockCommit(ctx); err != nil {
		giveUp(batch)
		return 0, 0
	}
	defer c.unlockCommit()
	file := s.lease.heldFile()
	if !slices.ContainsFunc(batch, (*writeOp).pending) {
		return 0, 0
	}
	taken, results := make([]*writeOp, 0, len(batch)), make([]error, 0, len(batch))
	start := time.Now()
	var gathering time.Duration
	err := contain(s.path, func() error {
		tx, err := db.Begin(true)
		if err != nil {
			return err
		}
		// Roll back on a panic too: the transaction holds bbolt's writer
		// lock, and closing the DB would wait for it forever.
		defer func() {
			if tx.DB() != nil {
				_ = tx.Rollback()
			}
		}()
		w := &c.wtx
		w.begin(tx)
		defer func() { w.Tx = nil }()
		// admit applies those of ops still pending, and returns how many
		// it took. A failure, or a panic, stops it: the writes not reached
		// go back for the next commit.
		var fatal error
		admit := func(ops []*writeOp) (n int, ok bool) {
			next := 0
			defer func() {
				if next < len(ops) {
					c.requeue(ops[next:])
				}
			}()
			for next < len(ops) {
				op := ops[next]
				next++
				if !op.state.CompareAndSwap(opPending, opTaken) {
					continue
				}
				// Listed before it runs: a panic in apply fails the whole
				// batch, this write with it.
				taken, results, n = append(taken, op), append(results, nil), n+1
				opErr, err := op.apply(w)
				results[len(results)-1] = opErr
				if err != nil {
					fatal = err
					return n, false
				}
			}
			return n, true
		}
		if _, ok := admit(batch); !ok {
			return fatal
		}
		if plan != nil {
			gatherStart := time.Now()
			c.gather(len(taken), *plan, admit)
			gathering = time.Since(gatherStart)
			if fatal != nil {
				return fatal
			}
		}
		if len(taken) == 0 {
			return nil // abandoned meanwhile: nothing to commit
		}
		return commitDurably(tx, file, s.opts.NoSync, &c.last)
	})
	if err != nil {
		// The DB's memory may not match the file after a failed commit;
		// reopen it for the next batch.
		s.lease.discard()
		if !errors.Is(err, ErrCorrupt) {
			// commitDurably reverted the commit, if it got as far as the
			// file; only if that revert fails too can it survive a reopen.
			err = fmt.Errorf("%s: commit failed; its writes are not acknowledged: %w", s.path, err)
		}
		for _, op := range taken {
			op.done <- err
		}
		return 0, len(taken) // its writers may not come back soon: wait for none
	}
	if len(taken) == 0 {
		return 0, 0
	}
	took = time.Since(start) - gathering
	for i, op := range taken {
		op.done <- results[i]
	}
	return took, len(taken)
}

// acquire waits for the file on behalf of a batch. Each operation waits at
// most until its own deadline; those that time out fail, the rest keep
// waiting. It returns the DB and the operations still pending; a nil DB
// once none are left, or with the pending ones when ctx ends.
func (c *committer) acquire(ctx context.Context, batch []*writeOp) (*bolt.DB, []*writeOp) {
	for {
		live := batch[:0]
		for _, op := range batch {
			if op.pending() {
				live = append(live, op)
			}
		}
		batch = live
		if len(batch) == 0 {
			return nil, nil
		}
		deadline := batch[0].deadline
		for _, op := range batch[1:] {
			if op.deadline.Before(deadline) {
				deadline = op.deadline
			}
		}
		db, err := c.store.lease.acquire(ctx, deadline)
		if err == nil {
			return db, batch
		}
		if ctx.Err() != nil {
			return nil, batch
		}
		for _, op := range batch {
			if errors.Is(err, ErrLockTimeout) && time.Now().Before(op.deadline) {
				continue // its own deadline is later; keep waiting
			}
			if op.state.CompareAndSwap(opPending, opTaken) {
				op.done <- err
			}
		}
	}
}
