package benchcmp

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is the outcome of Run.
type Report struct {
	Env     Env           `json:"env"`
	Config  ConfigSummary `json:"config"`
	Results []Result      `json:"results"`
	Targets []Target      `json:"targets"`
	// SilentAzuriteTargets are the BlobStore targets evaluated against a
	// silent Azurite, when one was measured besides the one with its
	// access log: stricter, and not counted by Met.
	SilentAzuriteTargets []Target      `json:"silent_azurite_targets,omitempty"`
	Elapsed              time.Duration `json:"elapsed_ns"`
}

// Env describes the machine a report was measured on.
type Env struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	// LoadStart and LoadEnd are the one-minute load average when the run
	// began and ended, where the system tells it (0 otherwise): other
	// work on the machine shows up there.
	LoadStart float64 `json:"load_start,omitempty"`
	LoadEnd   float64 `json:"load_end,omitempty"`
}

// ConfigSummary is the part of a Config that shapes the figures.
type ConfigSummary struct {
	Samples         int    `json:"samples"`
	ListSamples     int    `json:"list_samples"`
	BlobSamples     int    `json:"blob_samples"`
	Rounds          int    `json:"rounds"`
	OtherGroups     int    `json:"other_groups"`
	OtherPartitions int    `json:"other_partitions"`
	SkipBlob        bool   `json:"skip_blob"`
	Azurites        string `json:"azurites"`
}

func (c Config) summary() ConfigSummary {
	return ConfigSummary{c.Samples, c.ListSamples, c.BlobSamples, c.Rounds, c.OtherGroups, c.OtherPartitions, c.SkipBlob, c.Azurites.String()}
}

