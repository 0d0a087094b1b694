package main

import (
	"bytes"
	encbin "encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckDamaged damages copies of a store made by backup and checks that
// check reports the damage with a non-zero exit, and that the other verbs
// refuse the file instead of returning wrong data.
func TestCheckDamaged(t *testing.T) {
	const marker = "offset-that-the-test-damages"
	path := filepath.Join(t.TempDir(), "store.db")
	mustRun(t, `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"0","offset":"`+marker+`","sequenceNumber":1}`, "import", path)
	if r := mustRun(t, "", "check", path); !strings.HasPrefix(r.stdout, "ok: ") {
		t.Fatalf("check of a healthy file: %s", r.stdout)
	}

	damage := map[string]func([]byte) []byte{
		"flipped record byte": func(b []byte) []byte {
			i := bytes.Index(b, []byte(marker))
			if i < 0 {
				t.Fatal("the record is not in the file")
			}
			b[i] ^= 0x20
			return b
		},
		"truncated": func(b []byte) []byte { return b[:len(b)/3] },
		"zeroed pages": func(b []byte) []byte {
			// bbolt's pages are the size of the OS's; 0 and 1 are its meta
			// pages, which it checks at open.
			page := os.Getpagesize()
			clear(b[2*page : 4*page])
			return b
		},
	}
	for name, damageFile := range damage {
		t.Run(name, func(t *testing.T) {
			damaged := filepath.Join(t.TempDir(), "damaged.db")
			mustRun(t, "", "backup", path, damaged)
			b, err := os.ReadFile(damaged)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(damaged, damageFile(b), 0o600); err != nil {
				t.Fatal(err)
			}
			r := ehc(t, "", nil, "check", damaged)
			if r.code != 1 || !strings.HasPrefix(r.stdout, "damaged: "+damaged) || !strings.Contains(r.stderr, "is damaged; restore it from a backup") {
				t.Errorf("check: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, "run `ehcheckpoints check") {
				t.Errorf("check advises running check:\n%s", r.stdout)
			}
			t.Logf("check reports:\n%s", r.stdout)
			if r := ehc(t, "", nil, "export", damaged); r.code != 1 || strings.Contains(r.stdout, "offset") {
				t.Errorf("export of a damaged file: exit %d, stdout %q", r.code, r.stdout)
			}
		})
	}
}

// TestBackupAndCompact checks that both copies hold the same records as
// the original and are themselves healthy store files.
func TestBackupAndCompact(t *testing.T) {
	path := sampleStore(t)
	dir := t.TempDir()
	want := mustRun(t, "", "export", path).stdout
	for _, verb := range []string{"backup", "compact"} {
		dest := filepath.Join(dir, verb+".db")
		r := mustRun(t, "", verb, path, dest)
		if !strings.Contains(r.stdout, dest) {
			t.Errorf("%s does not say where it wrote: %s", verb, r.stdout)
		}
		mustRun(t, "", "check", dest)
		if got := mustRun(t, "", "export", dest).stdout; got != want {
			t.Errorf("%s copy exports differently:\n%s", verb, got)
		}
		if r := ehc(t, "", nil, verb, path, dest); r.code != 1 {
			t.Errorf("%s over an existing file: exit %d, want 1", verb, r.code)
		}
	}
}

// TestCheckReportsUndoneCommit: a file whose newest commit did not reach
// the disk whole, as when its writer is killed, opens at the commit before;
// check, opening it first, says so.
func TestCheckReportsUndoneCommit(t *testing.T) {
	path := sampleStore(t)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "set", path, "--hub", "payments", "-p", "1", "--sequence", "8", "--force")
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Only the newest meta page of the set reaches the disk: its pages,
	// and the note its writer makes at exit, do not.
	pageSize := int(encbin.NativeEndian.Uint32(after[24:]))
	txid := func(page int) uint64 { return encbin.NativeEndian.Uint64(after[page*pageSize+64:]) }
	newest := 0
	if txid(1) > txid(0) {
		newest = 1
	}
	cut := append([]byte(nil), before...)
	copy(cut[newest*pageSize:(newest+1)*pageSize], after[newest*pageSize:])
	if err := os.WriteFile(path, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	// A copy that is also damaged elsewhere: the open that undoes the
	// commit fails, and says what it undid.
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	owner := bytes.Index(cut, []byte("host-c"))
	if owner < 0 {
		t.Fatal("no ownership of host-c in the sample")
	}
	cut[owner] ^= 0xff
	if err := os.WriteFile(damaged, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := ehc(t, "", nil, "check", damaged); r.code != 1 || !strings.Contains(r.stdout, fmt.Sprintf("having undone commit %d", txid(newest))) {
		t.Errorf("check of a cut file damaged elsewhere: exit %d\n%s", r.code, r.stdout)
	}
	r := mustRun(t, "", "check", path)
	want := fmt.Sprintf("note: opening the file undid commit %d, which had not reached the disk whole", txid(newest))
	if !strings.HasPrefix(r.stdout, "ok: ") || !strings.Contains(r.stdout, want) {
		t.Errorf("check of a file cut during a commit:\n%s\nwant ok and %q", r.stdout, want)
	}
	if r := mustRun(t, "", "check", path); strings.Contains(r.stdout, "note:") {
		t.Errorf("a second check reports the commit again:\n%s", r.stdout)
	}
	const earlier = `"partitionId":"1","offset":"777","sequenceNumber":7,`
	if got := mustRun(t, "", "export", path, "--hub", "payments").stdout; !strings.Contains(got, earlier) {
		t.Errorf("after the undone set, partition 1 should hold its earlier checkpoint %s:\n%s", earlier, got)
	}
}

// TestExportOutputIsNew checks that export -o writes a new file and refuses
// to replace an existing one, above all the store itself.
func TestExportOutputIsNew(t *testing.T) {
	path := sampleStore(t)
	want := mustRun(t, "", "export", path).stdout
	out := filepath.Join(t.TempDir(), "out.jsonl")
	mustRun(t, "", "export", path, "-o", out)
	if got, err := os.ReadFile(out); err != nil || string(got) != want {
		t.Fatalf("export -o wrote %q, %v; want the records", got, err)
	}
	for _, dest := range []string{out, path} {
		r := ehc(t, "", nil, "export", path, "-o", dest)
		if r.code != 1 || !strings.Contains(r.stderr, dest+": file already exists") {
			t.Errorf("export -o %s over an existing file: exit %d, stderr %q; want 1 and an error naming it", dest, r.code, r.stderr)
		}
	}
	if got := mustRun(t, "", "export", path).stdout; got != want {
		t.Errorf("the store changed after export -o refused to replace it:\n%s", got)
	}
}

// TestSalvage copies the intact records out of a damaged file, leaving the
// damaged one behind, and copies a healthy file whole.
func TestSalvage(t *testing.T) {
	const marker = "offset-that-the-test-damages"
	path := filepath.Join(t.TempDir(), "store.db")
	mustRun(t, `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"0","offset":"`+marker+`","sequenceNumber":1}
{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","offset":"intact","sequenceNumber":2}
{"type":"ownership","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","ownerId":"me","etag":"e1","lastModifiedTime":"2025-06-01T12:00:00Z"}`, "import", path)

	healthy := filepath.Join(t.TempDir(), "healthy.db")
	if r := mustRun(t, "", "salvage", path, healthy); !strings.Contains(r.stdout, "salvaged 1 ownership(s) and 2 checkpoint(s)") {
		t.Errorf("salvage of a healthy file: %s", r.stdout)
	}
	if got, want := mustRun(t, "", "export", healthy).stdout, mustRun(t, "", "export", path).stdout; got != want {
		t.Errorf("salvage of a healthy file lost something:\ngot\n%s\nwant\n%s", got, want)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		t.Fatal("the record is not in the file")
	}
	b[i] ^= 0x20
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "salvaged.db")
	r := ehc(t, "", nil, "salvage", damaged, dest)
	if r.code != 1 || !strings.Contains(r.stdout, "salvaged 1 ownership(s) and 1 checkpoint(s)") ||
		!strings.Contains(r.stdout, `partition "0": record checksum mismatch`) || !strings.Contains(r.stderr, "is damaged") {
		t.Fatalf("salvage of a damaged file: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	out := mustRun(t, "", "export", dest).stdout
	if strings.Contains(out, marker[1:]) || !strings.Contains(out, `"offset":"intact"`) || !strings.Contains(out, `"ownerId":"me"`) {
		t.Errorf("the salvaged file holds:\n%s", out)
	}
	mustRun(t, "", "check", dest)
	if r := ehc(t, "", nil, "salvage", damaged, dest); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("salvage onto an existing file: exit %d, stderr %q", r.code, r.stderr)
	}
}
