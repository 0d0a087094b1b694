// Package benchcmp measures boltstore side by side with the two figures it
// is judged against: the disk's fdatasync floor (the least a durable commit
// can cost) and the official checkpoints.BlobStore on a loopback Azurite
// (what a developer runs today). It runs all three in one process, one
// after another, times every call individually, and reports medians, the
// ratios between them, and whether each speed target is met.
//
// Absolute times on a shared machine move by tens of percent from run to
// run; ratios measured in the same run are what the targets are about. To
// keep those ratios honest, the cases are measured in rounds: each round
// takes a slice of every case's samples, so slow drift of the machine
// affects all cases alike.
//
// The `ehcheckpoints bench` verb prints a Report; the root package's Go
// benchmarks reuse this package's workload (Checkpoint, Fill, Claim,
// SeedOtherGroups, Floor) so that both measure the same calls.
package benchcmp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2/checkpoints"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/ehcheckpoints/boltstore"
	"github.com/ehcheckpoints/boltstore/internal/azurite"
	"github.com/ehcheckpoints/boltstore/internal/filelock"
)

// Config sets what Run measures and how long it takes. The zero value of
// each field selects its default; the defaults take about 15 seconds on a
// quiet 2-core machine, most of it spent on BlobStore, and several times
// that when other work keeps the disk busy.
type Config struct {
	// Dir is where the store files and the floor's file are made, in a
	// fresh subdirectory that Run removes. They share it so that they are
	// on the same disk. Default: the system's temporary directory.
	Dir string

	// Samples is the number of timed calls of each disk-bound case
	// (the floor, SetCheckpoint, ClaimOwnership). The handover and reopen
	// cases take a fifth of it, and each of the 32 concurrent writers a
	// quarter. Default: 2000.
	Samples int

	// ListSamples is the number of timed calls of each boltstore list
	// case. Default: 10000.
	ListSamples int

	// BlobSamples is the number of timed calls of each BlobStore case;
	// ClaimOwnership, one HTTP call per partition, takes a quarter of it.
	// Default: 200.
	BlobSamples int

	// Rounds is how many slices each case's samples are taken in.
	// Default: 20.
	Rounds int

	// OtherGroups is how many other consumer groups the many-groups file
	// holds, each with OtherPartitions ownerships and checkpoints.
	// Defaults: 10000 and 32, a processor's worth each.
	OtherGroups, OtherPartitions int

	// SkipBlob leaves out BlobStore, and with it Azurite. Its targets are
	// then reported as not measured. Default: false.
	SkipBlob bool

	// Azurites selects the Azurite setups BlobStore is measured on.
	// Default: AzuriteBoth.
	Azurites AzuriteSetup

	// Azurite, when set, is the only Azurite BlobStore is measured on,
	// instead of those Run would start; AzuriteAccessLog says whether it
	// runs with its access log (azurite.Options.AccessLog), which the
	// report names.
	Azurite          *azurite.Server
	AzuriteAccessLog bool

	// Progress, when set, receives a line as each stage starts.
	Progress io.Writer
}

// AzuriteSetup selects how the Azurites that BlobStore runs on are started.
//
// Azurite as developers run it (`azurite-blob`, or `npm run azurite-blob`
// here) writes an access log line per request; shared/numbers.md's
// BlobStore figures, which the targets were set against, were measured so.
// With --silent each request is faster (by 15-40% here, more when the log
// goes to a terminal), which makes every "faster than BlobStore" ratio
// stricter.
type AzuriteSetup int

const (
	// AzuriteBoth measures BlobStore on Azurite with its access log, which
	// the targets are evaluated against, and then on a silent one, whose
	// ratios are reported apart.
	AzuriteBoth AzuriteSetup = iota
	// AzuriteAccessLog measures only Azurite with its access log.
	AzuriteAccessLog
	// AzuriteSilent measures only a silent Azurite; the targets are then
	// evaluated against it.
	AzuriteSilent
)

