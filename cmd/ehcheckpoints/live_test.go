package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehcheckpoints/boltstore"
)

// maxLatency is how long any verb may take against a file that processors
// hold. The goal is well under a second; the bound leaves room for a
// loaded test machine.
const maxLatency = 2 * time.Second

// TestAgainstRunningProcessors runs the verbs on a store file that two
// other processes use at the same time, as two processor instances that
// split the partitions of one consumer group.
func TestAgainstRunningProcessors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "live.db")
	g := boltstore.Scope{Namespace: "Live.servicebus.windows.net", EventHub: "orders", ConsumerGroup: "$Default"}
	startProcessor(t, path, g, "host-a", 0, 3)
	startProcessor(t, path, g, "host-b", 4, 7)

	timed := func(t *testing.T, stdin string, args ...string) result {
		t.Helper()
		r := ehc(t, stdin, nil, args...)
		t.Logf("%-8s %6.1fms (exit %d)", args[0], float64(r.elapsed.Microseconds())/1000, r.code)
		if r.elapsed > maxLatency {
			t.Errorf("ehcheckpoints %s took %v against a held file", strings.Join(args, " "), r.elapsed)
		}
		return r
	}
	ok := func(t *testing.T, r result) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		return r
	}

	t.Run("export", func(t *testing.T) {
		r := ok(t, timed(t, "", "export", path))
		rows := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(rows) != 16 {
			t.Fatalf("%d rows, want 8 ownerships and 8 checkpoints:\n%s", len(rows), r.stdout)
		}
		for _, owner := range []string{`"ownerId":"host-a"`, `"ownerId":"host-b"`} {
			if n := strings.Count(r.stdout, owner); n != 4 {
				t.Errorf("%d rows with %s, want 4", n, owner)
			}
		}
	})
	t.Run("show", func(t *testing.T) {
		r := ok(t, timed(t, "", "show", path))
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) != 10 || lines[0] != "live.servicebus.windows.net / orders / $default" {
			t.Fatalf("want a header, column names and 8 partitions:\n%s", r.stdout)
		}
		for i, line := range lines[2:] {
			f := strings.Fields(line)
			owner := "host-a"
			if i >= 4 {
				owner = "host-b"
			}
			if f[0] != string(rune('0'+i)) || f[1] != owner || f[4] != "no" {
				t.Errorf("row %q: want partition %d of %s, not expired", line, i, owner)
			}
		}
	})
	for _, args := range [][]string{
		{"show", path, "--json"},
		{"ls", path},
		{"watch", path, "--count", "2", "--interval", "1ms"},
		{"check", path},
		{"backup", path, filepath.Join(dir, "backup.db")},
		{"compact", path, filepath.Join(dir, "compact.db")},
	} {
		t.Run(args[0], func(t *testing.T) { ok(t, timed(t, "", args...)) })
	}
	t.Run("copies", func(t *testing.T) {
		for _, copy := range []string{"backup.db", "compact.db"} {
			r := ok(t, timed(t, "", "check", filepath.Join(dir, copy)))
			if !strings.Contains(r.stdout, "8 ownership(s) and 8 checkpoint(s)") {
				t.Errorf("check %s: %s", copy, r.stdout)
			}
		}
	})
	t.Run("round trip", func(t *testing.T) {
		first := ok(t, timed(t, "", "export", path)).stdout
		copyPath := filepath.Join(dir, "imported.db")
		ok(t, timed(t, first, "import", copyPath))
		second := ok(t, timed(t, "", "export", copyPath)).stdout
		if !slices.Equal(rowSet(first), rowSet(second)) {
			t.Errorf("export, import, export changed the rows:\n%s\nthen:\n%s", first, second)
		}
		if first != second {
			t.Errorf("the second export is not byte for byte the first")
		}
	})
	t.Run("editing refused", func(t *testing.T) {
		for _, args := range [][]string{
			{"set", path, "-p", "0", "--sequence", "1"},
			{"reset", path, "--all"},
			{"release", path, "--owner", "host-b"},
			{"delete", path, "-n", g.Namespace},
		} {
			r := timed(t, "", args...)
			if r.code != 1 || !strings.Contains(r.stderr, "refusing") || !strings.Contains(r.stderr, "--force") {
				t.Errorf("%s on live partitions: exit %d, stderr %q; want a refusal that mentions --force", args[0], r.code, r.stderr)
			}
		}
	})
	t.Run("editing forced", func(t *testing.T) {
		r := ok(t, timed(t, "", "set", path, "-p", "0,1", "--sequence", "1", "--offset", "100", "--force"))
		if strings.Count(r.stdout, "\nset ")+1 != 2 {
			t.Errorf("set: want two changes:\n%s", r.stdout)
		}
		ok(t, timed(t, "", "reset", path, "--all", "--force"))
		ok(t, timed(t, "", "import", path, filepath.Join("testdata", "sample.jsonl"), "--force"))
		ok(t, timed(t, "", "delete", path, "-n", "myns.servicebus.windows.net", "--force"))
		// A processor may renew a partition between release's read and
		// its claim; release then leaves it alone and says so.
		r = timed(t, "", "release", path, "--owner", "host-b", "--force")
		switch {
		case r.code == 0 && strings.Count(r.stdout, "released ") == 4:
		case r.code == 1 && strings.Contains(r.stderr, "changed while releasing"):
		default:
			t.Errorf("release: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})
}

// rowSet returns the lines of JSON Lines output, sorted.
func rowSet(jsonl string) []string {
	rows := strings.Split(strings.TrimSuffix(jsonl, "\n"), "\n")
	slices.Sort(rows)
	return rows
}
