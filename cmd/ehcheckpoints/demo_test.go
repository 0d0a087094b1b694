package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo as a user would, small, with its output going to
// a pipe: it must finish by itself, tell the story line by line without
// terminal escapes, and with --keep leave a file that the other verbs read.
func TestDemo(t *testing.T) {
	r := mustRun(t, "", "demo", "--processors", "3", "--partitions", "6", "--events", "600", "--keep")
	out := r.stdout
	t.Logf("demo took %s:\n%s", r.elapsed.Round(time.Millisecond), out)
	if r.elapsed > time.Minute {
		t.Errorf("demo took %s, more than a minute", r.elapsed)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("output to a pipe has terminal escapes")
	}
	for _, want := range []string{
		"started proc-1, proc-2 and proc-3: checkpoints every 10 events",
		"balanced: proc-1 2, proc-2 2, proc-3 2",
		"SIGKILL proc-2, owner of partitions",
		"after proc-2's checkpoint at",
		"taken over in",
		"PARTITION  OWNER",
		"(released)",
		"Summary",
		"600 published, 600 processed",
		"3 processors balanced 6 partitions",
		"partitions owned by proc-1 and proc-3",
		"written to one file by 3 processes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	m := regexp.MustCompile(`(?m)^  store file   (.+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("--keep printed no store file")
	}
	path := m[1]
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(path)) })
	if !strings.Contains(out, "show "+path) {
		t.Errorf("--keep printed no show command for %s", path)
	}
	show := mustRun(t, "", "show", path, "--json")
	if n := strings.Count(show.stdout, `"ownerId": ""`); n != 6 {
		t.Errorf("show --json of the kept file: %d relinquished partitions, want 6:\n%s", n, show.stdout)
	}
	if n := strings.Count(show.stdout, `"sequenceNumber": 99`); n != 6 {
		t.Errorf("show --json of the kept file: %d checkpoints at the last event 99, want 6:\n%s", n, show.stdout)
	}
}

// TestDemoUsage checks the limits of the demo's flags.
func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--processors", "1"},
		{"demo", "--partitions", "1"},
		{"demo", "--processors", "5", "--partitions", "4"},
		{"demo", "--events", "0"},
		{"demo", "extra"},
		{demoProcessorVerb, "-id", "x"},
	} {
		if r := ehc(t, "", nil, args...); r.code != exitUsage || r.stdout != "" {
			t.Errorf("ehcheckpoints %s: exit %d, stdout %q; want %d and nothing", strings.Join(args, " "), r.code, r.stdout, exitUsage)
		}
	}
}
