package applets

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/aivault/aivault/applets/devhooks"
	"github.com/spf13/cobra"
)

// Version is set at link time (-X github.com/aivault/aivault/applets.Version=…).
var Version = "0.1.0-dev"

func versionString() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("aivault %s%s (%s, %s/%s, build: %s)", Version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH, devhooks.BuildKind)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the Go version and the build kind (release or devhooks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return nil
		},
	}
}
