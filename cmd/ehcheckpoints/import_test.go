package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportRoundTrip checks that export, import and export again give the
// same bytes for the sample, which has every kind of field: nanosecond
// times, a released ownership, an empty offset, a sequence number of 0.
func TestImportRoundTrip(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	first := mustRun(t, "", "export", sampleStore(t)).stdout
	if first != string(want) {
		t.Fatalf("export of the imported sample differs from it:\n%s", first)
	}
	dir := t.TempDir()
	exported := filepath.Join(dir, "export.jsonl")
	mustRun(t, "", "export", sampleStore(t), "-o", exported)
	copyPath := filepath.Join(dir, "copy.db")
	if r := mustRun(t, "", "import", copyPath, exported, "--dry-run"); !strings.Contains(r.stdout, "would import") {
		t.Errorf("import --dry-run: %s", r.stdout)
	}
	if _, err := os.Stat(copyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("import --dry-run created the file: %v", err)
	}
	mustRun(t, "", "import", copyPath, exported)
	if second := mustRun(t, "", "export", copyPath).stdout; second != first {
		t.Errorf("export, import, export changed the rows:\n%s", second)
	}
	// Importing again replaces the same records: nothing is added.
	mustRun(t, first, "import", copyPath, "-")
	if third := mustRun(t, "", "export", copyPath).stdout; third != first {
		t.Errorf("a second import changed the rows:\n%s", third)
	}
}

