package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ehcheckpoints/boltstore/internal/filelock"
	bolt "go.etcd.io/bbolt"
)

// Timing of the lease. maxJanitorInterval bounds how long a waiting
// process goes unnoticed, and janitorInterval once the janitor has seen the
// store in use; handoverCourtesy keeps a holder that just handed over from
// grabbing the file straight back before the waiter, which polls at most
// maxPollInterval apart, can take it.
const (
	janitorInterval    = 250 * time.Microsecond
	maxJanitorInterval = 4 * time.Millisecond
	minPollInterval    = 50 * time.Microsecond
	maxPollInterval    = 100 * time.Microsecond
	handoverCourtesy   = 300 * time.Microsecond
	// maxReaderYield is how long a reader lets waiting writers go first:
	// long enough for the readers holding the flock to finish and hand it
	// to the writer, short beside a LockTimeout.
	maxReaderYield = 250 * time.Millisecond
)

// lease is a Store's hold on the file. bbolt keeps an exclusive flock for
// as long as a writable DB is open, so a lease opens the DB when a call
// needs it, keeps it while calls keep coming, and closes it when the store
// goes idle or another process announces that it waits (see the package
// documentation).
type lease struct {
	path        string
	idleRelease time.Duration
	readOnly    bool // open the file for reading, under a shared flock
	keepFormat  bool // refuse to convert a file of an older format

	mu       sync.Mutex
	db       *bolt.DB
	file     *os.File // the descriptor bbolt holds the flock through
	users    int
	draining bool // admit no new users; close once users is zero
	// handingOver marks a drain for a waiting process, which the closing
	// store then gives a head start.
	handingOver bool
	acquiring   bool
	// closing is closed by close: no new users, and an open that waits for
	// the flock stops.
	closing  chan struct{}
	lastUsed time.Time
	// handedOver is when the file was last given up to a waiting process.
	handedOver time.Time
	// changed is closed and replaced on every state change, to wake
	// goroutines waiting in acquire.
	changed chan struct{}

	// verify checks a whole file (Store.verify). left is what the file
	// looked like when the lease last let go of it, if it could tell.
	verify    func(*bolt.Tx) error
	left      fileState
	leftKnown bool
	suspect   bool // the open DB saw a failed commit
	// undone is the last commit an open found incomplete and undid (0:
	// none).
	undone uint64
	// convertedFrom is the older format the first open converted (0:
	// none); later opens find the current one.
	convertedFrom byte
}

// fileState is what the lease notes of the file when it lets go, to tell
// on reopening whether something other than a commit changed it meanwhile.
type fileState struct {
	size  int64
	mtime time.Time
	ctime time.Time // the inode's change time, where the system tells it
	txid  uint64    // of the newest valid meta page
}

func observeFile(f *os.File) (fileState, bool) {
	info, err := f.Stat()
	if err != nil {
		return fileState{}, false
	}
	meta, _ := newestMeta(f)
	if meta == nil {
		return fileState{}, false
	}
	return fileState{size: info.Size(), mtime: info.ModTime(), ctime: changeTime(info), txid: metaTxID(meta)}, true
}

// changedOutsideCommits reports whether the file went from was to now in a
// way no commit explains: its size, modification time or change time
// changed while its transaction id did not advance. A commit by another
// process advances the id; a disk or a program writing into the file does
// not. A program can put the modification time back, but not the change
// time, which every write and every change of times moves. Open verified the
// file, and every commit since came from bbolt, so only such a change needs
// the file verified again.
func (was fileState) changedOutsideCommits(now fileState) bool {
	if now.txid > was.txid {
		return false
	}
	return now != was
}

func newLease(path string, opts *Options) *lease {
	return &lease{
		path:        path,
		idleRelease: opts.IdleRelease,
		readOnly:    opts.ReadOnly,
		keepFormat:  opts.KeepOlderFormat,
		changed:     make(chan struct{}),
		closing:     make(chan struct{}),
	}
}

// acquire returns the open DB, opening it first when needed, and counts the
// caller as a user until it calls release. It gives up at deadline with
// ErrLockTimeout, or when ctx ends.
func (l *lease) acquire(ctx context.Context, deadline time.Time) (*bolt.DB, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		switch {
		case l.isClosing():
			l.mu.Unlock()
			return nil, fileError(l.path, ErrClosed)
		case l.db != nil && !l.draining:
			l.users++
			db := l.db
			l.mu.Unlock()
			return db, nil
		case l.db == nil && !l.acquiring:
			l.acquiring = true
			notBefore := l.handedOver.Add(handoverCourtesy)
			var left *fileState
			if l.leftKnown {
				state := l.left
				left = &state
			}
			l.mu.Unlock()
			return l.open(ctx, deadline, notBefore, left)
		}
		changed := l.changed
		l.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fileError(l.path, ctx.Err())
		case <-timer.C:
			return nil, lockTimeoutError(l.path)
		}
	}
}

