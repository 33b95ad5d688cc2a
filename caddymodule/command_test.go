package caddymodule

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// cli runs otpgate's command line, the built binary (buildOtpgate),
// against the gateway under test and returns its exit code, standard
// output and error. It runs in a child process since the command line
// (internal/cli) imports this package.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	bin, err := buildOtpgate()
	if err != nil {
		t.Fatal(err)
	}
	if len(args) > 0 && !slices.Contains([]string{"version", "--version", "help", "upgrade", "add-package", "validate"}, args[0]) &&
		!slices.Contains(args, "--address") {
		args = append(args, "--address", fmt.Sprintf("localhost:%d", adminPort))
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("otpgate %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// wantFailure checks a failed command: its exit code and one line on
// standard error saying what.
func wantFailure(t *testing.T, what string, code int, stderr string, wantCode int, wantText string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != wantCode || len(lines) != 1 || !strings.HasPrefix(lines[0], "otpgate: ") || !strings.Contains(stderr, wantText) {
		t.Errorf("%s: exit %d, stderr %q; want exit %d and one line saying %q", what, code, stderr, wantCode, wantText)
	}
}

// A lost phone, by the command line alone: the locked customer is seen
// locked, the bank resets the token, the customer enrols again, and the
// audit trail of that customer shows every step with who, when and from
// where, as a table and as an export.
func TestCLILostPhone(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	for range 5 {
		gwConfirmForm(c, id, c.wrongCode(), nil)
	}

	code, out, errOut := cli(t, "token-status", "--service", "S001", "--user", "U001")
	if code != 0 || !strings.Contains(out, "active") || !strings.Contains(out, "yes, since ") || errOut != "" {
		t.Fatalf("token-status of the locked customer: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = cli(t, "token-reset", "--service", "S001", "--user", "U001", "--by", "yamada")
	if code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("token-reset: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = cli(t, "token-status", "--service", "S001", "--user", "U001", "--json")
	var st struct {
		State  string `json:"state"`
		Locked bool   `json:"locked"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != "none" || st.Locked {
		t.Fatalf("token-status after the reset: %d %s; want state none, unlocked", code, out)
	}
	if strings.Contains(out, "0001-01-01") {
		t.Errorf("--json shows unset times as zero times: %s", out)
	}

	c.enrol() // the new phone
	id = gwPause(c, "/transfer/execute", gwTransfer)
	if res, body, _ := gwConfirmForm(c, id, c.code(), nil); res.StatusCode != 200 {
		t.Fatalf("a transfer with the new phone: %d\n%s", res.StatusCode, body)
	}

	code, out, errOut = cli(t, "audit", "--service", "S001", "--user", "U001", "--json")
	if code != 0 {
		t.Fatalf("audit --user: %d %s", code, errOut)
	}
	var events []audit.Event
	var reset audit.Record
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.Time.IsZero() || r.ClientIP == "" || r.Actor == "" {
			t.Errorf("%s: time %v, from %q, by %q; want who, when and from where", r.Event, r.Time, r.ClientIP, r.Actor)
		}
		events = append(events, r.Event)
		if r.Event == audit.Reset {
			reset = r
		}
	}
	want := []audit.Event{audit.Login, audit.Issued, audit.SetupDone, audit.CodeOK, audit.Activated, audit.Challenge,
		audit.CodeInvalid, audit.CodeInvalid, audit.CodeInvalid, audit.CodeInvalid, audit.CodeInvalid, audit.Locked,
		audit.Reset, audit.Issued, audit.SetupDone, audit.CodeOK, audit.Activated, audit.Challenge, audit.CodeOK, audit.Released}
	if !slices.Equal(events, want) {
		t.Errorf("the customer's history %v;\nwant %v", events, want)
	}
	if reset.Actor != "admin:yamada" || reset.ClientIP != "127.0.0.1" {
		t.Errorf("the reset by %q from %q; want admin:yamada from 127.0.0.1", reset.Actor, reset.ClientIP)
	}

	// The table, in local time, and the export for the examiner.
	code, out, _ = cli(t, "audit", "--service", "S001", "--user", "U001")
	if code != 0 || !strings.Contains(out, "token_reset") || !strings.Contains(out, "admin:yamada") ||
		!strings.Contains(out, time.Now().Format("MST")) || !strings.Contains(out, fmt.Sprintf("%d records", len(want))) {
		t.Errorf("audit table: %d\n%s", code, out)
	}
	code, out, _ = cli(t, "audit-export", "--user", "U001", "--format", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(rows) != len(want)+1 || rows[13][1] != "token_reset" || rows[13][6] != "admin:yamada" || rows[13][4] != "127.0.0.1" {
		t.Errorf("audit-export as CSV: %d %v\n%s", code, err, out)
	}
}

// Every administration command against a running gateway: what it prints
// as a table and with --json, and its exit status and one-line error when
// it fails.
func TestCLIAdminCommands(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	gwPause(c, "/transfer/execute", gwTransfer)
	batch := filepath.Join(t.TempDir(), "customers.csv")
	if err := os.WriteFile(batch, []byte("service_id,user_id\nS001,U001\nS001,U404\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("S001\n"), 0o600)

	for _, tc := range []struct {
		args     []string
		code     int
		stdout   string // in standard output
		stderr   string // in the one line of standard error
		jsonLine bool   // standard output is JSON (a value, or one a line)
	}{
		{[]string{"token-status", "--service", "S001", "--user", "U001"}, 0, "Mail address", "", false},
		{[]string{"token-status", "--service", "S001", "--user", "U001", "--json"}, 0, `"state": "active"`, "", true},
		{[]string{"token-status", "--service", "S001", "--user", "U404"}, 1, "none", "has no token and never had one", false},
		{[]string{"token-status", "--service", "S001"}, 1, "", "--user is required", false},
		{[]string{"token-list"}, 0, "1 tokens", "", false},
		{[]string{"token-list", "--service", "S001", "--json"}, 0, `"user": "U001"`, "", true},
		{[]string{"held-list", "--service", "S001"}, 0, "transfer", "", false},
		{[]string{"held-list", "--service", "S001", "--user", "U001", "--json"}, 0, `"kind":"transfer"`, "", true},
		{[]string{"held-list", "--user", "U001"}, 1, "", "user needs service", false},
		{[]string{"audit", "--user", "U001", "--last", "3"}, 0, "the last 3 of", "", false},
		{[]string{"audit", "--event", "challenge", "--json"}, 0, `"event":"challenge"`, "", true},
		{[]string{"audit", "--event", "lock"}, 1, "", "no such audit event", false},
		{[]string{"audit", "--since", "yesterday"}, 1, "", "want an RFC 3339 time", false},
		{[]string{"audit-export", "--since", "1h"}, 0, `"event":"session_bound"`, "", true},
		{[]string{"audit-export", "--format", "xml"}, 1, "", "want jsonl or csv", false},
		{[]string{"token-unlock", "--service", "S001", "--user", "U404", "--by", "yamada"}, 1, "FAILED", "no token record", false},
		{[]string{"token-unlock", "--service", "S001", "--user", "U001"}, 1, "", "--by is required", false},
		{[]string{"token-unlock", "--file", batch, "--by", "yamada", "--json"}, 1, `"ok":true`, "1 of 2 customers not unlocked", true},
		{[]string{"token-unlock", "--file", bad, "--by", "yamada"}, 1, "", "line 1: want service_id,user_id; nothing was changed", false},
		{[]string{"token-reset", "--file", batch, "--by", "yamada"}, 0, "done", "", false},
		{[]string{"require-otp", "--service", "S002", "--by", "yamada"}, 0, "now requires OTP", "", false},
		{[]string{"require-otp", "--service", "S003", "--by", "yamada", "--json"}, 0, `"status":"ok"`, "", true},
		{[]string{"token-rekey", "--by", "yamada"}, 0, "secrets re-sealed", "", false},
		{[]string{"token-rekey"}, 1, "", "--by is required", false},
		{[]string{"token-list", "--address", "localhost:1"}, 2, "", "no gateway answered at localhost:1", false},
		{[]string{"version"}, 0, "\nCaddy ", "", false},
		{[]string{"--version"}, 0, "\nCaddy ", "", false},
		{[]string{"upgrade"}, 1, "", "upgrade is not available", false},
		{[]string{"add-package", "github.com/x/y"}, 1, "", "add-package is not available", false},
		{[]string{"token-list", "extra"}, 1, "", "unknown command", false},
	} {
		code, out, errOut := cli(t, tc.args...)
		what := strings.Join(tc.args, " ")
		if tc.stderr != "" {
			wantFailure(t, what, code, errOut, tc.code, tc.stderr)
		} else if code != tc.code || errOut != "" {
			t.Errorf("%s: exit %d, stderr %q; want %d and nothing on stderr", what, code, errOut, tc.code)
		}
		if !strings.Contains(out, tc.stdout) {
			t.Errorf("%s: stdout %q; want %q in it", what, out, tc.stdout)
		}
		if tc.jsonLine {
			dec := json.NewDecoder(strings.NewReader(out))
			for dec.More() {
				var v any
				if err := dec.Decode(&v); err != nil {
					t.Errorf("%s: --json output is not JSON: %v\n%s", what, err, out)
					break
				}
			}
		}
	}
	if code, out, _ := cli(t, "help"); code != 0 || !strings.HasPrefix(out, "otpgate is a step-up") ||
		strings.Index(out, "token-reset") > strings.Index(out, "reverse-proxy") || strings.Contains(out, "upgrade") {
		t.Errorf("help: %d; want otpgate described first, its commands before Caddy's, no upgrade\n%s", code, out)
	}
}

// validate checks a configuration beside the running gateway: it does
// not wait for the database lock the gateway holds, and creates no
// database file where there is none.
func TestCLIValidateBesideRunningGateway(t *testing.T) {
	e := newEnv(t, envOptions{})
	dir := t.TempDir()
	same := filepath.Join(dir, "same.caddyfile")
	if err := os.WriteFile(same, []byte(e.caddyfile(envOptions{})), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(dir, "elsewhere.caddyfile")
	newDB := filepath.Join(dir, "new", "otpgate.db")
	os.MkdirAll(filepath.Dir(newDB), 0o700)
	cfg := strings.Replace(e.caddyfile(envOptions{}), filepath.Join(e.dir, "otpgate.db"), newDB, 1)
	if err := os.WriteFile(elsewhere, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.caddyfile")
	os.WriteFile(broken, []byte(strings.Replace(e.caddyfile(envOptions{}), "require_otp all", "require_otp all\n\t\taudit_retention 1h", 1)), 0o600)

	for _, tc := range []struct {
		file string
		code int
	}{{same, 0}, {elsewhere, 0}, {broken, 1}} {
		start := time.Now()
		code, _, _ := cli(t, "validate", "--config", tc.file, "--adapter", "caddyfile")
		if code != tc.code || time.Since(start) > 15*time.Second {
			t.Errorf("validate %s: exit %d after %v; want %d at once", filepath.Base(tc.file), code, time.Since(start), tc.code)
		}
	}
	if _, err := os.Stat(newDB); !os.IsNotExist(err) {
		t.Errorf("validate created %s (%v)", newDB, err)
	}
	// The running gateway still serves from its store.
	if code, out, _ := cli(t, "token-list"); code != 0 || !strings.Contains(out, "0 tokens") {
		t.Errorf("token-list after validate: %d\n%s", code, out)
	}
}

// The worker links settled records into the chain; "otpgate audit verify"
// then finds the trail intact, and a record changed in the store
// afterwards is reported with exit status 1.
func TestCLIAuditVerify(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	gwPause(c, "/transfer/execute", gwTransfer)
	e.clock.Advance(2 * app.ChainSettle)
	st := e.gw().shared
	st.ChainAudit(context.Background())

	code, out, errOut := cli(t, "audit", "verify")
	if code != 0 || !strings.Contains(out, "linked and verified, 0 not linked yet") || !strings.Contains(out, "Head: ") {
		t.Fatalf("audit verify of an intact trail: %d %s%s", code, out, errOut)
	}
	var key string
	err := st.Store.Update(context.Background(), func(tx store.Tx) error {
		page, _, err := st.Store.Scan(context.Background(), store.Audit, "", 1)
		if err != nil || len(page) != 1 {
			return fmt.Errorf("no first record: %v", err)
		}
		key = page[0].Key
		return tx.Put(store.Audit, key, bytes.Replace(page[0].Value, []byte("U001"), []byte("U999"), 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = cli(t, "audit", "verify", "--json")
	var rep struct {
		OK       bool            `json:"ok"`
		Problems []audit.Problem `json:"problems"`
	}
	if json.Unmarshal([]byte(out), &rep) != nil || rep.OK || len(rep.Problems) != 1 || rep.Problems[0].Key != key ||
		!strings.HasPrefix(rep.Problems[0].What, "changed") {
		t.Errorf("audit verify --json after a record was changed: %s", out)
	}
	wantFailure(t, "audit verify after tampering", code, errOut, 1, "does not hold at 1 places")
}
