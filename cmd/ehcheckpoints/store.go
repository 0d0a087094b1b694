package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

// fileUse is how a verb uses the store file.
type fileUse int

const (
	// readFile only reads it. It converts no file of an older boltstore
	// (KeepOlderFormat), and a file the user may not write (of another
	// user, on a read-only mount) is opened read-only. Like any process
	// that opens the file, it undoes a last commit that did not reach the
	// disk whole, where it may write.
	readFile   fileUse = iota
	editFile           // changes it
	createFile         // changes it, creating it if it is missing
)

// openStore opens the store file at path with the options processors use,
// so the CLI takes its turn on a file they hold like any other process,
// except that an operator waits at most --lock-timeout for a stuck lock,
// and hears about the wait, or until ctx ends (Ctrl-C).
// boltstore.OpenContext creates a missing file; only verbs that write data
// (createFile) want that, the others report the missing file. Opening for
// a change converts a file of an older boltstore, and says so on stderr.
func (a *app) openStore(ctx context.Context, path string, use fileUse) (*boltstore.Store, error) {
	if err := checkStoreFile(path, use == createFile); err != nil {
		return nil, err
	}
	stopNotice := a.noticeWait(path)
	s, err := a.open(ctx, path, use)
	stopNotice()
	switch {
	case err == nil:
		if from, ok := s.ConvertedFrom(); ok {
			fmt.Fprintf(a.stderr, "ehcheckpoints: converted %s from the layout of an older boltstore (format %d) to format %d; older boltstores now refuse it\n", path, from, boltstore.FormatVersion)
		}
		return s, nil
	case errors.Is(err, boltstore.ErrOlderFormat):
		return nil, fmt.Errorf("%w\nReading verbs and dry runs leave it as it is: upgrade the processors that use it, then run 'ehcheckpoints upgrade %s'", err, path)
	}
	return nil, a.waitError(ctx, path, err)
}

// waitError words, for the operator, the failure of a call that may have
// waited for the file at path: stopped by a signal (ctx), or given up
// after --lock-timeout. Other errors it returns as they are.
func (a *app) waitError(ctx context.Context, path string, err error) error {
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Such calls take long only while another process holds the file.
		return fmt.Errorf("%s: interrupted while waiting for the file", path)
	case errors.Is(err, boltstore.ErrLockTimeout):
		return fmt.Errorf("%w (--lock-timeout %s)", err, a.lockTimeout)
	}
	return err
}

// open opens the store as use needs it: with write access, and for a
// reading verb that may not write the file, read-only.
func (a *app) open(ctx context.Context, path string, use fileUse) (*boltstore.Store, error) {
	opts := boltstore.Options{LockTimeout: a.lockTimeout, KeepOlderFormat: use == readFile}
	s, err := boltstore.OpenContext(ctx, path, &opts)
	if use == readFile && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		opts.ReadOnly = true
		if s, err = boltstore.OpenContext(ctx, path, &opts); err != nil {
			return nil, fmt.Errorf("no write access, so read-only: %w", err)
		}
	}
	return s, err
}

// waitNoticeDelay is how long opening a file may take before the CLI says
// that it waits: processors hand the file over within milliseconds.
const waitNoticeDelay = time.Second

// noticeWait says on stderr, once waitNoticeDelay has passed, that the
// verb waits for the file at path, and for how long at most. The function
// it returns ends the wait; once it returns, nothing more is written.
func (a *app) noticeWait(path string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
		case <-time.After(waitNoticeDelay):
			fmt.Fprintf(a.stderr, "ehcheckpoints: waiting for %s, which another process may hold; giving up after %s (--lock-timeout)\n", path, a.lockTimeout)
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// checkStoreFile reports a store file argument that is missing (unless
// missingOK) or a directory in the user's words, rather than as the
// failure of a system call; other problems are left to the verb.
func checkStoreFile(path string, missingOK bool) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !missingOK:
		return fmt.Errorf("%s: no such store file", path)
	case err == nil && info.IsDir():
		return fmt.Errorf("%s: is a directory, not a store file", path)
	}
	return nil
}

