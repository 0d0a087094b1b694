package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ourVerbs are the verbs of the issue; other files of the command may add
// more (demo, bench), and TestHelp covers those too.
var ourVerbs = []string{"ls", "show", "watch", "set", "reset", "release", "delete", "export", "import", "migrate", "backup", "check", "compact", "salvage", "version", "upgrade"}

// TestHelp checks that every verb that ehcheckpoints --help lists, as a new
// user would first try it, has --help with a usage line and an example,
// printed to stdout with status 0.
func TestHelp(t *testing.T) {
	root := mustRun(t, "", "--help")
	if r := mustRun(t, "", "help"); r.stdout != root.stdout {
		t.Errorf("ehcheckpoints help differs from --help:\n%s", r.stdout)
	}
	if r := mustRun(t, "", "help", "set"); r.stdout != mustRun(t, "", "set", "--help").stdout {
		t.Errorf("ehcheckpoints help set differs from set --help:\n%s", r.stdout)
	}
	_, list, ok := strings.Cut(root.stdout, "Available Commands:\n")
	if !ok {
		t.Fatalf("ehcheckpoints --help lists no verbs:\n%s", root.stdout)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var verbs []string
	for _, line := range strings.Split(list, "\n") {
		if verb := strings.Fields(line)[0]; verb != "help" {
			verbs = append(verbs, verb)
		}
	}
	for _, verb := range ourVerbs {
		if !slices.Contains(verbs, verb) {
			t.Errorf("ehcheckpoints --help does not list %s:\n%s", verb, root.stdout)
		}
	}
	for _, verb := range verbs {
		t.Run(verb, func(t *testing.T) {
			r := mustRun(t, "", verb, "--help")
			for _, want := range []string{"Usage:\n  ehcheckpoints " + verb, "Examples:\n  ", "Flags:\n"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("%s --help lacks %q:\n%s", verb, want, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("%s --help wrote to stderr: %s", verb, r.stderr)
			}
		})
	}
}

// TestVersion checks that the version verb and --version print the same
// line: the module version (or "(devel)"), the commit if recorded, Go's,
// and the store format.
func TestVersion(t *testing.T) {
	verb := mustRun(t, "", "version")
	flag := mustRun(t, "", "--version")
	want := regexp.MustCompile(`^ehcheckpoints (\(devel\)|v\S+)(, commit [0-9a-f]+( with local changes)?)?, go\S+, writes store format 3\n$`)
	if !want.MatchString(verb.stdout) || flag.stdout != verb.stdout {
		t.Errorf("version: %q, --version: %q; want one line matching %s", verb.stdout, flag.stdout, want)
	}
}

// TestExitCodes checks that usage mistakes exit with 2 and failures with
// 1, each with a message on stderr and nothing on stdout.
func TestExitCodes(t *testing.T) {
	path := sampleStore(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	notStore := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notStore, bytes.Repeat([]byte("not a store file\n"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		code int
		args []string
		want string // in stderr
	}{
		{"no verb", 2, nil, "no verb given"},
		{"unknown verb", 2, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown help topic", 2, []string{"help", "frobnicate"}, `unknown help topic "frobnicate"`},
		{"unknown flag", 2, []string{"show", path, "--bogus"}, "unknown flag: --bogus"},
		{"bad flag value", 2, []string{"show", path, "--expiry", "soon"}, "invalid argument"},
		{"no file", 2, []string{"show"}, "show takes FILE, got 0 argument(s)"},
		{"two files", 2, []string{"export", path, path}, "export takes FILE, got 2 argument(s)"},
		{"backup without dest", 2, []string{"backup", path}, "backup takes FILE and DEST, got 1 argument(s)"},
		{"negative expiry", 2, []string{"ls", path, "--expiry", "-5s"}, "-5s is not a positive duration"},
		{"set without value", 2, []string{"set", path, "--all"}, "give --sequence, --offset or both"},
		{"release with an empty owner", 2, []string{"release", path, "--owner", ""}, "--owner is empty"},
		{"set negative sequence", 2, []string{"set", path, "--hub", "payments", "-p", "1", "--sequence", "-3", "--dry-run"}, "--sequence -3 is negative"},
		{"set control character in name", 2, []string{"set", path, "-n", "a\x01b", "--hub", "h", "-g", "g", "-p", "1", "--sequence", "1"}, `--namespace "a\x01b" contains control character U+0001`},
		{"set long partition id", 2, []string{"set", path, "--hub", "payments", "-p", strings.Repeat("p", 1025), "--sequence", "1"}, "--partition is 1025 bytes long"},
		{"set control character in offset", 2, []string{"set", path, "--hub", "payments", "-p", "1", "--offset", "1\n"}, `--offset "1\n" contains control character`},
		{"set without partitions", 2, []string{"set", path, "--sequence", "1"}, "give --partition or --all"},
		{"set partition and all", 2, []string{"set", path, "--all", "--partition", "1", "--sequence", "1"}, "--partition and --all exclude each other"},
		{"set empty partition", 2, []string{"set", path, "--partition", "", "--sequence", "1"}, "--partition: the partition id is empty"},
		{"set empty partition in list", 2, []string{"set", path, "--partition", "1,,2", "--sequence", "1"}, "--partition: the partition id is empty"},
		{"reset partition and all", 2, []string{"reset", path, "--all", "--partition", "1"}, "--partition and --all exclude each other"},
		{"release without partitions", 2, []string{"release", path}, "give --partition, --owner or --all"},
		{"release partition and all", 2, []string{"release", path, "--all", "--partition", "1"}, "--partition, --owner and --all exclude each other"},
		{"release owner and all", 2, []string{"release", path, "--owner", "x", "--all"}, "--partition, --owner and --all exclude each other"},
		{"migrate both directions", 2, []string{"migrate", path, "--to-blob", "--from-blob", "--container", "c"}, "--to-blob and --from-blob exclude each other"},
		{"delete without namespace", 2, []string{"delete", path}, "give --namespace"},
		{"delete group without hub", 2, []string{"delete", path, "-n", "x", "-g", "y"}, "--group needs --hub"},
		{"migrate without direction", 2, []string{"migrate", path, "--container", "c"}, "give --to-blob or --from-blob"},
		{"migrate short container name", 2, []string{"migrate", path, "--to-blob", "--container", "c1", "--connection-string", "UseDevelopmentStorage=true"}, `--container "c1" is not a container name`},
		{"migrate container name with capitals", 2, []string{"migrate", path, "--to-blob", "--container", "Checkpoints", "--connection-string", "UseDevelopmentStorage=true"}, `--container "Checkpoints" is not a container name`},
		{"migrate container name with two hyphens", 2, []string{"migrate", path, "--to-blob", "--container", "check--points", "--connection-string", "UseDevelopmentStorage=true"}, `--container "check--points" is not a container name`},
		{"migrate to the root container", 2, []string{"migrate", path, "--to-blob", "--container", "$root", "--connection-string", "UseDevelopmentStorage=true"}, `--container $root cannot hold checkpoints`},
		{"migrate container name ending with a hyphen", 2, []string{"migrate", path, "--to-blob", "--container", "checkpoints-", "--connection-string", "UseDevelopmentStorage=true"}, `--container "checkpoints-" is not a container name`},
		{"migrate without container", 2, []string{"migrate", path, "--to-blob"}, "give --container"},
		{"watch bad interval", 2, []string{"watch", path, "--interval", "0s"}, "--interval must be positive"},
		{"missing file", 1, []string{"show", missing}, "no such store file"},
		{"not a store", 1, []string{"ls", notStore}, "not a boltstore file"},
		{"directory", 1, []string{"ls", dir}, dir + ": is a directory, not a store file"},
		{"import into a directory", 1, []string{"import", dir, os.DevNull}, dir + ": is a directory, not a store file"},
		{"salvage missing file", 1, []string{"salvage", missing, filepath.Join(dir, "salvaged.db")}, missing + ": no such store file"},
		{"salvage directory", 1, []string{"salvage", dir, filepath.Join(dir, "salvaged.db")}, dir + ": is a directory, not a store file"},
		{"export into a directory", 1, []string{"export", path, "-o", dir}, dir + ": is a directory; export -o takes the path of a new file"},
		{"backup over existing", 1, []string{"backup", path, path}, "exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ehc(t, "", nil, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "ehcheckpoints: ") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q, want an ehcheckpoints: message with %q", r.stderr, tt.want)
			}
			if tt.code == 2 && !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("a usage error should point to --help: %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("show created %s", missing)
	}
}

// TestNothingToDo checks that an edit with nothing to change is no
// failure: it exits with 0, says so on stderr and writes nothing to stdout,
// so a cleanup script can run again.
func TestNothingToDo(t *testing.T) {
	path := sampleStore(t)
	mustRun(t, "", "delete", path, "-n", "other.servicebus.windows.net")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", path, "-n", "other.servicebus.windows.net"}, "nothing in " + path + " matches"},
		{[]string{"release", path, "--owner", "nobody"}, `owner "nobody" holds no partition in scope`},
		{[]string{"release", path, "--hub", "payments", "--partition", "5"}, "partition 5 has no owner"},
		{[]string{"reset", path, "--hub", "payments", "--partition", "99"}, "partition 99 has no checkpoint"},
	} {
		r := ehc(t, "", nil, tt.args...)
		if r.code != 0 || r.stdout != "" || !strings.HasPrefix(r.stderr, "ehcheckpoints: ") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("ehcheckpoints %s: exit %d, stdout %q, stderr %q; want exit 0, nothing on stdout and %q on stderr", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.want)
		}
	}
}

// TestListIsLs checks that list, the name a new user may try first, is ls.
func TestListIsLs(t *testing.T) {
	path := sampleStore(t)
	if list, ls := mustRun(t, "", "list", path), mustRun(t, "", "ls", path); list.stdout != ls.stdout {
		t.Errorf("list printed:\n%s\nls printed:\n%s", list.stdout, ls.stdout)
	}
}

// TestNoGroups checks that ls and show, when no consumer group is in
// scope, say so on stderr and keep stdout for what scripts read: nothing,
// or with --json an empty list.
func TestNoGroups(t *testing.T) {
	path := sampleStore(t)
	for _, tt := range []struct {
		args   []string
		stdout string
	}{
		{[]string{"ls", path, "--hub", "missing"}, ""},
		{[]string{"show", path, "--hub", "missing"}, ""},
		{[]string{"ls", path, "--hub", "missing", "--json"}, "[]\n"},
	} {
		r := mustRun(t, "", tt.args...)
		wantStderr := "ehcheckpoints: no consumer groups in scope\n"
		if tt.stdout != "" {
			wantStderr = ""
		}
		if r.stdout != tt.stdout || r.stderr != wantStderr {
			t.Errorf("ehcheckpoints %s: stdout %q, stderr %q; want %q and %q", strings.Join(tt.args, " "), r.stdout, r.stderr, tt.stdout, wantStderr)
		}
	}
}

// TestWatch checks that watch, into a pipe, appends its refreshes without
// escape codes, stops after --count, and exits with 0 when interrupted or
// terminated.
func TestWatch(t *testing.T) {
	path := sampleStore(t)
	r := mustRun(t, "", "watch", path, "--count", "3", "--interval", "10ms", "--hub", "payments")
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("escape codes into a pipe:\n%q", r.stdout)
	}
	if n := strings.Count(r.stdout, "Every 10ms: "+path); n != 3 {
		t.Errorf("%d refresh headings, want 3:\n%s", n, r.stdout)
	}
	if n := strings.Count(r.stdout, "myns.servicebus.windows.net / payments / billing\n"); n != 3 {
		t.Errorf("%d tables, want 3:\n%s", n, r.stdout)
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(binary, "watch", path, "--interval", "10ms")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := out.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, _ = out.Read(make([]byte, 1<<20))
			done <- cmd.Wait()
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watch after %v: %v, want exit status 0", sig, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("watch did not stop on %v", sig)
		}
	}
}

// TestInterruptWhileWaitingForTheFile: Ctrl-C, or SIGTERM, ends a verb
// that waits for a file another process keeps locked, rather than the lock
// timeout, says so and exits with the shells' status for the signal.
func TestInterruptWhileWaitingForTheFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("holdsOpen reads /proc")
	}
	path, err := filepath.EvalSymlinks(sampleStore(t))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		verb string
		sig  syscall.Signal
		want int
	}{
		{"ls", syscall.SIGINT, exitInterrupted},
		{"ls", syscall.SIGTERM, 143},
		{"watch", syscall.SIGTERM, exitOK}, // watch's way to stop
	} {
		sig, want := c.sig, c.want
		cmd := exec.Command(binary, c.verb, path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Once it has the file open it waits for the lock, and its
		// handler for the signal is in place.
		for deadline := time.Now().Add(30 * time.Second); !holdsOpen(cmd.Process.Pid, path); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%s never opened the file: %s", c.verb, stderr.String())
			}
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		interrupted := strings.HasSuffix(stderr.String(), "ehcheckpoints: "+path+": interrupted while waiting for the file\n")
		if code := cmd.ProcessState.ExitCode(); code != want || interrupted != (want != exitOK) {
			t.Errorf("%s stopped by %v while the file is locked: %v, exit %d, stderr %q; want exit %d, and the interruption reported unless 0", c.verb, sig, err, code, stderr.String(), want)
		}
	}
}

