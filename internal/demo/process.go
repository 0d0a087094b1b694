package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
)

// Process is a processor program running as a child process, with its
// standard output (its log) going to a file.
type Process struct {
	// ID is the processor's owner id.
	ID string
	// LogPath is the file its log goes to.
	LogPath string

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	killed  atomic.Bool  // Kill was called
	stopped atomic.Bool  // Stop was called
	stderr  bytes.Buffer // written by exec until Wait returns
	done    chan struct{}
	err     error // the process's exit, set before done is closed
}

// StartProcess runs the processor program: the command exe with args,
// followed by cfg.Args() with StopOnEOF set, so that the child stops when
// this process goes away.
func StartProcess(exe string, args []string, cfg ProcessorConfig, logPath string) (*Process, error) {
	cfg.StopOnEOF = true
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	p := &Process{ID: cfg.ID, LogPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(exe, append(slices.Clone(args), cfg.Args()...)...)
	p.cmd.Stdout = log
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("processor %s: %w", cfg.ID, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Kill ends the process at once (SIGKILL on Unix), as a crash would: it
// neither checkpoints nor relinquishes its partitions.
func (p *Process) Kill() error {
	p.killed.Store(true)
	return p.cmd.Process.Kill()
}

// Killed reports whether Kill was called.
func (p *Process) Killed() bool { return p.killed.Load() }

// Ending reports whether Kill or Stop was called, so that the process's
// exit is expected.
func (p *Process) Ending() bool { return p.killed.Load() || p.stopped.Load() }

// Stop asks the process to stop gracefully: SIGTERM on Unix, elsewhere
// the end of its standard input.
func (p *Process) Stop() error {
	p.stopped.Store(true)
	if err := terminate(p.cmd.Process); err != nil {
		return p.stdin.Close()
	}
	return nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits until the process exits or ctx ends. It returns the exit
// error, with what the process wrote to its standard error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("processor %s: %w", p.ID, ctx.Err())
	}
	if p.err != nil {
		if msg := strings.TrimSpace(p.stderr.String()); msg != "" {
			return fmt.Errorf("processor %s: %w: %s", p.ID, p.err, msg)
		}
		return fmt.Errorf("processor %s: %w", p.ID, p.err)
	}
	return nil
}
