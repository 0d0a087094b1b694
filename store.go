package boltstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/ehcheckpoints/boltstore/internal/fsync"
	bolt "go.etcd.io/bbolt"
)

var _ azeventhubs.CheckpointStore = (*Store)(nil)

// Options configure a Store. The zero value of each field selects its
// default, so a nil *Options is the same as &Options{}.
type Options struct {
	// Now is the store's clock. It stamps ownerships (LastModifiedTime)
	// and checkpoints (when written). Default: time.Now.
	Now func() time.Time

	// LockTimeout bounds how long a call waits while another process holds
	// the file before it fails with ErrLockTimeout. A context deadline that
	// is sooner wins. Processors hand the file over within milliseconds, but
	// a slow disk can stall one commit for seconds, and the SDK's Processor
	// stops on any store error, so the default is generous. Default: 1m.
	LockTimeout time.Duration

	// IdleRelease is how long the store keeps the file after its last call
	// before releasing it unasked. Other processes do not have to wait for
	// it: on Linux they ask, and the store hands the file over at once.
	// Default: 100ms.
	IdleRelease time.Duration

	// ReadOnly opens an existing file for reading only, so it needs no
	// write access to it (a file of another user, a read-only mount):
	// writes fail with ErrReadOnly, and nothing is created. The store
	// takes a shared lock while it reads: processors hand the file over
	// as to any other store, several read-only stores read at once, and
	// they let a waiting writer in before they read again. A file whose
	// last commit did not reach the disk whole, or of an older layout,
	// cannot be read this way (ErrReadOnly): undoing that commit, or
	// converting the layout, is a write.
	ReadOnly bool

	// KeepOlderFormat makes Open fail with ErrOlderFormat, rather than
	// convert it, for a file of an older boltstore, which older
	// boltstores refuse once converted: for tools that must not change
	// the format of a file that processors may still use. It still
	// undoes a last commit that did not reach the disk whole, which older
	// boltstores do alike.
	KeepOlderFormat bool

	// NoSync skips fsync on commit. A crash of the machine (not of the
	// process) can then lose acknowledged writes or damage the file. For
	// tests only. Default: false.
	NoSync bool
}

// Defaults of the Options fields.
const (
	DefaultLockTimeout = time.Minute
	DefaultIdleRelease = 100 * time.Millisecond
)

func (o *Options) withDefaults() (Options, error) {
	var opts Options
	if o != nil {
		opts = *o
	}
	if opts.LockTimeout < 0 || opts.IdleRelease < 0 {
		return opts, fmt.Errorf("%w: negative duration in Options", ErrInvalidArgument)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.IdleRelease == 0 {
		opts.IdleRelease = DefaultIdleRelease
	}
	return opts, nil
}

// Store is a checkpoint store in one bbolt file. It implements
// azeventhubs.CheckpointStore and is safe for concurrent use, also by
// several processes that open the same file.
type Store struct {
	path      string
	opts      Options
	lease     *lease
	committer *committer
}

// Open opens the store file at path, creating it (mode 0600) if it does not
// exist. It fails with ErrUnsupportedFormat for a file that is not a
// boltstore file or comes from a newer version, with ErrCorrupt for a
// damaged one or an empty one (which Open does not take for a new store),
// and with ErrLockTimeout if another process keeps the file locked. Open
// verifies the file's page structure and every record's checksum, which
// takes time in proportion to its size. A file of an older boltstore
// (format 1 or 2) is converted to the current layout in one durable
// commit, after which older boltstores refuse it.
func Open(path string, opts *Options) (*Store, error) {
	return OpenContext(context.Background(), path, opts)
}

// OpenContext is Open with a context, which bounds the wait for a file
// that another process keeps locked as a call's context does: if ctx ends
// first, OpenContext fails with its error, having created nothing if ctx
// had ended when it was called. The verification that follows the wait
// runs to its end.
func OpenContext(ctx context.Context, path string, opts *Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: Open: the path is empty", ErrInvalidArgument)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fileError(path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fileError(path, err)
	}
	if !o.ReadOnly {
		if err := createIfMissing(path); err != nil {
			return nil, fileError(path, err)
		}
	}
	s := &Store{path: path, opts: o, lease: newLease(path, &o)}
	s.lease.verify = s.verify
	err = s.view(ctx, s.verify)
	if err != nil {
		s.lease.close()
		undone, _ := s.UndoneCommit()
		return nil, withUndone(err, undone)
	}
	s.committer = newCommitter(s)
	return s, nil
}

// verify checks the whole file: its page structure, bbolt's own
// consistency check, and every record's checksum. Open runs it, and so does
// the lease when it reopens a file that something other than a commit
// changed while the store did not hold it.
func (s *Store) verify(tx *bolt.Tx) error {
	if err := verifyStructure(s.path, tx); err != nil {
		return err
	}
	// Every record's checksum, which also catches a damaged bucket name:
	// lists of the real group would find nothing and say so.
	problems, err := s.recordProblems(tx, nil, 1)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w (run `ehcheckpoints check %s`; restore from a backup if it reports damage)", problems[0], s.path)
	}
	return nil
}

// verifyStructure checks the page structure of the file at path, which tx
// reads, and runs bbolt's consistency check: nothing may walk the tree
// with bbolt before, as a damaged page can make it loop or fault.
func verifyStructure(path string, tx *bolt.Tx) error {
	if damage, err := verifyPages(path, tx); err != nil {
		return fileError(path, err)
	} else if damage != nil {
		return corruptError(path, damage.Error())
	}
	if problems := bboltProblems(tx, 1); len(problems) > 0 {
		return corruptError(path, problems[0].Error())
	}
	return nil
}

// createIfMissing creates an initialised store file at path unless one
// exists. It builds the file before it has its name (fsync.NewFile) and
// then links it into place, so no process ever sees a half-made file, and
// two processes creating the same store at once both end up with the same
// one.
func createIfMissing(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err := fsync.NewFile(path, func(f *os.File) error {
		db, err := openBoltOn(f)
		if err != nil {
			return err
		}
		if err := db.Update(initBolt); err != nil {
			db.Close()
			return err
		}
		return db.Close()
	})
	if errors.Is(err, fs.ErrExist) {
		return nil // another process created it meanwhile
	}
	return err
}

// Path returns the store file's path as given to Open.
func (s *Store) Path() string { return s.path }

// Close commits queued writes, waits for running calls, and releases the
// file. Calls after Close, and reads still waiting for another process to
// hand the file over, fail with ErrClosed. Writes still waiting for the
// file are not dropped: Close waits with them, each up to its LockTimeout
// or the end of its context, so cancel those contexts to close sooner.
// Close is safe to call twice.
func (s *Store) Close() error {
	s.committer.close()
	s.lease.close()
	return nil
}

// now is the store's clock, truncated to what records store (nanoseconds,
// UTC, no monotonic reading), so a claim's result equals what lists return.
func (s *Store) now() time.Time {
	return time.Unix(0, s.opts.Now().UnixNano()).UTC()
}