// ParseAzuriteSetup reads "both", "log" or "silent".
func ParseAzuriteSetup(s string) (AzuriteSetup, error) {
	switch s {
	case "both":
		return AzuriteBoth, nil
	case "log":
		return AzuriteAccessLog, nil
	case "silent":
		return AzuriteSilent, nil
	}
	return 0, fmt.Errorf("unknown Azurite setup %q: want both, log or silent", s)
}

func (a AzuriteSetup) String() string {
	switch a {
	case AzuriteAccessLog:
		return "log"
	case AzuriteSilent:
		return "silent"
	}
	return "both"
}

// blobSetup is one Azurite that BlobStore is measured on.
type blobSetup struct {
	accessLog bool
	// primary setups give the figures the targets are evaluated against.
	primary bool
	srv     *azurite.Server // nil: start one
}

func (b blobSetup) subject() string {
	if b.accessLog {
		return subjectBlob
	}
	return subjectBlob + " --silent"
}

func (b blobSetup) idPrefix() string {
	if b.primary {
		return idBlobPrefix
	}
	return idBlobSilentPrefix
}

func (c Config) blobSetups() []blobSetup {
	switch {
	case c.SkipBlob:
		return nil
	case c.Azurite != nil:
		return []blobSetup{{accessLog: c.AzuriteAccessLog, primary: true, srv: c.Azurite}}
	case c.Azurites == AzuriteAccessLog:
		return []blobSetup{{accessLog: true, primary: true}}
	case c.Azurites == AzuriteSilent:
		return []blobSetup{{accessLog: false, primary: true}}
	}
	return []blobSetup{{accessLog: true, primary: true}, {accessLog: false}}
}

// Defaults of the Config fields.
const (
	DefaultSamples         = 2000
	DefaultListSamples     = 10000
	DefaultBlobSamples     = 200
	DefaultRounds          = 20
	DefaultOtherGroups     = 10000
	DefaultOtherPartitions = 32
)

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Samples, DefaultSamples)
	def(&c.ListSamples, DefaultListSamples)
	def(&c.BlobSamples, DefaultBlobSamples)
	def(&c.Rounds, DefaultRounds)
	def(&c.OtherGroups, DefaultOtherGroups)
	def(&c.OtherPartitions, DefaultOtherPartitions)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// reopenIdleRelease is the IdleRelease of the store in the reopen case.
// The cost measured is that of reopening, which does not depend on how long
// the store waited before it let go; a short wait keeps the case quick.
const reopenIdleRelease = 2 * time.Millisecond

// releasePoll is how often WaitReleased looks at the lock.
const releasePoll = 500 * time.Microsecond

// Run measures every case and returns the report. It fails on the first
// error of any call: a benchmark of calls that fail measures nothing.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	began := time.Now()
	if !cfg.SkipBlob && cfg.Azurite == nil {
		// Fail before minutes of measuring, not after.
		if _, err := azurite.Binary(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(cfg.Dir, "boltstore-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	rep := &Report{Env: currentEnv(), Config: cfg.summary()}
	local, cleanup, err := localCases(ctx, cfg, dir)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "measuring boltstore and the fdatasync floor (%d rounds)\n", cfg.Rounds)
	if err := measure(ctx, cfg, local); err != nil {
		return nil, err
	}
	cleanup()
	for _, c := range local {
		rep.Results = append(rep.Results, c.result())
	}

	for _, setup := range cfg.blobSetups() {
		blob, stop, err := blobCases(ctx, cfg, setup)
		defer stop()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", setup.subject(), err)
		}
		fmt.Fprintf(cfg.Progress, "measuring %s (%d rounds)\n", setup.subject(), cfg.Rounds)
		if err := measure(ctx, cfg, blob); err != nil {
			return nil, fmt.Errorf("%s: %w", setup.subject(), err)
		}
		stop() // a second Azurite should not compete with an idle first
		for _, c := range blob {
			rep.Results = append(rep.Results, c.result())
		}
	}
	rep.Targets = evaluate(rep.Results, cfg.OtherGroups, idBlobPrefix)
	if len(cfg.blobSetups()) > 1 {
		rep.SilentAzuriteTargets = blobTargets(rep.Results, idBlobSilentPrefix)
	}
	rep.Env.LoadEnd = loadAverage()
	rep.Elapsed = time.Since(began)
	return rep, nil
}