// open takes the flock and opens the DB for acquire. left is the file as
// the lease last let go of it, nil if unknown.
func (l *lease) open(ctx context.Context, deadline, notBefore time.Time, left *fileState) (*bolt.DB, error) {
	db, file, report, err := l.lockAndOpen(ctx, deadline, notBefore, left)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acquiring = false
	l.wakeLocked()
	if err != nil {
		return nil, err
	}
	if report.undone != 0 {
		l.undone = report.undone
	}
	if report.convertedFrom != 0 {
		l.convertedFrom = report.convertedFrom
	}
	if l.isClosing() {
		// Close ran while the lock was being taken.
		_ = db.Close()
		return nil, fileError(l.path, ErrClosed)
	}
	l.db, l.file, l.draining, l.users = db, file, false, 1
	go l.janitor(db)
	return db, nil
}

func lockTimeoutError(path string) error {
	return fmt.Errorf("%s: %w: another process kept the file locked; find it with `fuser %s`",
		path, ErrLockTimeout, path)
}

// lockAndOpen waits for the flock, announcing itself as a waiter while it
// polls, and then opens bbolt on the locked descriptor, verifying the whole
// file first if it changed outside commits since left. It also reports
// what opening did to the file (openBolt).
func (l *lease) lockAndOpen(ctx context.Context, deadline, notBefore time.Time, left *fileState) (*bolt.DB, *os.File, openReport, error) {
	flag := os.O_RDWR
	if l.readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(l.path, flag, 0)
	if err != nil {
		return nil, nil, openReport{}, err
	}
	err = waitForFlock(ctx, l.closing, f, l.readOnly, deadline, notBefore)
	if err == nil && l.isClosing() {
		err = fileError(l.path, ErrClosed) // spare the recovery and checks
	}
	if err != nil {
		f.Close()
		return nil, nil, openReport{}, err
	}
	now, known := observeFile(f)
	// A file as this lease left it after commits it synced needs no
	// recovery; any other may hold another process's unsynced commit.
	db, report, err := openBolt(l.path, f, l.readOnly, l.keepFormat, left == nil || !known || *left != now)
	if err != nil {
		return nil, nil, openReport{}, err
	}
	if left != nil && known && left.changedOutsideCommits(now) {
		if err := contain(l.path, func() error { return db.View(l.verify) }); err != nil {
			_ = db.Close()
			return nil, nil, openReport{}, withUndone(err, report.undone)
		}
	}
	return db, f, report, nil
}

// isClosing reports whether close has begun. Callers that hold mu see it
// as close left it: close closes the channel under mu.
func (l *lease) isClosing() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// waitForFlock takes the flock through f, shared or exclusive, announcing
// itself as a waiter while it polls, not before notBefore and giving up at
// deadline, or with ErrClosed once closing is closed (nil: never). A
// shared waiter lets a waiting writer go first, for at most
// maxReaderYield: readers that share the flock without a break would shut
// a writer out, and writers that take turns would shut a reader out.
func waitForFlock(ctx context.Context, closing <-chan struct{}, f *os.File, shared bool, deadline, notBefore time.Time) error {
	start := time.Now()
	announced := false
	defer func() {
		if announced {
			_ = filelock.WithdrawWaiter(f)
		}
	}()
	if wait := time.Until(notBefore); wait > 0 {
		// We just handed the file over; let the waiter take it first, and
		// tell it now that we want the file back. As a reader only: a
		// waiting writer would make the reader we handed over to give way
		// to us.
		announced = filelock.AnnounceWaiter(f, false) == nil
		if err := pause(ctx, closing, wait); err != nil {
			return fileError(f.Name(), err)
		}
		if !shared && announced {
			_ = filelock.AnnounceWaiter(f, true)
		}
	}
	interval := minPollInterval
	for {
		err := filelock.ErrWouldBlock
		if !shared {
			err = filelock.TryLock(f)
		} else if writer, _ := filelock.WriterWaiting(f); !writer || time.Since(start) >= maxReaderYield {
			err = filelock.TryLockShared(f)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, filelock.ErrWouldBlock) {
			return err
		}
		if !announced {
			announced = filelock.AnnounceWaiter(f, !shared) == nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return lockTimeoutError(f.Name())
		}
		if err := pause(ctx, closing, min(interval, remaining)); err != nil {
			return fileError(f.Name(), err)
		}
		interval = min(2*interval, maxPollInterval)
	}
}

