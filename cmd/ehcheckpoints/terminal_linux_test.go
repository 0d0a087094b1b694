package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openTerminal opens a pseudo-terminal and returns its two ends: what a
// program writes to the terminal end, the test reads from the other.
func openTerminal(t *testing.T) (reader, terminal *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	var unlock, number uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatalf("unlocking the pseudo-terminal: %v", errno)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&number))); errno != 0 {
		t.Fatalf("numbering the pseudo-terminal: %v", errno)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(number)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the pseudo-terminal's terminal end: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptmx, pts
}

// TestWatchRedrawsOnATerminal: on a terminal, watch clears the screen
// before each refresh, so that it replaces the last one in place (into a
// pipe it appends instead: TestWatch).
func TestWatchRedrawsOnATerminal(t *testing.T) {
	path := sampleStore(t)
	reader, terminal := openTerminal(t)
	cmd := exec.Command(binary, "watch", path, "--count", "2", "--interval", "10ms")
	cmd.Stdout = terminal
	cmd.Env = append(os.Environ(), "TERM=xterm")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	terminal.Close() // the child holds its own
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		// Reading the reader end fails with EIO once the child exits.
		_, _ = io.Copy(&out, reader)
		close(read)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch on a terminal: %v", err)
	}
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("reading the terminal did not end")
	}
	if n := strings.Count(out.String(), clearScreen); n != 2 {
		t.Errorf("%d screen clears on a terminal, want 2:\n%q", n, out.String())
	}
}