// TestImportMalformed checks that malformed input is rejected with its
// line number and that nothing is written, neither into an existing file
// nor by creating a new one.
func TestImportMalformed(t *testing.T) {
	const good = `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"0","sequenceNumber":1}`
	tests := []struct {
		name, line, want string
	}{
		{"not JSON", `{"type":`, "unexpected EOF"},
		{"unknown field", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","sequenceNumber":1,"color":"red"}`, `unknown field "color"`},
		{"unknown type", `{"type":"lease","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1"}`, `type "lease" is unknown; it is "ownership" or "checkpoint"`},
		{"only an unknown type", `{"type":"bogus"}`, `type "bogus" is unknown`},
		{"no type", `{"namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","sequenceNumber":1}`, "type is missing"},
		{"no partition", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","sequenceNumber":1}`, "partitionId is missing"},
		{"empty group", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"","partitionId":"1","sequenceNumber":1}`, "consumerGroup is missing or empty"},
		{"no position", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1"}`, "needs an offset, a sequenceNumber or both"},
		{"fractional sequence", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","sequenceNumber":1.5}`, "sequenceNumber"},
		{"string sequence", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","sequenceNumber":"1"}`, "sequenceNumber"},
		{"bad time", `{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","offset":"5","writtenAt":"yesterday"}`, `writtenAt: "yesterday" is not an RFC 3339 time`},
		{"ownership with offset", `{"type":"ownership","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","ownerId":"a","etag":"e","lastModifiedTime":"2025-01-01T00:00:00Z","offset":"1"}`, "an ownership has no offset"},
		{"ownership without etag", `{"type":"ownership","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","ownerId":"a","lastModifiedTime":"2025-01-01T00:00:00Z"}`, "needs ownerId"},
		{"control character in owner", `{"type":"ownership","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"1","ownerId":"a\u0007","etag":"e","lastModifiedTime":"2025-01-01T00:00:00Z"}`, "OwnerID"},
		{"partition id too long", strings.Replace(good, `"partitionId":"0"`, `"partitionId":"`+strings.Repeat("p", 1025)+`"`, 1), "PartitionID is 1025 bytes long"},
		{"two values", good + good, "more than one JSON value"},
		{"repeated field", strings.Replace(good, `"sequenceNumber":1`, `"sequenceNumber":1,"SequenceNumber":2`, 1), `field "SequenceNumber" appears twice`},
		{"duplicate", strings.Replace(good, `"sequenceNumber":1`, `"sequenceNumber":2`, 1), "same partition as line 1"},
		{"duplicate in other case", strings.Replace(good, `"namespace":"ns"`, `"namespace":"NS"`, 1), "same partition as line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			input := filepath.Join(dir, "input.jsonl")
			// The bad line is line 3, after a good line and a blank one.
			if err := os.WriteFile(input, []byte(good+"\n\n"+tt.line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			existing := sampleStore(t)
			before := mustRun(t, "", "export", existing).stdout
			for _, path := range []string{existing, filepath.Join(dir, "new.db")} {
				r := ehc(t, "", nil, "import", path, input)
				if r.code != 1 || !strings.Contains(r.stderr, input+":3: ") || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "nothing written") {
					t.Errorf("import: exit %d, stderr:\n%s\nwant exit 1 and %q at %s:3", r.code, r.stderr, tt.want, input)
				}
			}
			if after := mustRun(t, "", "export", existing).stdout; after != before {
				t.Errorf("a rejected import changed the file:\n%s", after)
			}
			if _, err := os.Stat(filepath.Join(dir, "new.db")); err == nil {
				t.Errorf("a rejected import created the file")
			}
		})
	}
}

// TestImportRefusesLiveOwners checks that import refuses to overwrite
// partitions whose owner is live, and counts and lists each such partition
// once, though the input holds both its ownership and its checkpoint.
func TestImportRefusesLiveOwners(t *testing.T) {
	var input strings.Builder
	for _, p := range []string{"0", "1"} {
		input.WriteString(`{"type":"ownership","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"` + p + `","ownerId":"host-a","etag":"e` + p + `","lastModifiedTime":"` + sampleNow + `"}` + "\n")
		input.WriteString(`{"type":"checkpoint","namespace":"ns","eventHub":"h","consumerGroup":"g","partitionId":"` + p + `","sequenceNumber":1}` + "\n")
	}
	path := filepath.Join(t.TempDir(), "live.db")
	clock := []string{envNow + "=" + sampleNow}
	if r := ehc(t, input.String(), clock, "import", path); r.code != 0 {
		t.Fatalf("first import: exit %d, %s", r.code, r.stderr)
	}
	r := ehc(t, input.String(), clock, "import", path)
	if r.code != 1 || !strings.Contains(r.stderr, "refusing: 2 partition(s)") {
		t.Errorf("import over live owners: exit %d, stderr:\n%s\nwant exit 1 and 2 partitions refused", r.code, r.stderr)
	}
	for _, p := range []string{"0", "1"} {
		if n := strings.Count(r.stderr, "ns/h/g partition "+p+":"); n != 1 {
			t.Errorf("partition %s listed %d times, want once:\n%s", p, n, r.stderr)
		}
	}
}

// TestImportNoRecords checks that import of empty input still does what
// it says to FILE: it creates a missing one (unless --dry-run) and refuses
// one that is not a store file.
func TestImportNoRecords(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.jsonl")
	notStore := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notStore, []byte(strings.Repeat("not a store file\n", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	dryRun := filepath.Join(dir, "dry-run.db")
	if r := mustRun(t, "", "import", dryRun, empty, "--dry-run"); !strings.Contains(r.stderr, "no records in "+empty) || r.stdout != "" {
		t.Errorf("import --dry-run of no records: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if _, err := os.Stat(dryRun); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("import --dry-run of no records created the file: %v", err)
	}
	created := filepath.Join(dir, "new.db")
	if r := mustRun(t, "", "import", created, empty); !strings.Contains(r.stderr, "no records in "+empty) || r.stdout != "" {
		t.Errorf("import of no records: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	mustRun(t, "", "check", created)
	if r := ehc(t, "", nil, "import", notStore, empty); r.code != 1 || !strings.Contains(r.stderr, "not a boltstore file") {
		t.Errorf("import of no records into a file that is not a store: exit %d, stderr %q; want 1 and the file refused", r.code, r.stderr)
	}
}