// pause sleeps for d, or returns early with ctx's error or, once closing
// is closed, ErrClosed.
func pause(ctx context.Context, closing <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closing:
		return ErrClosed
	}
}

// heldFile returns the descriptor bbolt holds the file through, for a
// caller between acquire and release.
func (l *lease) heldFile() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.file
}

// release ends one use begun by acquire.
func (l *lease) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users--
	l.lastUsed = time.Now()
	if l.users == 0 && (l.draining || l.isClosing()) {
		l.closeDBLocked()
	}
}

// discard drops the open DB once its current users are done, so that the
// next call reopens the file from disk. Used after a failed commit or a
// bbolt panic, when the in-memory state may no longer match the file.
func (l *lease) discard() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.db == nil {
		return
	}
	l.draining, l.suspect = true, true
	if l.users == 0 {
		l.closeDBLocked()
	}
}

// discarding reports whether db is no longer the DB new calls get: it is
// being closed, after a failed commit or to hand the file over.
func (l *lease) discarding(db *bolt.DB) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.db != db || l.draining
}

// janitor watches a held DB: it hands the file over when another process
// waits, or when the store has been idle for idleRelease. It looks again
// after janitorInterval when the store was used since its last look, and
// otherwise backs off towards maxJanitorInterval: every look wakes the
// process, which on a virtual machine costs tens of microseconds of CPU,
// and a processor that checkpoints every few tens of milliseconds would
// spend several percent of a core on looks that find nobody.
func (l *lease) janitor(db *bolt.DB) {
	interval := janitorInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	lastLook := time.Now()
	for range timer.C {
		l.mu.Lock()
		if l.db != db {
			l.mu.Unlock()
			return
		}
		now := time.Now()
		idle := now.Sub(l.lastUsed)
		if !l.draining && !l.noticeWaiterLocked() && l.users == 0 && idle >= l.idleRelease {
			l.draining = true
		}
		if l.draining && l.users == 0 {
			l.closeDBLocked()
			l.mu.Unlock()
			return
		}
		// Timers fire late on an idle machine, so use is judged by the
		// last look, not by the interval asked for.
		if l.users > 0 || l.lastUsed.After(lastLook) {
			interval = janitorInterval
		} else {
			// Not past the moment the idle store lets go of the file.
			interval = min(2*interval, maxJanitorInterval, max(l.idleRelease-idle, janitorInterval))
		}
		lastLook = now
		l.mu.Unlock()
		timer.Reset(interval)
	}
}

// noticeWaiterLocked starts handing the file over if another process waits
// for it, and reports whether one does.
func (l *lease) noticeWaiterLocked() bool {
	if waiting, _ := filelock.WaiterPresent(l.file); waiting {
		l.draining, l.handingOver = true, true
		return true
	}
	return false
}

// releaseAfterWrite is release for the write path. A commit is when a
// waiting process most likely arrived, so it looks for one at once rather
// than at the janitor's next tick.
func (l *lease) releaseAfterWrite() {
	l.mu.Lock()
	if l.db != nil && !l.draining {
		l.noticeWaiterLocked()
	}
	l.mu.Unlock()
	l.release()
}

// closeDBLocked closes the DB, which releases the flock and the
// descriptor, noting what the file looks like for the next open.
func (l *lease) closeDBLocked() {
	if l.db == nil {
		return
	}
	l.left, l.leftKnown = observeFile(l.file)
	if l.suspect {
		// After a failed commit the file may differ from what was
		// synced; whoever opens it next recovers it.
		l.leftKnown, l.suspect = false, false
	}
	// A close error leaves nothing to recover: every commit was already
	// synced, and the descriptor is gone either way.
	_ = l.db.Close()
	if l.handingOver {
		// The courtesy pause counts from when the file is free.
		l.handedOver = time.Now()
	}
	l.db, l.file, l.draining, l.handingOver = nil, nil, false, false
	l.wakeLocked()
}

func (l *lease) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// close stops admitting users and closes the DB once the last one is done.
// It returns once the file is let go of: after the calls still using the
// DB, and an open under way, are done.
func (l *lease) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.isClosing() {
		close(l.closing)
	}
	if l.users == 0 {
		l.closeDBLocked()
	}
	l.wakeLocked()
	for l.db != nil || l.acquiring {
		changed := l.changed
		l.mu.Unlock()
		<-changed
		l.mu.Lock()
	}
}
