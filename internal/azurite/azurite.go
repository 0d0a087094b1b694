// Package azurite starts and stops a private azurite-blob process (the Azure
// Storage emulator's Blob service) for tests and benchmarks.
//
// Azurite is pinned in the repository's package.json and installed into
// node_modules/ by `npm ci` (or `make deps`). Start finds the binary by
// walking up from the working directory to the module root, so it works both
// from a package directory (go test) and from the repository root (go run).
// The environment variable AZURITE_BLOB, when set, names the binary instead.
//
// Each Server listens on its own free loopback port, keeps its data in memory
// and runs in its own process group, so Close leaves nothing behind.
package azurite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Well-known credentials of Azurite's built-in development storage account.
const (
	// AccountName is the name of Azurite's development storage account.
	AccountName = "devstoreaccount1"
	// AccountKey is the shared key of Azurite's development storage account.
	// It is public and documented; it protects nothing.
	AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// EnvBinary is the environment variable that, when set, names the
// azurite-blob executable to run instead of searching node_modules/.bin.
const EnvBinary = "AZURITE_BLOB"

// InstallHint tells a person how to install the pinned Azurite.
const InstallHint = "run `npm ci` (or `make deps`) at the repository root, or set " + EnvBinary + " to an azurite-blob executable"

// ErrNotInstalled is returned (wrapped, naming what was looked for) by Start
// when the azurite-blob executable cannot be found: neither the file named by
// AZURITE_BLOB nor node_modules/.bin/azurite-blob below the module root
// exists. Test with errors.Is.
var ErrNotInstalled = errors.New("azurite-blob is not installed")

// startTimeout bounds how long Start waits for Azurite to accept connections
// when ctx has no earlier deadline. Node's start-up on a busy 2-core machine
// under -race can take several seconds.
const startTimeout = 60 * time.Second

// stopTimeout is how long Close waits after SIGTERM before sending SIGKILL.
const stopTimeout = 5 * time.Second

// Server is a running azurite-blob process. Create one with Start or
// ForTest; stop it with Close.
type Server struct {
	port int
	dir  string
	cmd  *exec.Cmd
	out  *syncBuffer

	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed

	closeOnce sync.Once
	closeErr  error
}

// Binary returns the absolute path of the azurite-blob executable that Start
// would run: the value of AZURITE_BLOB if set, otherwise node_modules/.bin/azurite-blob
// in the module root found by walking up from the working directory.
// The error wraps ErrNotInstalled when no executable is found.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%w: %s=%q: %v; %s", ErrNotInstalled, EnvBinary, p, err, InstallHint)
		}
		// Azurite runs in a temporary directory, so a relative path
		// must be made absolute here.
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("azurite: %s=%q: %w", EnvBinary, p, err)
		}
		return abs, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("azurite: working directory: %w", err)
	}
	var looked []string
	for dir := wd; ; {
		p := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
		looked = append(looked, p)
		if checkExecutable(p) == nil {
			return p, nil
		}
		if isFile(filepath.Join(dir, "go.mod")) {
			break // the module root: look no higher
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("%w: looked for %v (and %s is unset); %s", ErrNotInstalled, looked, EnvBinary, InstallHint)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p) // follows the node_modules/.bin symlink
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("not executable: %w", fs.ErrPermission)
	}
	return nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// Start runs azurite-blob on 127.0.0.1 at a free port with in-memory
// persistence and waits until it accepts connections. It gives up when ctx
// is done or after a minute, whichever is first. The returned Server must be
// closed with Close. If the executable cannot be found, the error wraps
// ErrNotInstalled.
func Start(ctx context.Context) (*Server, error) {
	return StartWith(ctx, Options{})
}

// Options change how StartWith runs Azurite.
type Options struct {
	// AccessLog keeps Azurite's per-request access log, which it writes
	// unless told --silent. Azurite as developers run it by default logs
	// every request, which makes each request about 40% slower; benchmarks
	// that compare with that setup set it. Default: false (silent).
	AccessLog bool
}

// StartWith is Start with options.
func StartWith(ctx context.Context, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	// Picking a free port and handing it to another process is racy: someone
	// else may take it in between. Azurite then exits at once, so retry.
	const attempts = 3
	for i := 1; ; i++ {
		s, err := start(ctx, bin, opts)
		if err == nil {
			return s, nil
		}
		if i == attempts || ctx.Err() != nil || !errors.Is(err, errExitedEarly) {
			return nil, err
		}
	}
}

var errExitedEarly = errors.New("azurite-blob exited before accepting connections")

func start(ctx context.Context, bin string, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("azurite: finding a free port: %w", err)
	}
	dir, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		return nil, fmt.Errorf("azurite: %w", err)
	}
	s := &Server{
		port:   port,
		dir:    dir,
		out:    &syncBuffer{max: 64 << 10},
		exited: make(chan struct{}),
	}
	args := []string{
		"--blobHost", "127.0.0.1",
		"--blobPort", strconv.Itoa(port),
		// Keep blobs and metadata in memory. Azurite refuses --location
		// together with this flag; the working directory (a private
		// temporary directory, below) takes whatever it may still write.
		"--inMemoryPersistence",
		// The Go SDK may speak a newer REST API version than this
		// Azurite release knows; let it through.
		"--skipApiVersionCheck",
		"--loose",
		// No network but loopback is reachable, and nobody needs it.
		"--disableTelemetry",
	}
	if !opts.AccessLog {
		args = append(args, "--silent")
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = dir
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	setProcessGroup(s.cmd)
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("azurite: starting %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// waitReady polls the port until it accepts a TCP connection.
func (s *Server) waitReady(ctx context.Context) error {
	addr := s.addr()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("azurite: %w (%v); output:\n%s", errExitedEarly, s.waitErr, s.out.String())
		case <-ctx.Done():
			return fmt.Errorf("azurite: waiting for %s to accept connections: %w; output:\n%s", addr, ctx.Err(), s.out.String())
		case <-tick.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the TCP port Azurite listens on at 127.0.0.1.
func (s *Server) Port() int { return s.port }

// BlobEndpoint returns the URL of the development account's Blob service,
// for example http://127.0.0.1:41234/devstoreaccount1.
func (s *Server) BlobEndpoint() string {
	return "http://" + s.addr() + "/" + AccountName
}

// ConnectionString returns a storage connection string for Azurite's
// development account at this server, usable with
// azblob.NewClientFromConnectionString and
// container.NewClientFromConnectionString.
func (s *Server) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AccountName +
		";AccountKey=" + AccountKey +
		";BlobEndpoint=" + s.BlobEndpoint() + ";"
}

// Output returns what Azurite has printed so far (at most the last 64 KiB),
// which helps when a request fails unexpectedly.
func (s *Server) Output() string { return s.out.String() }

// Close stops Azurite and every process in its process group (SIGTERM, then
// SIGKILL after a few seconds) and removes its temporary directory. It is
// safe to call more than once; later calls return the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		select {
		case <-s.exited:
			// Already gone on its own: that is unexpected.
			s.closeErr = fmt.Errorf("azurite: exited before Close (%v); output:\n%s", s.waitErr, s.out.String())
		default:
			signalGroup(s.cmd, false)
			select {
			case <-s.exited:
			case <-time.After(stopTimeout):
				signalGroup(s.cmd, true)
				<-s.exited
			}
		}
		// Children that outlived the leader would still be in the group.
		signalGroup(s.cmd, true)
		if err := os.RemoveAll(s.dir); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("azurite: %w", err)
		}
	})
	return s.closeErr
}

// syncBuffer keeps the last max bytes written to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
