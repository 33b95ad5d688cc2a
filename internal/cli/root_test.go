package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The command line's own parts, without a gateway; the commands against a
// running gateway are tested in caddymodule (TestCLIAdminCommands and the
// others), with the built binary.

// exitCode reads otpgate's failures, the ones already logged, and the exit
// code Caddy's command wrapper keeps in its unexported error.
func TestExitCode(t *testing.T) {
	caddyErr := caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return 3, nil })(&cobra.Command{}, nil)
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fail(exitUnreachable, "otpgate: no gateway"), exitUnreachable},
		{fmt.Errorf("wrapped: %w", fail(exitRefused, "otpgate: refused")), exitRefused},
		{&loggedError{code: 4, err: errors.New("logged")}, 4},
		{caddyErr, 3},
		{errors.New("anything else"), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d; want %d", tc.err, got, tc.want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2026-01-02T09:00:00+09:00", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{" 2026-01-02 ", time.Date(2026, 1, 2, 0, 0, 0, 0, time.Local)},
		{"24h", now.Add(-24 * time.Hour)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
	} {
		got, err := parseWhen("since", tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"yesterday", "-24h", "0s", ""} {
		_, err := parseWhen("since", bad, now)
		if err == nil || exitCode(err) != exitRefused || !strings.Contains(err.Error(), "--since") {
			t.Errorf("parseWhen(%q): %v; want a refusal naming --since", bad, err)
		}
	}
}

// readCustomers takes the bank's CSV as it comes (header, BOM, blank
// lines, spaces) and refuses a file with a wrong line or no customer.
func TestReadCustomers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := readCustomers(write("ok.csv", "\ufeffservice_id,user_id\nS001, U001\n\nS002,U101,extra\n"))
	want := []customerLine{{"S001", "U001"}, {"S002", "U101"}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("readCustomers = %v, %v; want %v", got, err, want)
	}
	got, err = readCustomers(write("noheader.csv", "\ufeffS001,U001\n"))
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]customerLine{{"S001", "U001"}}) {
		t.Errorf("readCustomers without a header = %v, %v; want S001 U001 without the BOM", got, err)
	}
	for name, tc := range map[string]struct{ text, want string }{
		"short.csv":  {"service_id,user_id\nS001,U001\nS001\n", "line 3: want service_id,user_id; nothing was changed"},
		"empty.csv":  {"S001,\n", "line 1: want service_id,user_id"},
		"header.csv": {"service_id,user_id\n", "lists no customer"},
	} {
		_, err := readCustomers(write(name, tc.text))
		if err == nil || exitCode(err) != exitRefused || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("readCustomers(%s): %v; want a refusal saying %q", name, err, tc.want)
		}
	}
	if _, err := readCustomers(filepath.Join(dir, "missing.csv")); err == nil || !strings.HasPrefix(err.Error(), "otpgate: --file: ") {
		t.Errorf("readCustomers of a missing file: %v; want a refusal naming --file", err)
	}
}

// run runs the command line in this process.
func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// version and --version print otpgate's version (Version when the build
// set it) and the Caddy and Go it is built with.
func TestVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"
	for _, arg := range []string{"version", "--version"} {
		code, out, errOut := run(arg)
		if lines := strings.Split(out, "\n"); code != 0 || errOut != "" || len(lines) != 4 || lines[0] != "otpgate v1.2.3" ||
			!strings.HasPrefix(lines[1], "Caddy ") || !strings.HasPrefix(lines[2], "go") {
			t.Errorf("%s: exit %d, stderr %q, printed %q; want otpgate v1.2.3, Caddy and Go", arg, code, errOut, out)
		}
	}
}

// Caddy's commands that would replace the binary are refused with one
// line saying why, and are not in the help.
func TestRemovedCommands(t *testing.T) {
	for name := range removedCommands {
		code, out, errOut := run(name, "github.com/x/y")
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 ||
			!strings.HasPrefix(errOut, "otpgate: "+name+" is not available: it would replace otpgate") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one line saying why", name, code, out, errOut)
		}
	}
	_, out, _ := run("help")
	for name := range removedCommands {
		if strings.Contains(out, name) {
			t.Errorf("help lists %s:\n%s", name, out)
		}
	}
}

// The help describes otpgate first and lists its commands before Caddy's.
func TestHelpOrder(t *testing.T) {
	code, out, errOut := run("help")
	own, caddys := strings.Index(out, "otpgate commands:"), strings.Index(out, "Caddy commands (as in caddy):")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "otpgate is a step-up") || own < 0 || caddys < own {
		t.Fatalf("help: exit %d, stderr %q; want otpgate described, then its commands, then Caddy's\n%s", code, errOut, out)
	}
	for _, name := range []string{"token-reset", "audit-export", "registered-import", "store", "validate", "version"} {
		if i := strings.Index(out, "\n  "+name+" "); i < own || i > caddys {
			t.Errorf("help lists %s at %d, not among otpgate's commands (%d to %d)", name, i, own, caddys)
		}
	}
	for _, name := range []string{"run", "reload", "adapt"} {
		if i := strings.Index(out, "\n  "+name+" "); i < caddys {
			t.Errorf("help lists %s at %d, not among Caddy's commands (from %d)", name, i, caddys)
		}
	}
}
