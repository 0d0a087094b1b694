package main

import (
	"fmt"
	"runtime/debug"

	"github.com/ehcheckpoints/boltstore"
	"github.com/spf13/cobra"
)

func init() { registerVerb(newVersionCmd) }

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of ehcheckpoints",
		Long: `version prints the version of the boltstore module this ehcheckpoints was
built from ("(devel)" when built from a checkout without a version), the
commit if the build recorded it, the Go release it was built with, and the
store file format it writes. --version prints the same.`,
		Example: `  ehcheckpoints version
  ehcheckpoints --version`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(a.stdout, version())
			return err
		},
	}
}

// version describes this build of the command from what Go recorded in
// the executable, so it needs no version number kept by hand.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "ehcheckpoints (unknown version: built without module information)"
	}
	v := "ehcheckpoints " + info.Main.Version
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision != "" {
		v += ", commit " + revision
		if modified == "true" {
			v += " with local changes"
		}
	}
	return fmt.Sprintf("%s, %s, writes store format %d", v, info.GoVersion, boltstore.FormatVersion)
}
