//go:build unix

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadVerbsOnAFileWithoutWriteAccess: an operator who may read a store
// file but not write it (a processor's file owned by its service user)
// can still inspect it: the reading verbs, and the editing verbs with
// --dry-run, open it read-only. Editing verbs fail for want of access, and
// nothing changes the file. As root, which
// may write anything, the binary runs as nobody; otherwise the file and
// its directory lose their write permission.
func TestReadVerbsOnAFileWithoutWriteAccess(t *testing.T) {
	path := sampleStore(t)
	dir := filepath.Dir(path)
	// The binary and the file must be reachable for the other user.
	exe := filepath.Join(dir, "ehcheckpoints")
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != os.TempDir() && d != filepath.Dir(d); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(dir, "input.jsonl")
	sample, err := os.ReadFile(filepath.Join("testdata", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(input, sample, 0o644); err != nil {
		t.Fatal(err)
	}
	var credential *syscall.Credential
	if os.Geteuid() == 0 {
		credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	} else {
		if err := os.Chmod(path, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (stdout, stderr string, err error) {
		cmd := exec.Command(exe, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credential}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err = cmd.Run()
		return out.String(), errOut.String(), err
	}
	if _, stderr, err := run("set", path, "--hub", "payments", "--group", "billing", "--partition", "1", "--sequence", "9"); err == nil || !strings.Contains(stderr, "permission denied") {
		t.Fatalf("set on a file without write access: %v, %s; want a failure for permission", err, stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"show", path, "--hub", "payments"}, "myns.servicebus.windows.net / payments / billing"},
		{[]string{"check", path}, "ok: " + path},
		{[]string{"export", path}, `"partitionId":"10"`},
		{[]string{"set", path, "--hub", "payments", "--partition", "1", "--sequence", "9", "--dry-run"}, "would set"},
		{[]string{"import", path, input, "--dry-run", "--force"}, "would import"},
		{[]string{"upgrade", path}, path + " is already in format 3"},
	} {
		stdout, stderr, err := run(c.args...)
		if err != nil || !strings.Contains(stdout, c.want) {
			t.Errorf("ehcheckpoints %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(c.args, " "), err, stdout, stderr)
		}
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the file changed")
	}
}
