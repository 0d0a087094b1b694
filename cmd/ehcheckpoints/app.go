package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

// Exit codes of the command.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitInterrupted is the shells' status for a command that SIGINT
	// (Ctrl-C) ended, 128 plus the signal's number; SIGTERM gives 143
	// (exitSignal).
	exitInterrupted = 130
)

// exitSignal is the status for a verb that sig stopped: 128 plus its
// number, as shells and supervisors expect.
func exitSignal(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitInterrupted
}

// stoppedBy is the cause of the context of a verb that a signal stopped.
type stoppedBy struct{ os.Signal }

func (s stoppedBy) Error() string { return "stopped by " + s.String() }

// withSignals returns a context that SIGINT and SIGTERM cancel, with the
// signal as its cause (stoppedBy), and the function that stops listening.
func withSignals() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals, done := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-signals:
			cancel(stoppedBy{sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(done)
		cancel(nil)
	}
}

// app is what a verb may use of its surroundings. Verbs write through it,
// never to os.Stdout or os.Stderr, so that run can be driven with buffers.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// now is the clock that ages and expiry are measured against.
	now func() time.Time
	// lockTimeout bounds the wait for a file another process holds
	// (--lock-timeout).
	lockTimeout time.Duration
}

// verbs holds the constructors registered by the verb files' init
// functions, in registration order.
var verbs []func(*app) *cobra.Command

// registerVerb adds a verb to the command. Each verb file calls it from
// init, so adding a verb means adding a file and touching nothing else.
func registerVerb(newCmd func(*app) *cobra.Command) {
	verbs = append(verbs, newCmd)
}

// canRedraw reports whether w is a terminal that takes escape codes, where
// the demo and watch redraw their screen in place. Into a pipe or a file
// they append instead, so that what they write reads as a log.
func canRedraw(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// envNow names the environment variable that, when set to an RFC 3339 time,
// fixes the clock ages are measured against. Tests use it to compare whole
// tables with golden files; nobody else needs it.
const envNow = "EHCHECKPOINTS_NOW"

// usageError marks an error as the user's mistake in calling the command,
// which exits with exitUsage instead of exitError.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// run executes the command line args and returns the exit code: exitOK,
// exitError when the verb failed, exitUsage when the command line was
// wrong, or exitSignal's status when SIGINT or SIGTERM, which cancel the
// verb's context, made it fail.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now, lockTimeout: defaultLockTimeout}
	if v := os.Getenv(envNow); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			fmt.Fprintf(stderr, "ehcheckpoints: %s: %v\n", envNow, err)
			return exitUsage
		}
		a.now = func() time.Time { return t }
	}

	// Cobra validates flags and arguments before it runs PersistentPreRun,
	// so an error from a command that never got that far is a usage error.
	started := false
	root := &cobra.Command{
		Use:   "ehcheckpoints",
		Short: "Inspect and repair the checkpoint store of Event Hubs processors",
		Long: `ehcheckpoints reads and edits a boltstore checkpoint file: the ownerships
and checkpoints that Azure Event Hubs processors share. Every verb works on
a file that running processors hold open; they hand it over in milliseconds.
A verb that has waited a second for a file says so on stderr, and gives up
after --lock-timeout.

Exit status: 0 on success, also when there was nothing to change (stderr
says so, and a cleanup script can run again); 1 when the verb failed; 2 for
a mistake in the command line; 128 plus the signal's number when a signal
stopped the verb before it finished: 130 for Ctrl-C (SIGINT), 143 for
SIGTERM (watch, which runs until it is stopped, exits 0).`,
		Args:          cobra.NoArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(*cobra.Command, []string) {
			started = true
		},
		RunE: func(*cobra.Command, []string) error {
			return usagef("no verb given")
		},
		Version: version(),
	}
	root.PersistentFlags().Var((*positiveDuration)(&a.lockTimeout), "lock-timeout", "how long to wait for a file that another process holds (processors hand it over in milliseconds)")
	// Defined here, without cobra's -v, which many commands use for verbose.
	root.Flags().Bool("version", false, "print the version and exit (as the version verb)")
	root.SetVersionTemplate("{{.Version}}\n")
	// cobra's own help verb prints the root help for a topic it does not
	// know and exits 0; an unknown verb is a usage error everywhere else.
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [VERB]",
		Short: "Help about any verb",
		RunE: func(_ *cobra.Command, topic []string) error {
			cmd, rest, err := root.Find(topic)
			if err != nil || len(rest) > 0 {
				return usagef("unknown help topic %q", strings.Join(topic, " "))
			}
			// As cobra's help verb does, so that the help lists them.
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		},
	})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	for _, newCmd := range verbs {
		root.AddCommand(newCmd(a))
	}

	ctx, stop := withSignals()
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "ehcheckpoints: %v\n", err)
	if errors.Is(err, boltstore.ErrChanged) {
		fmt.Fprintln(stderr, "A processor took, renewed or released the partition while the command ran, so nothing was changed. Run 'show' and try again.")
	}
	if stopped := (stoppedBy{}); errors.As(context.Cause(ctx), &stopped) {
		return exitSignal(stopped.Signal)
	}
	var usage usageError
	if !started || errors.As(err, &usage) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// exactlyOneFlag returns a usage error unless exactly one of the flags
// names was given, for a verb that takes several ways to say one thing
// (--partition or --all). A bool flag given as false counts as not given.
func exactlyOneFlag(cmd *cobra.Command, names ...string) error {
	flags := make([]string, len(names))
	given := 0
	for i, name := range names {
		flags[i] = "--" + name
		if f := cmd.Flags().Lookup(name); f.Changed && f.Value.String() != "false" {
			given++
		}
	}
	last := len(flags) - 1
	switch {
	case given == 0:
		return usagef("give %s or %s", strings.Join(flags[:last], ", "), flags[last])
	case given > 1:
		return usagef("%s and %s exclude each other; give one", strings.Join(flags[:last], ", "), flags[last])
	}
	return nil
}

// exactArgs is cobra.ExactArgs with a message that names the arguments the
// verb wants, for example exactArgs("FILE", "DEST").
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return fmt.Errorf("%s takes %s, got %d argument(s)", cmd.Name(), strings.Join(names, " and "), len(args))
		}
		return nil
	}
}
