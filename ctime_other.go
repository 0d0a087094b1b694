//go:build !linux

package boltstore

import (
	"os"
	"time"
)

// changeTime is the zero time where the store does not read the inode's
// change time; only size and modification time then tell a change.
func changeTime(os.FileInfo) time.Time { return time.Time{} }
