package boltstore

import (
	"os"
	"syscall"
	"time"
)

// changeTime returns the change time of the inode Stat described: no
// program can set it, so it moves on every write, also when the
// modification time is put back afterwards.
func changeTime(info os.FileInfo) time.Time {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}
	}
	return time.Unix(st.Ctim.Unix())
}
