//go:build !unix

package demo

import (
	"errors"
	"os"
)

// terminate reports that p cannot be asked to stop by a signal here; the
// caller closes its standard input instead.
func terminate(*os.Process) error { return errors.ErrUnsupported }
