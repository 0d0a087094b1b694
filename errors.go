package boltstore

import (
	"errors"
	"fmt"
)

// ErrInvalidArgument reports input the store refuses before touching the
// file: a missing coordinate, a name that is not valid UTF-8 or too long, or
// a checkpoint with neither offset nor sequence number.
var ErrInvalidArgument = errors.New("boltstore: invalid argument")

// ErrCorrupt reports a store file that is damaged: a record whose checksum
// does not match, a page bbolt cannot read, or a file shorter than its own
// metadata says. The data is never returned. Run `ehcheckpoints check FILE`
// for a report and restore from a backup.
var ErrCorrupt = errors.New("boltstore: store file is damaged")

// ErrUnsupportedFormat reports a file that is not a boltstore file, or one
// written by a newer boltstore with a format this version cannot read.
var ErrUnsupportedFormat = errors.New("boltstore: unsupported file format")

// ErrChanged reports an edit made on condition (Unchanged) that was not
// made because a partition it names changed owner since the caller read
// it: a processor claimed, renewed or released it. Nothing was written;
// read the file again and decide anew.
var ErrChanged = errors.New("boltstore: ownership changed since it was read")

// ErrOlderFormat reports a file in the layout of an older boltstore, which
// a store opened with Options.ReadOnly (then with ErrReadOnly) or
// Options.KeepOlderFormat does not read. Any other Open converts the file
// (Store.ConvertedFrom), after which older boltstores refuse it.
var ErrOlderFormat = errors.New("boltstore: the file has the layout of an older boltstore")

// ErrReadOnly reports a write to a store opened with Options.ReadOnly, or a
// file that needs a write before it can be read: one whose last commit did
// not reach the disk whole, or one of an older layout. Opening it once with
// write access repairs or converts it.
var ErrReadOnly = errors.New("boltstore: needs write access; opened read-only")

// ErrClosed reports a call on a Store after Close.
var ErrClosed = errors.New("boltstore: store is closed")

// ErrLockTimeout reports that another process held the store file for
// longer than Options.LockTimeout.
var ErrLockTimeout = errors.New("boltstore: timed out waiting for the file lock")

// fileError wraps err with the store file's path, so that every error a
// caller sees names the file it is about.
func fileError(path string, err error) error {
	return fmt.Errorf("%s: %w", path, err)
}

// corruptError builds an ErrCorrupt for path with advice on what to do.
func corruptError(path, detail string) error {
	return fmt.Errorf("%s: %w: %s (run `ehcheckpoints check %s`; restore from a backup if it reports damage)",
		path, ErrCorrupt, detail, path)
}