// measure warms every case up, then takes the samples in rounds.
func measure(ctx context.Context, cfg Config, cases []*benchCase) error {
	for _, c := range cases {
		// Every round gets at least one call of every case, so that
		// rounds pair up.
		c.samples = max(c.samples, cfg.Rounds)
		c.init()
		if err := c.warm(ctx, min(10, max(1, c.samples/20))); err != nil {
			return fmt.Errorf("%s: warm-up: %w", c.name, err)
		}
	}
	for r := range cfg.Rounds {
		for _, c := range cases {
			if err := c.chunk(ctx, share(c.samples, cfg.Rounds, r)); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
	}
	return nil
}

// share is round r's part of n samples split over rounds.
func share(n, rounds, r int) int {
	return n*(r+1)/rounds - n*r/rounds
}

// Result IDs, which evaluate uses to find the figures of each target.
const (
	idFloor       = "floor"
	idPlainBolt   = "plain-bbolt"
	idNestedBolt  = "nested-bbolt"
	idSet         = "set"
	idSetMany     = "set-many"
	idSetParallel = "set-parallel"
	idClaim       = "claim"
	idListOwn     = "list-ownership"
	idListCp      = "list-checkpoints"
	idListOwnMany = "list-ownership-many"
	idListCpMany  = "list-checkpoints-many"
	idHandover    = "handover"
	idReopen      = "reopen"
	// A BlobStore case's ID is a prefix and one of the idBlob suffixes.
	idBlobPrefix       = "blob"
	idBlobSilentPrefix = "blob-silent"
	idBlobSet          = "-set"
	idBlobClaim        = "-claim"
	idBlobListOwn      = "-list-ownership"
	idBlobListCp       = "-list-checkpoints"
	subjectDisk        = "disk"
	subjectBolt        = "boltstore"
	subjectPlain       = "bbolt"
	subjectBlob        = "BlobStore/Azurite"
	parallelWriter     = Partitions
)

// localCases sets up the floor and the boltstore files and returns their
// cases. cleanup closes what was opened; it is safe to call twice.
func localCases(ctx context.Context, cfg Config, dir string) (cases []*benchCase, cleanup func(), err error) {
	var closers []func() error
	cleanup = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
		closers = nil
	}
	open := func(name string, opts *boltstore.Options) (*boltstore.Store, error) {
		s, err := boltstore.Open(filepath.Join(dir, name), opts)
		if err == nil {
			closers = append(closers, s.Close)
		}
		return s, err
	}
	fmt.Fprintln(cfg.Progress, "setting up: floor file and store files")

	floor, err := OpenFloor(dir)
	if err != nil {
		return nil, cleanup, err
	}
	closers = append(closers, floor.Close)

	// Plain bbolt, for telling the store's own cost from bbolt's: the
	// cheapest commit, and one into a bucket per name, as a naive store
	// nests them.
	plain, err := OpenPlainBolt(filepath.Join(dir, "plain-bbolt.db"))
	if err != nil {
		return nil, cleanup, err
	}
	closers = append(closers, plain.Close)
	nested, err := OpenNestedBolt(filepath.Join(dir, "nested-bbolt.db"))
	if err != nil {
		return nil, cleanup, err
	}
	closers = append(closers, nested.Close)
	for _, p := range []*PlainBolt{plain, nested} {
		if err := p.Put(0); err != nil {
			return nil, cleanup, err
		}
	}

	// The main store: one group of 32 partitions, used by SetCheckpoint,
	// the concurrent writers, the renewals and the lists.
	s, err := open("main.db", nil)
	if err != nil {
		return nil, cleanup, err
	}
	owned, err := Fill(ctx, s)
	if err != nil {
		return nil, cleanup, err
	}

	// The same group among OtherGroups others.
	fmt.Fprintf(cfg.Progress, "setting up: a file with %d other consumer groups\n", cfg.OtherGroups)
	many, err := open("many.db", nil)
	if err != nil {
		return nil, cleanup, err
	}
	if err := SeedOtherGroups(ctx, many, cfg.OtherGroups, cfg.OtherPartitions); err != nil {
		return nil, cleanup, err
	}
	if _, err := Fill(ctx, many); err != nil {
		return nil, cleanup, err
	}

	// Two handles on one file, as two processes would have.
	shared := [2]*boltstore.Store{}
	for i := range shared {
		if shared[i], err = open("shared.db", nil); err != nil {
			return nil, cleanup, err
		}
	}

	// A store that lets go of its file quickly, and a descriptor to see
	// that it has.
	idle, err := open("idle.db", &boltstore.Options{IdleRelease: reopenIdleRelease})
	if err != nil {
		return nil, cleanup, err
	}
	if _, err := Fill(ctx, idle); err != nil {
		return nil, cleanup, err
	}
	probe, err := os.OpenFile(idle.Path(), os.O_RDWR, 0)
	if err != nil {
		return nil, cleanup, err
	}
	closers = append(closers, probe.Close)

	n, ln := cfg.Samples, cfg.ListSamples
	cases = []*benchCase{
		{id: idFloor, subject: subjectDisk, name: "write 4 KiB + fdatasync (the floor)", samples: n,
			op: func(context.Context, int, int) error { return floor.Write() }},
		{id: idPlainBolt, subject: subjectPlain, name: "Update, one Put, top-level bucket (reference)", samples: n,
			op: func(_ context.Context, _, i int) error { return plain.Put(i) }},
		{id: idNestedBolt, subject: subjectPlain, name: "Update, one Put, a bucket per name", samples: n,
			op: func(_ context.Context, _, i int) error { return nested.Put(i) }},
		{id: idSet, subject: subjectBolt, name: "SetCheckpoint, one caller", samples: n,
			op: func(ctx context.Context, _, i int) error {
				return s.SetCheckpoint(ctx, Checkpoint(0, int64(i)), nil)
			}},
		{id: idSetParallel, subject: subjectBolt, name: fmt.Sprintf("SetCheckpoint, %d goroutines × own partition", parallelWriter),
			samples: max(1, n/4), workers: parallelWriter,
			op: func(ctx context.Context, w, i int) error {
				return s.SetCheckpoint(ctx, Checkpoint(w, int64(i)), nil)
			}},
		{id: idClaim, subject: subjectBolt, name: fmt.Sprintf("ClaimOwnership of %d, renewal with etags", Partitions), samples: n,
			op: func(ctx context.Context, _, _ int) error {
				var err error
				owned, err = Claim(ctx, s, owned)
				return err
			}},
		{id: idListOwn, subject: subjectBolt, name: fmt.Sprintf("ListOwnership, %d partitions", Partitions), samples: ln,
			op: func(ctx context.Context, _, _ int) error { return ListOwnership(ctx, s) }},
		{id: idListCp, subject: subjectBolt, name: fmt.Sprintf("ListCheckpoints, %d partitions", Partitions), samples: ln,
			op: func(ctx context.Context, _, _ int) error { return ListCheckpoints(ctx, s) }},
		{id: idListOwnMany, subject: subjectBolt, name: fmt.Sprintf("ListOwnership, %d partitions, %d other groups", Partitions, cfg.OtherGroups), samples: ln,
			op: func(ctx context.Context, _, _ int) error { return ListOwnership(ctx, many) }},
		{id: idListCpMany, subject: subjectBolt, name: fmt.Sprintf("ListCheckpoints, %d partitions, %d other groups", Partitions, cfg.OtherGroups), samples: ln,
			op: func(ctx context.Context, _, _ int) error { return ListCheckpoints(ctx, many) }},
		// No target: what a commit costs when the records' tree is deep.
		{id: idSetMany, subject: subjectBolt, name: fmt.Sprintf("SetCheckpoint, one caller, %d other groups", cfg.OtherGroups), samples: n,
			op: func(ctx context.Context, _, i int) error {
				return many.SetCheckpoint(ctx, Checkpoint(0, int64(i)), nil)
			}},
		{id: idHandover, subject: subjectBolt, name: "SetCheckpoint, 2 handles alternating (handover)", samples: max(1, n/5),
			op: func(ctx context.Context, _, i int) error {
				return shared[i%2].SetCheckpoint(ctx, Checkpoint(0, int64(i)), nil)
			}},
		{id: idReopen, subject: subjectBolt, name: fmt.Sprintf("ListOwnership after idle release (reopen; IdleRelease %v)", reopenIdleRelease),
			samples: max(1, n/5),
			prep:    func(ctx context.Context) error { return WaitReleased(ctx, probe) },
			op:      func(ctx context.Context, _, _ int) error { return ListOwnership(ctx, idle) }},
	}
	return cases, cleanup, nil
}