// TestWaitingForTheFile: a verb that waits for a file another process
// keeps locked says so on stderr, goes on once the file is free, and gives
// up after --lock-timeout.
func TestWaitingForTheFile(t *testing.T) {
	path := sampleStore(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if r := ehc(t, "", nil, "ls", path, "--lock-timeout", "100ms"); r.code != exitError || !strings.Contains(r.stderr, "timed out waiting for the file lock") || !strings.Contains(r.stderr, "(--lock-timeout 100ms)") {
		t.Errorf("ls of a locked file with --lock-timeout 100ms: exit %d, stderr %q; want %d and the timeout", r.code, r.stderr, exitError)
	}

	cmd := exec.Command(binary, "ls", path)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	notice := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stderr).ReadString('\n')
		notice <- line
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case line := <-notice:
		if want := "ehcheckpoints: waiting for " + path + ", which another process may hold; giving up after 10s (--lock-timeout)\n"; line != want {
			t.Errorf("ls of a locked file said %q, want %q", line, want)
		}
	case <-time.After(30 * time.Second):
		t.Error("ls of a locked file said nothing")
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(stdout.String(), "NAMESPACE") {
		t.Errorf("ls once the file is free: %v, stdout %q; want the table", err, stdout.String())
	}
}

// holdsOpen reports whether process pid has the file at path open (Linux).
func holdsOpen(pid int, path string) bool {
	fds := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, _ := os.ReadDir(fds)
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}
