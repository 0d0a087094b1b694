package boltstore

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// The reliability tests need other processes: a writer to SIGKILL, a
// holder of the file lock, workers that damage-test in isolation, load
// generators. Each is this test binary re-executed with relChildEnv naming
// a helper mode, so no second binary has to be built. TestRelChild is the
// entry point; it does nothing in a normal run.
const (
	relChildEnv     = "BOLTSTORE_REL_CHILD"
	relChildArgsEnv = "BOLTSTORE_REL_CHILD_ARGS"
	// relLinePrefix starts every protocol line a child prints, so the
	// parent can ignore what the testing package itself prints.
	relLinePrefix = "rel "
)

// relChildModes maps a helper mode to its function. The function gets the
// child's *testing.T: a failure in it fails the child, and the parent sees
// a non-zero exit status and the child's output.
var relChildModes = map[string]func(t *testing.T, args []string){
	"busy-store":    relBusyStore,
	"crash-writer":  relCrashWriter,
	"damage-worker": relDamageWorker,
	"flock-holder":  relFlockHolder,
	"load-worker":   relLoadWorker,
}

func TestRelChild(t *testing.T) {
	mode := os.Getenv(relChildEnv)
	if mode == "" {
		t.Skip("helper process of the reliability tests; runs only when one of them re-executes the test binary")
	}
	run, ok := relChildModes[mode]
	if !ok {
		t.Fatalf("unknown helper mode %q", mode)
	}
	var args []string
	if a := os.Getenv(relChildArgsEnv); a != "" {
		args = strings.Split(a, "\x1f")
	}
	run(t, args)
}

// relChildCmd returns a command that re-executes the test binary in the
// given helper mode. Its environment carries the mode, so a grandchild
// started without relChildCmd would not inherit a stale one.
func relChildCmd(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelChild$", "-test.count=1")
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, relChildEnv+"=") && !strings.HasPrefix(kv, relChildArgsEnv+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, relChildEnv+"="+mode, relChildArgsEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

// relPrintf writes one protocol line to stdout in a single write(2), so
// lines of concurrent goroutines never interleave (pipe writes below
// PIPE_BUF are atomic) and a line a child printed survives its SIGKILL.
func relPrintf(line string) {
	_, _ = os.Stdout.WriteString(relLinePrefix + line + "\n")
}

// relLines collects a child's protocol lines as they arrive.
type relLines struct {
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
	eof   bool
	other bytes.Buffer // lines without the prefix, for diagnostics
}

// relReadLines reads r until EOF in a goroutine.
func relReadLines(r io.Reader) *relLines {
	l := &relLines{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.mu.Lock()
			if s, ok := strings.CutPrefix(sc.Text(), relLinePrefix); ok {
				l.lines = append(l.lines, s)
			} else {
				l.other.WriteString(sc.Text() + "\n")
			}
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.eof = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// waitFor blocks until a line satisfying match arrives, and reports
// whether one did before EOF.
func (l *relLines) waitFor(match func(string) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := 0
	for {
		for ; seen < len(l.lines); seen++ {
			if match(l.lines[seen]) {
				return true
			}
		}
		if l.eof {
			return false
		}
		l.cond.Wait()
	}
}

// all waits for EOF and returns every protocol line.
func (l *relLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.eof {
		l.cond.Wait()
	}
	return l.lines
}

// relHead returns at most the first n bytes of b: where a crashed Go
// process names the fatal error and the goroutine that hit it.
func relHead(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// relTail returns at most the last n bytes of b, for failure messages.
func relTail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