// WaitReleased waits until no process holds the flock of the store file
// that probe is open on: the store has let go of the file, so its next call
// must reopen it. It polls every half millisecond.
func WaitReleased(ctx context.Context, probe *os.File) error {
	for {
		err := filelock.TryLock(probe)
		if err == nil {
			return filelock.Unlock(probe)
		}
		if !errors.Is(err, filelock.ErrWouldBlock) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// time.Sleep, unlike time.After, allocates nothing, which keeps
		// the reopen case's allocation count about the store.
		time.Sleep(releasePoll)
	}
}

// blobCases starts the setup's Azurite if needed, makes a container and a
// BlobStore with the same group of 32 partitions, and returns the
// BlobStore's cases. stop stops an Azurite it started; it is safe to call
// twice.
func blobCases(ctx context.Context, cfg Config, setup blobSetup) (cases []*benchCase, stop func(), err error) {
	stop = func() {}
	srv := setup.srv
	if srv == nil {
		fmt.Fprintf(cfg.Progress, "starting Azurite (access log: %v)\n", setup.accessLog)
		if srv, err = azurite.StartWith(ctx, azurite.Options{AccessLog: setup.accessLog}); err != nil {
			return nil, stop, err
		}
		stop = func() { _ = srv.Close() }
	}
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	cc, err := container.NewClientFromConnectionString(srv.ConnectionString(), name, nil)
	if err != nil {
		return nil, stop, err
	}
	if _, err := cc.Create(ctx, nil); err != nil {
		return nil, stop, err
	}
	bs, err := checkpoints.NewBlobStore(cc, nil)
	if err != nil {
		return nil, stop, err
	}
	var store azeventhubs.CheckpointStore = bs
	owned, err := Fill(ctx, store)
	if err != nil {
		return nil, stop, err
	}
	n := cfg.BlobSamples
	id, subject := setup.idPrefix(), setup.subject()
	cases = []*benchCase{
		{id: id + idBlobSet, subject: subject, name: "SetCheckpoint, one caller", samples: n,
			op: func(ctx context.Context, _, i int) error {
				return store.SetCheckpoint(ctx, Checkpoint(0, int64(i)), nil)
			}},
		{id: id + idBlobClaim, subject: subject, name: fmt.Sprintf("ClaimOwnership of %d, renewal with etags", Partitions), samples: max(1, n/4),
			op: func(ctx context.Context, _, _ int) error {
				var err error
				owned, err = Claim(ctx, store, owned)
				return err
			}},
		{id: id + idBlobListOwn, subject: subject, name: fmt.Sprintf("ListOwnership, %d partitions", Partitions), samples: n,
			op: func(ctx context.Context, _, _ int) error { return ListOwnership(ctx, store) }},
		{id: id + idBlobListCp, subject: subject, name: fmt.Sprintf("ListCheckpoints, %d partitions", Partitions), samples: n,
			op: func(ctx context.Context, _, _ int) error { return ListCheckpoints(ctx, store) }},
	}
	return cases, stop, nil
}

// currentEnv describes the machine for the report.
func currentEnv() Env {
	return Env{
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   cpuModel(),
		LoadStart:  loadAverage(),
	}
}
