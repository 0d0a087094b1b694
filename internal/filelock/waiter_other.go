//go:build !linux

package filelock

import "os"

// WaiterSignals reports whether this platform can signal waiters. Without
// it, a holder only hands the file over when it goes idle.
const WaiterSignals = false

// AnnounceWaiter is a no-op where open-file-description locks are missing.
func AnnounceWaiter(*os.File, bool) error { return nil }

// WithdrawWaiter is a no-op where open-file-description locks are missing.
func WithdrawWaiter(*os.File) error { return nil }

// WaiterPresent always reports false where waiters cannot signal.
func WaiterPresent(*os.File) (bool, error) { return false, nil }

// WriterWaiting always reports false where waiters cannot signal.
func WriterWaiting(*os.File) (bool, error) { return false, nil }