// openDestination opens the store file that import and migrate write
// into, creating it unless dryRun, and returns its records. With dryRun a
// missing file reads as an empty store and is not created; s is then nil.
// A dry run only reads, so it also works on a file the user may not write.
func (a *app) openDestination(ctx context.Context, path string, dryRun bool) (s *boltstore.Store, existing []boltstore.Record, err error) {
	use := createFile
	if dryRun {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		use = readFile
	}
	if s, err = a.openStore(ctx, path, use); err != nil {
		return nil, nil, err
	}
	if existing, err = s.Records(ctx, boltstore.Scope{}); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, existing, nil
}

// defaultLockTimeout is the default of --lock-timeout, which bounds the
// wait for a file another process keeps locked. Processors hand the file
// over within milliseconds; a longer wait means something is stuck, and
// the operator should hear about it.
const defaultLockTimeout = 10 * time.Second

// defaultExpiry is the processors' default ownership expiration.
const defaultExpiry = 2 * time.Minute

// addScopeFlags adds --namespace, --hub and --group, which narrow a verb to
// part of the file.
func addScopeFlags(cmd *cobra.Command, scope *boltstore.Scope) {
	f := cmd.Flags()
	f.StringVarP(&scope.Namespace, "namespace", "n", "", "only this fully qualified namespace (case-insensitive)")
	f.StringVar(&scope.EventHub, "hub", "", "only this event hub (case-insensitive)")
	f.StringVarP(&scope.ConsumerGroup, "group", "g", "", "only this consumer group (case-insensitive)")
}

// addExpiryFlag adds --expiry, the age after which processors treat an
// ownership as free.
func addExpiryFlag(cmd *cobra.Command, expiry *time.Duration) {
	*expiry = defaultExpiry
	cmd.Flags().Var((*positiveDuration)(expiry), "expiry", "ownership expiration of the processors (their PartitionExpirationDuration)")
}

// positiveDuration is the value of a flag that takes a positive duration:
// --expiry, as a processor's PartitionExpirationDuration is (with zero or
// less every ownership would count as expired), and --lock-timeout.
type positiveDuration time.Duration

func (e *positiveDuration) String() string { return time.Duration(*e).String() }

func (e *positiveDuration) Type() string { return "duration" }

func (e *positiveDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("%s is not a positive duration", s)
	}
	*e = positiveDuration(d)
	return nil
}

// partition is what the file holds about one partition: its ownership,
// its checkpoint, or both.
type partition struct {
	id         string
	ownership  *boltstore.Record
	checkpoint *boltstore.Record
}

// owned reports whether an owner holds the partition, that is, whether a
// processor would not take it: it has an owner id and its ownership is
// younger than expiry.
func (p *partition) owned(now time.Time, expiry time.Duration) bool {
	return p.ownership != nil && p.ownership.OwnerID != "" && now.Sub(p.ownership.LastModifiedTime) < expiry
}

// group is one consumer group of one event hub and its partitions, sorted
// by comparePartitionIDs.
type group struct {
	boltstore.Scope
	partitions []*partition
}

// String formats the group's coordinates for messages.
func (g *group) String() string {
	return g.Namespace + "/" + g.EventHub + "/" + g.ConsumerGroup
}

// partition returns the group's partition with the given id, adding an
// empty one if there is none.
func (g *group) partition(id string) *partition {
	i, found := slices.BinarySearchFunc(g.partitions, id, func(p *partition, id string) int {
		return comparePartitionIDs(p.id, id)
	})
	if !found {
		g.partitions = slices.Insert(g.partitions, i, &partition{id: id})
	}
	return g.partitions[i]
}

// counts returns how many ownerships and checkpoints the group holds.
func (g *group) counts() (ownerships, checkpoints int) {
	for _, p := range g.partitions {
		if p.ownership != nil {
			ownerships++
		}
		if p.checkpoint != nil {
			checkpoints++
		}
	}
	return ownerships, checkpoints
}

// groupRecords arranges records by consumer group, in the order of
// namespace, event hub and consumer group names.
func groupRecords(records []boltstore.Record) []*group {
	var groups []*group
	index := map[boltstore.Scope]*group{}
	for i := range records {
		r := &records[i]
		key := boltstore.Scope{Namespace: r.Namespace, EventHub: r.EventHub, ConsumerGroup: r.ConsumerGroup}
		g := index[key]
		if g == nil {
			g = &group{Scope: key}
			index[key] = g
			groups = append(groups, g)
		}
		p := g.partition(r.PartitionID)
		if r.Type == boltstore.RecordOwnership {
			p.ownership = r
		} else {
			p.checkpoint = r
		}
	}
	slices.SortFunc(groups, func(a, b *group) int {
		return cmp.Or(
			strings.Compare(a.Namespace, b.Namespace),
			strings.Compare(a.EventHub, b.EventHub),
			strings.Compare(a.ConsumerGroup, b.ConsumerGroup))
	})
	return groups
}

