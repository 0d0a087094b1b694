package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// TestGolden runs the reading verbs and the editing verbs' --dry-run on the
// sample store at a fixed clock and compares the whole output with
// testdata/*.golden. Run `go test -run TestGolden -update` after a
// deliberate change and review the diff.
func TestGolden(t *testing.T) {
	path := sampleStore(t)
	tests := []struct {
		golden string
		code   int
		args   []string
	}{
		{"show", 0, []string{"show", path}},
		{"show-hub", 0, []string{"show", path, "--hub", "PAYMENTS"}},
		{"show-json", 0, []string{"show", path, "--json", "--namespace", "other.servicebus.windows.net"}},
		{"show-json-released", 0, []string{"show", path, "--json", "--namespace", "myns.servicebus.windows.net", "--hub", "orders"}},
		{"show-expiry", 0, []string{"show", path, "--expiry", "4s", "--group", "$Default", "--namespace", "myns.servicebus.windows.net"}},
		{"show-none", 0, []string{"show", path, "--hub", "missing"}},
		{"ls", 0, []string{"ls", path}},
		{"ls-json", 0, []string{"ls", path, "--json", "--hub", "payments"}},
		{"set-dry-run", 0, []string{"set", path, "--hub", "payments", "--all", "--sequence", "3", "--offset", "300", "--dry-run"}},
		{"set-dry-run-spaced-ids", 0, []string{"set", path, "--hub", "payments", "-p", " 0, 1", "-p", "1,0", "--sequence", "3", "--dry-run"}},
		{"set-refused", 1, []string{"set", path, "--hub", "orders", "-n", "myns.servicebus.windows.net", "--all", "--sequence", "3"}},
		{"set-ambiguous", 1, []string{"set", path, "--partition", "0", "--sequence", "3"}},
		{"reset-dry-run", 0, []string{"reset", path, "--all", "--hub", "orders", "--force", "--dry-run"}},
		{"release-dry-run", 0, []string{"release", path, "--owner", "host-a", "--force", "--dry-run"}},
		{"release-refused", 1, []string{"release", path, "--owner", "host-a"}},
		{"delete-dry-run", 0, []string{"delete", path, "--namespace", "MyNS.servicebus.windows.net", "--hub", "payments", "--dry-run"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			r := ehc(t, "", []string{envNow + "=" + sampleNow}, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d", r.code, tt.code)
			}
			got := r.stdout + r.stderr
			got = strings.ReplaceAll(got, path, "FILE")
			file := filepath.Join("testdata", tt.golden+".golden")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("ehcheckpoints %s: output differs from %s\ngot:\n%s\nwant:\n%s", strings.Join(tt.args, " "), file, got, want)
			}
		})
	}
	// Nothing above may have written: the file still exports as imported.
	want, err := os.ReadFile(filepath.Join("testdata", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, "", "export", path).stdout; got != string(want) {
		t.Errorf("the sample store changed:\n%s", got)
	}
}
