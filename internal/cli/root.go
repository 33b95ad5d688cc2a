// Package cli is otpgate's command line: Caddy's, as otpgate's own. The
// bank's commands come first in the help, Caddy's after them (run, reload,
// adapt … work as in caddy); version names otpgate and the Caddy it is
// built on; Caddy's upgrade, add-package and remove-package are left out,
// since they would replace the binary with a stock Caddy without otpgate;
// validate checks a configuration without opening its stores, so it works
// beside the running gateway.
//
// otpgate's commands register with Caddy's command registry in init, as
// Caddy's own do; NewRootCommand builds the command line from that
// registry, so a command registered elsewhere (cmd/otpgate's demo) is in it
// too.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/otpgate/otpgate/internal/app"
	"github.com/spf13/cobra"
)

// removedCommands are Caddy's commands otpgate does not offer, with why.
var removedCommands = map[string]string{
	"upgrade":        "it would replace otpgate with a stock Caddy downloaded from caddyserver.com, without otpgate",
	"add-package":    "it would replace otpgate with a Caddy downloaded from caddyserver.com, without otpgate",
	"remove-package": "it would replace otpgate with a Caddy downloaded from caddyserver.com, without otpgate",
}

// otpgateCommands are the commands listed first, as otpgate's.
var otpgateCommands = []string{"demo", "token-status", "token-list", "token-reset", "token-unlock", "require-otp",
	"token-rekey", "held-list", "audit", "audit-export", "registered-import", "store", "validate", "version"}

const rootLong = `otpgate is a step-up one-time-password gateway for legacy web banking. It
stands in front of the bank's site (reverse_proxy) and lets ordinary traffic
through, but holds the operations that move money or change security
settings — transfers, bill payments, bulk and payroll transfers, token
management, changes of registration — until the customer confirms each with
a code from the token app on their phone, then releases exactly that request,
once.

The bank's operators use the commands below against the running gateway (its
admin endpoint): a customer's token state, unlocking and resetting tokens
(one customer, or a CSV file of them), the operations waiting for a code, and
the audit trail. Tables are in your local time; --json prints JSON.

  otpgate demo                         walk the whole flow in a browser
  otpgate run --config Caddyfile       run the gateway
  otpgate token-status --service S001 --user U001
  otpgate token-reset --service S001 --user U001 --by yamada
  otpgate audit --service S001 --user U001

otpgate is built on Caddy: every Caddy command (run, start, stop, reload,
adapt, fmt, list-modules …) works as it does in caddy, and the Caddyfile is
Caddy's, with the otpgate directive and global option (see the README).`

// NewRootCommand returns otpgate's command line.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "otpgate",
		Short:         "Step-up OTP gateway for legacy web banking, built on Caddy",
		Long:          rootLong,
		Version:       versionText(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}")
	root.AddGroup(&cobra.Group{ID: "otpgate", Title: "otpgate commands:"},
		&cobra.Group{ID: "caddy", Title: "Caddy commands (as in caddy):"})
	root.SetHelpCommandGroupID("caddy")
	root.SetCompletionCommandGroupID("caddy")
	for name, c := range caddycmd.Commands() {
		if _, removed := removedCommands[name]; removed || name == "version" {
			continue
		}
		cmd := cobraCommand(c)
		cmd.GroupID = "caddy"
		if slices.Contains(otpgateCommands, name) {
			cmd.GroupID = "otpgate"
		}
		if name == "validate" {
			checkOnly(cmd)
		}
		root.AddCommand(cmd)
	}
	root.AddCommand(versionCommand())
	return root
}

// cobraCommand is c as a cobra command, as Caddy makes it; its usage line
// names otpgate, since cobra writes the root's name before it.
func cobraCommand(c caddycmd.Command) *cobra.Command {
	cmd := &cobra.Command{Use: c.Name + " " + c.Usage, Short: c.Short, Long: strings.TrimSpace(c.Long)}
	if c.CobraFunc != nil {
		c.CobraFunc(cmd)
	} else {
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(c.Func)
		cmd.Flags().AddGoFlagSet(c.Flags)
	}
	logged(cmd)
	return cmd
}

// logged marks the errors of cmd and its subcommands that Caddy's command
// wrapper has already logged (it silences cobra's report of them), so that
// Run does not report them twice.
func logged(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		logged(sub)
	}
	run := cmd.RunE
	if run == nil {
		return
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		err := run(c, args)
		if err != nil && c.SilenceErrors {
			return &loggedError{code: exitCode(err), err: err}
		}
		return err
	}
}

// loggedError is an error a command has reported itself.
type loggedError struct {
	code int
	err  error
}

func (e *loggedError) Error() string { return e.err.Error() }

// checkOnly makes validate check the configuration without opening its
// stores: it neither waits for the lock the running gateway holds nor
// creates a database file.
func checkOnly(cmd *cobra.Command) {
	run := cmd.RunE
	cmd.Long = strings.TrimSpace(cmd.Long) + "\n\nThe otpgate stores are not opened: validate works beside the running gateway, and\n" +
		"creates no database file. Keys, mail settings and rules are checked as at load."
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return app.CheckOnly(func() error { return run(cmd, args) })
	}
}

// Run runs otpgate's command line with args (without the program name),
// writing to stdout and stderr, and returns the exit code. A failure is
// one line on stderr, "otpgate: " and what went wrong.
func Run(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if len(args) > 0 {
		if why, ok := removedCommands[args[0]]; ok {
			fmt.Fprintf(stderr, "otpgate: %s is not available: %s; build a new otpgate instead (see the README)\n", args[0], why)
			return caddy.ExitCodeFailedStartup
		}
	}
	err := root.Execute()
	if err == nil {
		return 0
	}
	code := exitCode(err)
	if le := (*loggedError)(nil); !errors.As(err, &le) {
		msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
		if !strings.HasPrefix(msg, "otpgate: ") {
			msg = "otpgate: " + msg
		}
		fmt.Fprintln(stderr, msg)
	}
	return code
}

// Main runs otpgate's command line and exits with its code.
func Main() {
	os.Exit(Run(os.Args[1:], os.Stdout, os.Stderr))
}

// cliError is a failure of an otpgate command, with its exit code.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// fail is err as a failure with exit code code.
func fail(code int, format string, args ...any) error {
	return &cliError{code: code, err: fmt.Errorf(format, args...)}
}

// exitCode is the exit code err carries: an otpgate command's, or the
// one Caddy's command wrapper keeps in its unexported error (read by its
// exported ExitCode field), else 1.
func exitCode(err error) int {
	var ce *cliError
	var le *loggedError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &le):
		return le.code
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("ExitCode"); f.IsValid() && f.Kind() == reflect.Int {
			return int(f.Int())
		}
	}
	return 1
}
