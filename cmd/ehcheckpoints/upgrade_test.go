package main

import (
	"bytes"
	encbin "encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOlderFormat runs the verbs on a file an older boltstore wrote
// (testdata/format2.db, format 2): reading verbs and dry runs refuse it
// and leave it as it is, so that processors still running the older
// boltstore keep working, but backup copies it as it is; upgrade converts
// it and says so, and so does an editing verb.
func TestOlderFormat(t *testing.T) {
	legacy, err := os.ReadFile(filepath.Join("testdata", "format2.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyOf := func(name string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, legacy, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	path := copyOf("old.db")
	set := []string{"set", path, "-n", "ns.servicebus.windows.net", "--hub", "hub", "-g", "other", "-p", "0", "--sequence", "7", "--force"}
	for _, args := range [][]string{
		{"show", path},
		{"check", path},
		{"export", path},
		append(set, "--dry-run"),
	} {
		r := ehc(t, "", nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "older boltstore (format 2)") || !strings.Contains(r.stderr, "ehcheckpoints upgrade "+path) {
			t.Errorf("%s on a format 2 file: exit %d, stderr:\n%s\nwant exit 1, the format, and the advice to upgrade", args[0], r.code, r.stderr)
		}
		if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, legacy) {
			t.Fatalf("%s changed the format 2 file (%v)", strings.Join(args, " "), err)
		}
	}
	// backup copies it as it is, for a way back after upgrading.
	backup := filepath.Join(dir, "backup.db")
	if r := mustRun(t, "", "backup", path, backup); !strings.Contains(r.stdout, "as it is, in an older boltstore's layout") {
		t.Errorf("backup of a format 2 file: %q", r.stdout)
	}
	if copied, err := os.ReadFile(backup); err != nil || !bytes.Equal(copied, legacy) {
		t.Errorf("the backup of a format 2 file differs from it (%v)", err)
	}
	if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, legacy) {
		t.Fatalf("backup changed the format 2 file (%v)", err)
	}

	converted := "converted " + path + " from the layout of an older boltstore (format 2) to format 3"
	r := mustRun(t, "", "upgrade", path)
	if r.stdout != path+" is now in format 3\n" || !strings.Contains(r.stderr, converted) {
		t.Errorf("upgrade: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if r := mustRun(t, "", "upgrade", path); r.stdout != path+" is already in format 3\n" || r.stderr != "" {
		t.Errorf("upgrade again: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if r := mustRun(t, "", "show", path, "-g", "other"); !strings.Contains(r.stdout, "owner-10") {
		t.Errorf("show after upgrade:\n%s", r.stdout)
	}

	// The conversion's commit cut short, as if upgrade had been killed:
	// only its meta page reached the disk. Reading undoes that commit, as
	// any process would, and still does not convert the file.
	converted2, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(encbin.NativeEndian.Uint32(converted2[24:]))
	txid := func(page int) uint64 { return encbin.NativeEndian.Uint64(converted2[page*pageSize+64:]) }
	newest := 0
	if txid(1) > txid(0) {
		newest = 1
	}
	cut := copyOf("cut.db")
	torn := append([]byte(nil), legacy...)
	copy(torn[newest*pageSize:(newest+1)*pageSize], converted2[newest*pageSize:])
	if err := os.WriteFile(cut, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := ehc(t, "", nil, "show", cut); r.code != 1 || !strings.Contains(r.stderr, "older boltstore (format 2)") || strings.Contains(r.stderr, "ehcheckpoints: converted") {
			t.Fatalf("show on a format 2 file with a cut conversion: exit %d, stderr:\n%s\nwant it refused as format 2, not converted", r.code, r.stderr)
		}
	}
	if r := mustRun(t, "", "upgrade", cut); r.stdout != cut+" is now in format 3\n" {
		t.Errorf("upgrade after the cut conversion: %q", r.stdout)
	}

	edited := copyOf("edited.db")
	set[1] = edited
	if r := mustRun(t, "", set...); !strings.Contains(r.stderr, "converted "+edited) || !strings.Contains(r.stdout, "sequence 7") {
		t.Errorf("set on a format 2 file: stdout %q, stderr %q; want the change and a note of the conversion", r.stdout, r.stderr)
	}
}
