package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
)

// Version is otpgate's version, set at build time
// (-ldflags "-X github.com/otpgate/otpgate/internal/cli.Version=v1.2.3");
// when unset, the module version and VCS revision Go recorded.
var Version string

// versionCommand prints otpgate's version and the Caddy and Go it is
// built with.
func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print otpgate's version and the Caddy it is built on",
		Args:    cobra.NoArgs,
		GroupID: "otpgate",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), versionText())
		},
	}
}

// versionText is what version and --version print.
func versionText() string {
	_, caddyVersion := caddy.Version()
	return fmt.Sprintf("otpgate %s\nCaddy %s\n%s %s/%s\n", otpgateVersion(), caddyVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// otpgateVersion is Version, or what Go recorded of the build.
func otpgateVersion() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if v == "(devel)" && rev != "" {
		v = "devel " + rev[:min(12, len(rev))] + modified
	}
	return v
}
