//go:build linux

package azurite

import "syscall"

// setParentDeathSignal asks the kernel to kill Azurite if the process that
// started it dies without calling Close (say, go test's -timeout panic), so
// no emulator is left running after a crashed test.
func setParentDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGKILL
}
