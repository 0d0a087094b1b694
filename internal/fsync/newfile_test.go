package fsync

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// skipUnlessUnnamed skips a test of files made without a name where the
// system or the file system under dir cannot make them (not Linux; NFS,
// FUSE; no /proc), and fails it for any other reason createUnnamed fails.
func skipUnlessUnnamed(t *testing.T, dir string) {
	t.Helper()
	p, err := createUnnamed(dir, filepath.Join(dir, "probe"))
	switch {
	case errors.Is(err, errNoUnnamedFiles) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EISDIR) || errors.Is(err, fs.ErrNotExist):
		t.Skipf("no files without a name here: %v", err)
	case err != nil:
		t.Fatalf("making a file without a name: %v", err)
	}
	p.discard()
}

// creator is what newFile makes files without a name with: nothing, for
// files under a temporary name.
func creator(unnamed bool) func(dir, dest string) (pendingFile, error) {
	if unnamed {
		return createUnnamed
	}
	return nil
}

// TestNewFileWhenTheLinkIsRefused: where the system makes a file without
// a name but refuses to link it, NewFile copies it to a file made under a
// temporary name, and leaves nothing else behind.
func TestNewFileWhenTheLinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	skipUnlessUnnamed(t, dir)
	refused := func(dir, dest string) (pendingFile, error) {
		p, err := createUnnamed(dir, dest)
		p.link = func(string) error {
			return &os.LinkError{Op: "link", Old: "/proc/self/fd/N", New: dest, Err: syscall.EPERM}
		}
		return p, err
	}
	dest := filepath.Join(dir, "out")
	content := strings.Repeat("a whole file ", 1000)
	if err := newFile(dest, func(f *os.File) error {
		_, err := io.WriteString(f, content)
		return err
	}, refused); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || string(got) != content {
		t.Fatalf("dest holds %d bytes (%v), want the %d that fill wrote", len(got), err, len(content))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the directory holds %v, want only the new file", entries)
	}
}

// TestNewFile checks that NewFile links a complete file into place, leaves
// nothing behind when fill fails, and never replaces an existing file:
// with a file made without a name, which has no name while fill runs, and
// with one made under a temporary name.
func TestNewFile(t *testing.T) {
	for _, unnamed := range []bool{true, false} {
		t.Run(map[bool]string{true: "unnamed", false: "named"}[unnamed], func(t *testing.T) {
			dir := t.TempDir()
			if unnamed {
				skipUnlessUnnamed(t, dir)
			}
			dest := filepath.Join(dir, "out")
			write := func(content string) func(*os.File) error {
				return func(f *os.File) error {
					entries, _ := os.ReadDir(dir)
					if unnamed && len(entries) != 0 {
						t.Errorf("while fill runs the directory holds %v, want nothing", entries)
					}
					_, err := io.WriteString(f, content)
					return err
				}
			}

			failed := errors.New("fill failed")
			if err := newFile(dest, func(*os.File) error { return failed }, creator(unnamed)); !errors.Is(err, failed) {
				t.Fatalf("NewFile with a failing fill: %v, want its error", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("a failed NewFile left %v behind", entries)
			}

			if err := newFile(dest, write("first"), creator(unnamed)); err != nil {
				t.Fatal(err)
			}
			if err := newFile(dest, write("second"), creator(unnamed)); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("NewFile over an existing file: %v, want fs.ErrExist", err)
			}
			if got, err := os.ReadFile(dest); err != nil || string(got) != "first" {
				t.Fatalf("dest holds %q, %v; want the first file, unchanged", got, err)
			}
			if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Fatalf("dest: %v, %v; want a file only its owner can read", fi.Mode(), err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Fatalf("the directory holds %v, want only the new file", entries)
			}
			if err := newFile(dir, write("over a directory"), creator(unnamed)); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "is a directory") {
				t.Fatalf("NewFile over a directory: %v, want fs.ErrExist saying it is a directory", err)
			}
			missing := filepath.Join(dir, "missing", "out")
			if err := newFile(missing, write("nowhere"), creator(unnamed)); !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), missing+": ") {
				t.Fatalf("NewFile in a missing directory: %v, want fs.ErrNotExist naming %s", err, missing)
			}
		})
	}
}

// TestNewFileAppearingMeanwhile checks that a file that appears at dest
// while fill runs stays, and that NewFile then fails with fs.ErrExist.
func TestNewFileAppearingMeanwhile(t *testing.T) {
	for _, unnamed := range []bool{false, true} {
		dest := filepath.Join(t.TempDir(), "out")
		if unnamed {
			skipUnlessUnnamed(t, filepath.Dir(dest))
		}
		err := newFile(dest, func(f *os.File) error {
			if err := os.WriteFile(dest, []byte("theirs"), 0o600); err != nil {
				return err
			}
			_, err := io.WriteString(f, "ours")
			return err
		}, creator(unnamed))
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("unnamed %v: NewFile when dest appeared meanwhile: %v, want fs.ErrExist", unnamed, err)
		}
		if got, _ := os.ReadFile(dest); string(got) != "theirs" {
			t.Errorf("unnamed %v: dest holds %q, want the file that appeared meanwhile", unnamed, got)
		}
	}
}

// envKilledFill makes the test binary a process that dies during fill.
const envKilledFill = "FSYNC_TEST_KILLED_FILL_DEST"

// TestNewFileKilledDuringFill kills a process in the middle of NewFile's
// fill: on Linux, nothing of the file may be left in the directory.
func TestNewFileKilledDuringFill(t *testing.T) {
	if dest := os.Getenv(envKilledFill); dest != "" {
		_ = NewFile(dest, func(f *os.File) error {
			if _, err := io.WriteString(f, "half a file"); err != nil {
				return err
			}
			os.Stdout.WriteString("filling\n")
			select {} // until killed
		})
		os.Exit(1)
	}
	if runtime.GOOS != "linux" {
		t.Skip("only Linux makes files without a name; elsewhere a killed NewFile leaves its temporary file")
	}
	dir := t.TempDir()
	skipUnlessUnnamed(t, dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestNewFileKilledDuringFill$")
	cmd.Env = append(os.Environ(), envKilledFill+"="+filepath.Join(dir, "out"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "filling\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child said %q, %v; want it to report that it is filling", line, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("during fill the directory holds %v, want nothing: the file has no name yet", entries)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a process killed during fill left %v behind", entries)
	}
}
