//go:build unix

package azurite

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the child in a new process group led by itself, so
// signalGroup reaches it and anything it spawns, and a Ctrl-C meant for the
// test binary's group is not delivered to it twice.
func setProcessGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr)
}

// signalGroup sends SIGTERM (or SIGKILL if kill) to the child's process
// group. Errors (typically ESRCH: the group is already gone) are ignored.
func signalGroup(cmd *exec.Cmd, kill bool) {
	if cmd.Process == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
