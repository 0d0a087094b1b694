package fsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestNewFile checks that NewFile links a complete file into place, leaves
// nothing behind when fill fails, and never replaces an existing file.
func TestNewFile(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	write := func(content string) func(string) error {
		return func(tmp string) error { return os.WriteFile(tmp, []byte(content), 0o600) }
	}

	failed := errors.New("fill failed")
	if err := NewFile(dest, func(string) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("NewFile with a failing fill: %v, want its error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a failed NewFile left %v behind", entries)
	}

	if err := NewFile(dest, write("first")); err != nil {
		t.Fatal(err)
	}
	if err := NewFile(dest, write("second")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("NewFile over an existing file: %v, want fs.ErrExist", err)
	}
	if got, err := os.ReadFile(dest); err != nil || string(got) != "first" {
		t.Fatalf("dest holds %q, %v; want the first file, unchanged", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the directory holds %v, want only the new file", entries)
	}
}