// comparePartitionIDs orders partition ids as people expect: numeric ids
// by value ("2" before "10"), then any other ids in byte order.
func comparePartitionIDs(a, b string) int {
	na, errA := strconv.ParseUint(a, 10, 64)
	nb, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return cmp.Or(cmp.Compare(na, nb), strings.Compare(a, b))
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// target is a partition that an editing verb means to change.
type target struct {
	group     *group
	partition *partition
}

// String formats the target for messages: "ns/hub/group partition 3".
func (t target) String() string {
	return t.group.String() + " partition " + t.partition.id
}

// editOptions are the flags every editing verb has.
type editOptions struct {
	expiry time.Duration
	force  bool
	dryRun bool
}

func (o *editOptions) addFlags(cmd *cobra.Command) {
	addExpiryFlag(cmd, &o.expiry)
	cmd.Flags().BoolVar(&o.force, "force", false, "change partitions even if an owner holds them")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would change and change nothing")
}

// checkNotOwned refuses, unless --force, to touch partitions that a live
// owner holds. why tells the user what would go wrong and what to do.
func (o *editOptions) checkNotOwned(targets []target, now time.Time, why string) error {
	if o.force {
		return nil
	}
	var held []string
	for _, t := range targets {
		if t.partition.owned(now, o.expiry) {
			own := t.partition.ownership
			held = append(held, fmt.Sprintf("  %s: owner %s, renewed %s", t, own.OwnerID, ago(now, own.LastModifiedTime)))
		}
	}
	if len(held) == 0 {
		return nil
	}
	return fmt.Errorf("refusing: %d partition(s) have an owner that renewed them within --expiry %s:\n%s\n%s",
		len(held), o.expiry, strings.Join(held, "\n"), why)
}

// use is how the verb uses the file: a dry run only reads it.
func (o *editOptions) use() fileUse {
	if o.dryRun {
		return readFile
	}
	return editFile
}

// unchanged returns the condition for an edit of targets that checkNotOwned
// allowed: that no processor has claimed, renewed or released one of them
// since the file was read. Without it, a processor could take a partition
// between the check and the write and then overwrite the edit, or act on
// what the edit replaced. With --force there is none: owners are overridden
// anyway.
func (o *editOptions) unchanged(targets []target) []boltstore.Unchanged {
	if o.force {
		return nil
	}
	read := make([]boltstore.Record, 0, 2*len(targets))
	for _, t := range targets {
		// The coordinates name the partition even if it had no ownership.
		read = append(read, boltstore.Record{Namespace: t.group.Namespace, EventHub: t.group.EventHub, ConsumerGroup: t.group.ConsumerGroup, PartitionID: t.partition.id})
		if own := t.partition.ownership; own != nil {
			read = append(read, *own)
		}
	}
	return []boltstore.Unchanged{boltstore.OwnershipsAsRead(read)}
}

// ownersOverwrite is why the editing verbs refuse partitions that a live
// owner holds: the owner keeps its own view of the partition and would
// overwrite the change with its next checkpoint or claim.
const ownersOverwrite = "Their owners would overwrite the change: stop those processors first, or use --force."

// writtenTargets returns the partitions that writing records into a file
// holding groups touches, each once however many of its records are
// written, those the file has no record of included (as partitions without
// records, in groups added for them).
func writtenTargets(groups []*group, records []boltstore.Record) []target {
	byScope := make(map[boltstore.Scope]*group, len(groups))
	for _, g := range groups {
		byScope[g.Scope] = g
	}
	targets := make([]target, 0, len(records))
	seen := make(map[*partition]bool, len(records))
	for _, r := range records {
		scope := foldScope(boltstore.Scope{Namespace: r.Namespace, EventHub: r.EventHub, ConsumerGroup: r.ConsumerGroup})
		g := byScope[scope]
		if g == nil {
			g = &group{Scope: scope}
			byScope[scope] = g
		}
		p := g.partition(r.PartitionID)
		if !seen[p] {
			seen[p] = true
			targets = append(targets, target{g, p})
		}
	}
	return targets
}

// allTargets returns every partition of the groups.
func allTargets(groups []*group) []target {
	var targets []target
	for _, g := range groups {
		for _, p := range g.partitions {
			targets = append(targets, target{g, p})
		}
	}
	return targets
}

// foldScope spells a scope as the store keeps names: in lower case.
func foldScope(scope boltstore.Scope) boltstore.Scope {
	return boltstore.Scope{
		Namespace:     strings.ToLower(scope.Namespace),
		EventHub:      strings.ToLower(scope.EventHub),
		ConsumerGroup: strings.ToLower(scope.ConsumerGroup),
	}
}

// selectOptions choose the partitions that set, reset and release change.
type selectOptions struct {
	scope      boltstore.Scope
	partitions []string
	all        bool
}

func (o *selectOptions) addFlags(cmd *cobra.Command) {
	addScopeFlags(cmd, &o.scope)
	cmd.Flags().StringSliceVarP(&o.partitions, "partition", "p", nil, "partition id; repeat it or separate ids with commas")
	cmd.Flags().BoolVar(&o.all, "all", false, "every partition in scope")
}

// complete reports whether the scope names one consumer group outright.
func (o *selectOptions) complete() bool {
	return o.scope.Namespace != "" && o.scope.EventHub != "" && o.scope.ConsumerGroup != ""
}

// open opens the store file of an editing verb, for use, and resolves its
// targets from the records in scope. The caller closes the store.
func (o *selectOptions) open(ctx context.Context, a *app, path string, use fileUse, oneGroup bool) (*boltstore.Store, []target, error) {
	s, err := a.openStore(ctx, path, use)
	if err != nil {
		return nil, nil, err
	}
	records, err := s.Records(ctx, o.scope)
	if err == nil {
		var targets []target
		if targets, err = o.resolve(groupRecords(records), oneGroup); err == nil {
			return s, targets, nil
		}
	}
	s.Close()
	return nil, nil, err
}

// resolve picks the targets out of groups, the consumer groups in scope,
// for --partition or --all, which the verb has checked that it was given
// one of (exactlyOneFlag). --partition needs the scope to come down to one
// group, which a file with a single group does without flags; so does
// --all when oneGroup is set. A complete scope names its group even if the
// file does not hold it yet, so that set can write a group's first
// checkpoints.
func (o *selectOptions) resolve(groups []*group, oneGroup bool) ([]target, error) {
	var ids []string
	if !o.all {
		var err error
		if ids, err = o.partitionIDs(); err != nil {
			return nil, err
		}
	}
	if (oneGroup || !o.all) && len(groups) != 1 {
		if len(groups) == 0 && o.complete() {
			groups = []*group{{Scope: foldScope(o.scope)}}
		} else if err := oneGroupError(groups); err != nil {
			return nil, err
		}
	}
	if o.all {
		return allTargets(groups), nil
	}
	var targets []target
	for _, g := range groups {
		for _, id := range ids {
			targets = append(targets, target{g, g.partition(id)})
		}
	}
	return targets, nil
}

// partitionIDs returns the ids given with --partition, each once, in the
// order first given: "-p 1,1" changes partition 1 once.
func (o *selectOptions) partitionIDs() ([]string, error) {
	empty := usagef("--partition: the partition id is empty")
	if len(o.partitions) == 0 {
		return nil, empty // "-p ''" reads as no ids
	}
	var ids []string
	for _, id := range o.partitions {
		// "-p '0, 1'" means partitions 0 and 1: Event Hubs makes no
		// partition id that begins or ends with a space.
		if id = strings.TrimSpace(id); id == "" {
			return nil, empty
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// oneGroupError explains why the scope does not come down to one group.
func oneGroupError(groups []*group) error {
	if len(groups) == 0 {
		return errors.New("no consumer group in the file matches; give --namespace, --hub and --group")
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = "  " + g.String()
	}
	return fmt.Errorf("%d consumer groups match; narrow with --namespace, --hub and --group to one of:\n%s", len(groups), strings.Join(names, "\n"))
}