// Result is the summary of one measured operation.
type Result struct {
	// ID names the case for programs; Subject and Operation for people.
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Operation string `json:"operation"`
	// Calls is how many calls were timed; Workers how many goroutines
	// made them at once (0: one caller).
	Calls   int `json:"calls"`
	Workers int `json:"workers,omitempty"`
	// P50 and P90 are percentiles of the individually timed calls.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	// OpsPerSec is calls per second: for one caller the inverse of the
	// mean call, for concurrent workers the calls that ended while all of
	// them were calling, over that time (parallelChunk).
	OpsPerSec float64 `json:"ops_per_sec"`
	// AllocsPerOp and BytesPerOp are heap allocations per call, counted
	// over the whole process, background goroutines included.
	AllocsPerOp float64 `json:"allocs_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	// RoundOpsPerSec is OpsPerSec of each round on its own.
	RoundOpsPerSec []float64 `json:"round_ops_per_sec"`
}

// Target is one speed target and how this run fared against it.
type Target struct {
	Name string `json:"name"`
	// Value is the measured figure in Unit ("x" for a ratio, "µs").
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Limit is the target's bound; AtMost says whether Value must be at
	// most (true) or at least (false) Limit.
	Limit  float64 `json:"limit"`
	AtMost bool    `json:"at_most"`
	// Measured is false when a figure it needs was not measured (for
	// example BlobStore with SkipBlob); Met is then false too.
	Measured bool `json:"measured"`
	Met      bool `json:"met"`
	// Basis says which figures Value is made of.
	Basis string `json:"basis"`
}

// figures looks up results by ID for the targets.
type figures map[string]*Result

func index(results []Result) figures {
	byID := figures{}
	for i := range results {
		byID[results[i].ID] = &results[i]
	}
	return byID
}

func (f figures) p50(id string) float64 {
	if r, ok := f[id]; ok && r.Calls > 0 {
		return float64(r.P50)
	}
	return math.NaN()
}

func (f figures) ratio(a, b string) float64 { return f.p50(a) / f.p50(b) }

// roundRatio is the median over rounds of a's calls per second over b's.
// It pairs the rounds: a burst of someone else's disk traffic slows both
// cases of a round, but would skew a ratio of totals toward whichever case
// it happened to hit.
func (f figures) roundRatio(a, b string) float64 {
	ra, ok1 := f[a]
	rb, ok2 := f[b]
	if !ok1 || !ok2 || len(ra.RoundOpsPerSec) == 0 || len(ra.RoundOpsPerSec) != len(rb.RoundOpsPerSec) {
		return math.NaN()
	}
	ratios := make([]float64, len(ra.RoundOpsPerSec))
	for i := range ratios {
		ratios[i] = ra.RoundOpsPerSec[i] / rb.RoundOpsPerSec[i]
	}
	return median(ratios)
}

func newTarget(name, basis string, value, limit float64, atMost bool, unit string) Target {
	t := Target{Name: name, Basis: basis, Value: value, Unit: unit, Limit: limit, AtMost: atMost, Measured: !math.IsNaN(value)}
	if t.Measured {
		t.Met = value <= limit
		if !atMost {
			t.Met = value >= limit
		}
	} else {
		t.Value = 0
	}
	return t
}

// evaluate computes the targets of issue 3 from the results, comparing
// with the BlobStore cases whose IDs start with blob.
func evaluate(results []Result, otherGroups int, blob string) []Target {
	f := index(results)
	us := func(id string) float64 { return f.p50(id) / float64(time.Microsecond) }
	bt := blobTargets(results, blob)
	return []Target{
		newTarget("SetCheckpoint p50 vs the fdatasync floor", "SetCheckpoint p50 / floor p50", f.ratio(idSet, idFloor), 2.5, true, "x"),
		bt[0],
		newTarget("32 concurrent writers vs one caller", "checkpoints/s of 32 goroutines / of one caller, median over rounds", f.roundRatio(idSetParallel, idSet), 20, false, "x"),
		newTarget("ClaimOwnership 32 vs one SetCheckpoint", "ClaimOwnership p50 / SetCheckpoint p50", f.ratio(idClaim, idSet), 1.3, true, "x"),
		bt[1],
		newTarget("ListOwnership 32 p50", "p50", us(idListOwn), 20, true, "µs"),
		bt[2],
		newTarget("ListCheckpoints 32 p50", "p50", us(idListCp), 20, true, "µs"),
		bt[3],
		newTarget(fmt.Sprintf("ListOwnership with %d other groups", otherGroups), "p50 with / p50 without", f.ratio(idListOwnMany, idListOwn), 1.3, true, "x"),
		newTarget(fmt.Sprintf("ListCheckpoints with %d other groups", otherGroups), "p50 with / p50 without", f.ratio(idListCpMany, idListCp), 1.3, true, "x"),
	}
}

// blobTargets are the four "faster than BlobStore" targets, against the
// BlobStore cases whose IDs start with blob.
func blobTargets(results []Result, blob string) []Target {
	f := index(results)
	basis := "BlobStore p50 / boltstore p50"
	return []Target{
		newTarget("SetCheckpoint faster than BlobStore", basis, f.ratio(blob+idBlobSet, idSet), 5, false, "x"),
		newTarget("ClaimOwnership 32 faster than BlobStore", basis, f.ratio(blob+idBlobClaim, idClaim), 100, false, "x"),
		newTarget("ListOwnership 32 faster than BlobStore", basis, f.ratio(blob+idBlobListOwn, idListOwn), 200, false, "x"),
		newTarget("ListCheckpoints 32 faster than BlobStore", basis, f.ratio(blob+idBlobListCp, idListCp), 200, false, "x"),
	}
}

// Met counts the targets met and measured.
func (r *Report) Met() (met, measured int) {
	for _, t := range r.Targets {
		if t.Measured {
			measured++
			if t.Met {
				met++
			}
		}
	}
	return met, measured
}

// WriteText prints the report as two tables: the measured operations, then
// the targets.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	e := r.Env
	cpu := ""
	if e.CPUModel != "" {
		cpu = ", " + e.CPUModel
	}
	fmt.Fprintf(bw, "boltstore bench: %s %s/%s, %d CPUs%s, GOMAXPROCS %d\n", e.GoVersion, e.OS, e.Arch, e.CPUs, cpu, e.GOMAXPROCS)
	fmt.Fprintf(bw, "default Options (durable: fsync on); every call timed on its own; %d rounds; took %s",
		r.Config.Rounds, r.Elapsed.Round(100*time.Millisecond))
	if e.LoadStart > 0 || e.LoadEnd > 0 {
		fmt.Fprintf(bw, "; load average %.2f at start, %.2f at end", e.LoadStart, e.LoadEnd)
	}
	fmt.Fprintln(bw)
	for _, warning := range r.noise() {
		fmt.Fprintf(bw, "WARNING: %s\n", warning)
	}
	fmt.Fprintln(bw)

	rows := [][]string{{"subject", "operation", "calls", "p50", "p90", "ops/s", "allocs/op", "B/op"}}
	for _, res := range r.Results {
		rows = append(rows, []string{res.Subject, res.Operation, strconv.Itoa(res.Calls),
			FormatDuration(res.P50), FormatDuration(res.P90), formatCount(res.OpsPerSec),
			formatAllocs(res.AllocsPerOp), formatCount(res.BytesPerOp)})
	}
	writeTable(bw, rows, "llrrrrrr")

	fmt.Fprintln(bw)
	writeTargets(bw, r.Targets)
	met, measured := r.Met()
	fmt.Fprintf(bw, "\n%d of %d targets met", met, len(r.Targets))
	if measured < len(r.Targets) {
		fmt.Fprintf(bw, " (%d not measured)", len(r.Targets)-measured)
	}
	fmt.Fprintln(bw, ".")
	if len(r.SilentAzuriteTargets) > 0 {
		fmt.Fprintf(bw, "\nThe targets compare with %s with its access log, as developers run it and as the\n", subjectBlob)
		fmt.Fprintf(bw, "reference figures were measured; against %s --silent, which answers faster:\n\n", subjectBlob)
		writeTargets(bw, r.SilentAzuriteTargets)
	}
	return bw.Flush()
}

// writeTargets prints targets as a table.
func writeTargets(w io.Writer, targets []Target) {
	rows := [][]string{{"target", "measured", "wanted", "result", "from"}}
	for _, t := range targets {
		op := "≥ "
		if t.AtMost {
			op = "≤ "
		}
		measured, result := "-", "not measured"
		if t.Measured {
			measured = formatValue(t.Value, t.Unit)
			result = "MET"
			if !t.Met {
				result = "NOT MET"
			}
		}
		rows = append(rows, []string{t.Name, measured, op + formatValue(t.Limit, t.Unit), result, t.Basis})
	}
	writeTable(w, rows, "lrrll")
}

// noise explains why the figures of a run may not be trusted: other work
// competing for the CPUs or the disk. Ratios between cases of one run
// survive moderate noise, but not bursts that hit some cases harder.
func (r *Report) noise() []string {
	var out []string
	if load := max(r.Env.LoadStart, r.Env.LoadEnd); r.Env.CPUs > 0 && load > float64(r.Env.CPUs) {
		out = append(out, fmt.Sprintf("the load average (%.1f) exceeded the %d CPUs: other work competed with the benchmark", load, r.Env.CPUs))
	}
	for _, res := range r.Results {
		if res.ID == idFloor && res.P50 > 0 && res.P90 > 4*res.P50 {
			out = append(out, fmt.Sprintf("the floor's p90 (%s) is %.0f× its p50: other disk traffic; repeat the run when the machine is quiet",
				FormatDuration(res.P90), float64(res.P90)/float64(res.P50)))
		}
	}
	return out
}

// FormatDuration prints d with three significant digits in the unit that
// suits it: 9.87µs, 123µs, 1.35ms.
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

func sig3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func formatValue(v float64, unit string) string {
	if unit == "x" {
		return sig3(v) + "×"
	}
	return sig3(v) + " " + unit
}

// formatCount prints a rate or size with thousands separators.
func formatCount(v float64) string {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func formatAllocs(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// loadAverage returns the one-minute load average where the system tells
// it, else 0.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cpuModel returns the processor's model name where the system tells it.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// writeTable prints rows in columns two spaces apart, aligned as align
// says, one letter per column: l for left (text), r for right (numbers).
// It counts runes, not bytes, so that "µs" and "×" keep the alignment.
func writeTable(w io.Writer, rows [][]string, align string) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				line.WriteString("  ")
			}
			if align[i] == 'l' {
				line.WriteString(cell + pad)
			} else {
				line.WriteString(pad + cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(line.String(), " "))
	}
}

// median returns the median of v, which it sorts.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
