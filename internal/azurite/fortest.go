package azurite

import (
	"errors"
	"os"
	"testing"
)

// ForTest starts Azurite for t and registers its Close with t.Cleanup.
//
// If the azurite-blob executable is not installed, ForTest skips the test
// with instructions, unless the environment variable CI is set: then it fails
// the test, because a test skipped in CI is not a test. Any other start-up
// error fails the test.
func ForTest(t testing.TB) *Server {
	t.Helper()
	s, err := Start(t.Context())
	if err != nil {
		if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
			t.Skipf("skipping: %v", err)
		}
		t.Fatalf("starting Azurite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("stopping Azurite: %v", err)
		}
	})
	return s
}
