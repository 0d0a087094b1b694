// Package filelock wraps the two kinds of advisory lock boltstore uses on a
// store file:
//
//   - the whole-file flock(2) that bbolt itself takes, which decides who may
//     open the bbolt database, and
//   - a "waiter" lock: a shared lock on one byte far beyond the end of the
//     file, which a process takes while it waits for the flock. The holder of
//     the flock polls for it and hands the file over when it sees one. A
//     waiting writer also locks the next byte, so that readers, who share
//     the flock, do not keep taking it while the writer waits.
//
// flock and record locks are independent on Linux, so the two never interfere.
package filelock

import "errors"

// ErrWouldBlock reports that a non-blocking lock attempt found the lock held.
var ErrWouldBlock = errors.New("filelock: lock is held by another file description")
