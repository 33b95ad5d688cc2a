package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The bank's administration commands. Like "caddy reload" they talk to the
// running gateway's admin API: the running process holds the store.
//
// Each prints a table in the operator's local time, or JSON with --json,
// and exits 0 when it did what was asked; otherwise it prints one line,
// "otpgate: " and what went wrong, and exits with exitRefused (the gateway
// refused: a bad or unknown customer, a missing flag) or exitUnreachable
// (no gateway answered at the admin address).
const (
	exitRefused     = 1
	exitUnreachable = 2
)

// adminCommand describes one administration command.
type adminCommand struct {
	name, usage, short, long string
	// flags adds the command's own flags.
	flags func(*pflag.FlagSet)
	// run does the command with the gateway's admin API.
	run func(cmd *cobra.Command, a *adminClient) error
}

func init() {
	for _, c := range []adminCommand{
		{
			name: "token-status", usage: "--service <id> --user <id> [--json]",
			short: "Show one customer's token: state, expiry, lock, mail address",
			long: "Shows the state of one customer's token (none, issued, initialised, active, expired, revoked),\n" +
				"its dates, whether the customer is locked and after how many wrong codes, the masked mail\n" +
				"address, and whether the customer's service requires OTP. A customer the gateway knows nothing\n" +
				"of (never issued a token) is reported as such, with exit status 1.",
			flags: func(f *pflag.FlagSet) { customerFlags(f, "the customer") },
			run:   runTokenStatus,
		},
		{
			name: "token-list", usage: "[--service <id>] [--json]",
			short: "List the customers' tokens, of every service or of one",
			long:  "Lists every customer with a token record (never the secret or PIN), or those of one service.",
			flags: func(f *pflag.FlagSet) { f.String("service", "", "only the customers of this service (company) ID") },
			run:   runTokenList,
		},
		{
			name: "token-reset", usage: "--service <id> --user <id> --by <administrator> | --file <customers.csv> --by <administrator> [--json]",
			short: "Reset lost tokens (revoke and unlock), one customer or a CSV file of them",
			long: "For a customer who lost or changed their phone without revoking the token: the token is revoked\n" +
				"and the customer unlocked, so that they can issue a new one (STEP 1-3). The customer is told by\n" +
				"mail; the audit trail names the administrator and the address the command ran from.\n\n" +
				"--file resets every customer of a CSV file (service_id,user_id; a header line is allowed), for the\n" +
				"bank's paper procedure: each line is reset on its own, the result of each is printed, and the exit\n" +
				"status is 1 if any failed.",
			flags: batchFlags,
			run:   func(cmd *cobra.Command, a *adminClient) error { return runChange(cmd, a, "reset", "/otpgate/reset") },
		},
		{
			name: "token-unlock", usage: "--service <id> --user <id> --by <administrator> | --file <customers.csv> --by <administrator> [--json]",
			short: "Unlock customers locked by wrong codes, one or a CSV file of them",
			long: "Clears the lock and the failure count once the bank has verified the customer. Audited and mailed.\n" +
				"A customer the gateway has no token for is refused (exit status 1).\n\n" +
				"--file unlocks every customer of a CSV file (service_id,user_id; a header line is allowed); the\n" +
				"result of each is printed, and the exit status is 1 if any failed.",
			flags: batchFlags,
			run:   func(cmd *cobra.Command, a *adminClient) error { return runChange(cmd, a, "unlock", "/otpgate/unlock") },
		},
		{
			name: "require-otp", usage: "--service <id> --by <administrator> [--json]",
			short: "Require OTP for every user of a service (company)",
			long: "Switches OTP on for a company: from now on its users without an active token are sent to enrolment\n" +
				"on protected operations. Audited.",
			flags: func(f *pflag.FlagSet) {
				f.String("service", "", "the service (company) ID")
				f.String("by", "", "the administrator's name, for the audit trail (required)")
			},
			run: runRequireOTP,
		},
		{
			name: "token-rekey", usage: "--by <administrator> [--json]",
			short: "Re-seal every TOTP secret under the current key",
			long: "After a key rotation (a new secret_key, the old one in retired_keys): seals every secret again under\n" +
				"the new key, so that the old key can be removed from the configuration. Audited.",
			flags: func(f *pflag.FlagSet) { f.String("by", "", "the administrator's name, for the audit trail (required)") },
			run:   runRekey,
		},
		{
			name: "held-list", usage: "[--service <id> [--user <id>]] [--json]",
			short: "List the operations waiting for a customer's code",
			long: "Lists the held operations waiting for a code: when each expires, its kind and rule, and the digest\n" +
				"of the request (never the request itself, which is sealed). \"Did my transfer need a code?\"",
			flags: func(f *pflag.FlagSet) {
				f.String("service", "", "only the operations of this service (company) ID")
				f.String("user", "", "only the operations of this user ID (with --service)")
			},
			run: runHeldList,
		},
		{
			name: "audit", usage: "[--service <id>] [--user <id>] [--event <event>]... [--since <time>] [--until <time>] [--last <n>] [--json]",
			short: "Show the audit trail: one customer's recent history, or any selection",
			long: "Shows audit records, oldest first, in your local time: who (service, user, actor), what (event,\n" +
				"operation kind, rule, detail) and from where (client address). By default the last 100 records of\n" +
				"the past 30 days that match. --json prints each record as a JSON line.\n\n" +
				"Times are RFC 3339 (2026-01-02T09:00:00+09:00), a day (2026-01-02, from local midnight), or a\n" +
				"duration back from now (24h, 7d).",
			flags: auditFlags,
			run:   runAudit,
		},
		{
			name: "audit-export", usage: "[--service <id>] [--user <id>] [--event <event>]... [--since <time>] [--until <time>] [--format jsonl|csv] [--out <file>]",
			short: "Export the audit trail for an examiner, as JSON lines or CSV",
			long: "Writes every audit record that matches, oldest first, as JSON lines (the default) or CSV (one header\n" +
				"row, times in UTC), to standard output or --out. The gateway reads its trail a page at a time: a\n" +
				"large export does not hold up customers.\n\n" +
				"Times are RFC 3339, a day (2026-01-02) or a duration back from now (24h, 7d).",
			flags: func(f *pflag.FlagSet) {
				filterFlags(f)
				f.String("format", "jsonl", "jsonl (one JSON object a line) or csv")
				f.String("out", "", "write to this file instead of standard output")
			},
			run: runAuditExport,
		},
	} {
		registerAdmin(c)
	}
}

// registerAdmin registers c with Caddy's command registry, which otpgate's
// command line (root.go) is built from.
func registerAdmin(c adminCommand) {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  c.name,
		Usage: c.usage,
		Short: c.short,
		Long:  c.long,
		CobraFunc: func(cmd *cobra.Command) {
			setUpAdmin(cmd, c)
			if c.name == "audit" {
				verify := &cobra.Command{Use: "verify [--json]", Short: auditVerify.short, Long: auditVerify.long}
				setUpAdmin(verify, auditVerify)
				cmd.AddCommand(verify)
			}
		},
	})
}

// setUpAdmin gives cmd c's flags, the flags that find the gateway, and c's
// run.
func setUpAdmin(cmd *cobra.Command, c adminCommand) {
	f := cmd.Flags()
	c.flags(f)
	f.StringP("config", "c", "", "the gateway's configuration file, to find its admin address")
	f.StringP("adapter", "a", "", "the adapter of --config (caddyfile by default for a Caddyfile)")
	f.String("address", "", "the gateway's admin address (default: from --config, else localhost:2019)")
	f.String("db", "", "the store, when the gateway has several: a bbolt database's absolute path")
	if f.Lookup("json") == nil && c.name != "audit-export" {
		f.Bool("json", false, "print JSON instead of a table")
	}
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		a, err := newAdminClient(cmd)
		if err != nil {
			return err
		}
		return c.run(cmd, a)
	}
}

func customerFlags(f *pflag.FlagSet, who string) {
	f.String("service", "", "the service (company) ID of "+who)
	f.String("user", "", "the user ID of "+who+" within the service")
}

func batchFlags(f *pflag.FlagSet) {
	customerFlags(f, "the customer")
	f.String("by", "", "the administrator's name, for the audit trail (required)")
	f.String("file", "", "a CSV file of customers (service_id,user_id), instead of --service and --user")
}

// adminClient sends requests to the running gateway's admin API.
type adminClient struct {
	addr string
	db   string
	json bool
	out  io.Writer
}

func newAdminClient(cmd *cobra.Command) (*adminClient, error) {
	f := cmd.Flags()
	address, _ := f.GetString("address")
	config, _ := f.GetString("config")
	adapter, _ := f.GetString("adapter")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, config, adapter)
	if err != nil {
		return nil, fail(exitRefused, "otpgate: cannot tell the gateway's admin address: %v", err)
	}
	a := &adminClient{addr: addr, out: cmd.OutOrStdout()}
	a.db, _ = f.GetString("db")
	a.json, _ = f.GetBool("json")
	return a, nil
}

// apiError matches the error AdminAPIRequest makes of a refusal.
var apiError = regexp.MustCompile(`(?s)^caddy responded with error: HTTP (\d+): (.*)$`)

// csvFile is a request body sent as the CSV file it is, not as JSON.
type csvFile []byte

// do sends a request and returns the answer's body, or the gateway's
// refusal as one line.
func (a *adminClient) do(method, path string, q url.Values, body any) (http.Header, []byte, error) {
	if a.db != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("db", a.db)
	}
	uri := path
	if len(q) > 0 {
		uri += "?" + q.Encode()
	}
	var rd io.Reader
	var header http.Header
	switch body := body.(type) {
	case nil:
	case csvFile:
		rd, header = bytes.NewReader(body), http.Header{"Content-Type": {"text/csv; charset=utf-8"}}
	default:
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd, header = bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}}
	}
	res, err := caddycmd.AdminAPIRequest(a.addr, method, uri, header, rd)
	if err != nil {
		return nil, nil, adminFailure(a.addr, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, fail(exitUnreachable, "otpgate: reading the gateway's answer: %v", err)
	}
	return res.Header, b, nil
}

// adminFailure is the one-line failure of an admin request.
func adminFailure(addr string, err error) error {
	m := apiError.FindStringSubmatch(err.Error())
	if m == nil {
		return fail(exitUnreachable, "otpgate: no gateway answered at %s (%v): is it running, and is --address or --config right?", addr, err)
	}
	var v struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(m[2])
	if json.Unmarshal([]byte(msg), &v) == nil && v.Error != "" {
		msg = v.Error
	}
	msg = strings.TrimPrefix(strings.ReplaceAll(msg, "\n", " "), "otpgate: ")
	if m[1] == "404" && strings.Contains(msg, "no otpgate app") {
		msg += " (is this the otpgate gateway's admin address?)"
	}
	return fail(exitRefused, "otpgate: %s (HTTP %s)", msg, m[1])
}

// required returns the values of the named flags, or a failure naming the
// first one missing.
func required(cmd *cobra.Command, names ...string) ([]string, error) {
	var out []string
	for _, n := range names {
		v, _ := cmd.Flags().GetString(n)
		if strings.TrimSpace(v) == "" {
			return nil, fail(exitRefused, "otpgate: --%s is required: %s", n, cmd.Flags().Lookup(n).Usage)
		}
		out = append(out, strings.TrimSpace(v))
	}
	return out, nil
}

// localTime writes t in the operator's time zone; "-" for no time.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// table writes rows, the first the header, in aligned columns.
func table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// tokenView is the admin API's view of a token.
type tokenView struct {
	Service            string    `json:"service"`
	User               string    `json:"user"`
	State              string    `json:"state"`
	Locked             bool      `json:"locked"`
	Failures           int       `json:"failures"`
	Email              string    `json:"email,omitempty"`
	IssuedAt           time.Time `json:"issued_at,omitzero"`
	ActivatedAt        time.Time `json:"activated_at,omitzero"`
	Expires            time.Time `json:"expires,omitzero"`
	LockedAt           time.Time `json:"locked_at,omitzero"`
	ServiceRequiresOTP *bool     `json:"service_requires_otp,omitempty"`
}

// printJSON writes v indented, for --json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func runTokenStatus(cmd *cobra.Command, a *adminClient) error {
	v, err := required(cmd, "service", "user")
	if err != nil {
		return err
	}
	_, b, err := a.do(http.MethodGet, "/otpgate/token", url.Values{"service": {v[0]}, "user": {v[1]}}, nil)
	if err != nil {
		return err
	}
	var t tokenView
	if err := json.Unmarshal(b, &t); err != nil {
		return fail(exitUnreachable, "otpgate: the gateway's answer is not a token: %v", err)
	}
	// A record in state none with nothing in it: the gateway never knew
	// the customer (a reset one keeps their mail address).
	unknown := t.State == "none" && t.IssuedAt.IsZero() && t.Email == ""
	if a.json {
		if err := printJSON(a.out, t); err != nil {
			return err
		}
	} else {
		requires := "-"
		if t.ServiceRequiresOTP != nil {
			requires = yesNo(*t.ServiceRequiresOTP)
		}
		lock := "no"
		if t.Locked {
			lock = "yes, since " + localTime(t.LockedAt)
		}
		err := table(a.out, [][]string{
			{"Service", t.Service}, {"User", t.User}, {"State", t.State}, {"Locked", lock},
			{"Wrong codes in a row", strconv.Itoa(t.Failures)}, {"Mail address", orDash(t.Email)},
			{"Issued", localTime(t.IssuedAt)}, {"Activated", localTime(t.ActivatedAt)}, {"Expires", localTime(t.Expires)},
			{"Service requires OTP", requires},
		})
		if err != nil {
			return err
		}
	}
	if unknown {
		return fail(exitRefused, "otpgate: service %q user %q has no token and never had one: check the IDs", v[0], v[1])
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runTokenList(cmd *cobra.Command, a *adminClient) error {
	q := url.Values{}
	if s, _ := cmd.Flags().GetString("service"); s != "" {
		q.Set("service", s)
	}
	_, b, err := a.do(http.MethodGet, "/otpgate/tokens", q, nil)
	if err != nil {
		return err
	}
	var list []tokenView
	if err := json.Unmarshal(b, &list); err != nil {
		return fail(exitUnreachable, "otpgate: the gateway's answer is not a list of tokens: %v", err)
	}
	if a.json {
		if list == nil {
			list = []tokenView{}
		}
		return printJSON(a.out, list)
	}
	rows := [][]string{{"SERVICE", "USER", "STATE", "LOCKED", "WRONG", "EXPIRES", "MAIL"}}
	for _, t := range list {
		rows = append(rows, []string{t.Service, t.User, t.State, yesNo(t.Locked), strconv.Itoa(t.Failures), localTime(t.Expires), orDash(t.Email)})
	}
	if err := table(a.out, rows); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%d tokens\n", len(list))
	return nil
}

// customerLine is one customer of a batch.
type customerLine struct{ service, user string }

// readCustomers reads a CSV file of service_id,user_id lines; a first line
// naming the columns is skipped.
func readCustomers(path string) ([]customerLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(exitRefused, "otpgate: --file: %v", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var out []customerLine
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fail(exitRefused, "otpgate: %s: %v", path, err)
		}
		if line == 1 && len(rec) > 0 && strings.EqualFold(strings.TrimPrefix(rec[0], "\ufeff"), "service_id") {
			continue
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) < 2 || strings.TrimSpace(rec[0]) == "" || strings.TrimSpace(rec[1]) == "" {
			return nil, fail(exitRefused, "otpgate: %s line %d: want service_id,user_id; nothing was changed", path, line)
		}
		out = append(out, customerLine{strings.TrimPrefix(strings.TrimSpace(rec[0]), "\ufeff"), strings.TrimSpace(rec[1])})
	}
	if len(out) == 0 {
		return nil, fail(exitRefused, "otpgate: %s lists no customer (service_id,user_id)", path)
	}
	return out, nil
}

// runChange resets or unlocks one customer, or each of a CSV file.
func runChange(cmd *cobra.Command, a *adminClient, action, path string) error {
	by, err := required(cmd, "by")
	if err != nil {
		return err
	}
	file, _ := cmd.Flags().GetString("file")
	var customers []customerLine
	if file != "" {
		if s, _ := cmd.Flags().GetString("service"); s != "" {
			return fail(exitRefused, "otpgate: give either --file or --service and --user, not both")
		}
		if customers, err = readCustomers(file); err != nil {
			return err
		}
	} else {
		v, err := required(cmd, "service", "user")
		if err != nil {
			return err
		}
		customers = []customerLine{{v[0], v[1]}}
	}
	type result struct {
		Service string `json:"service"`
		User    string `json:"user"`
		Action  string `json:"action"`
		OK      bool   `json:"ok"`
		Error   string `json:"error,omitempty"`
	}
	var results []result
	failed := 0
	for _, c := range customers {
		_, _, err := a.do(http.MethodPost, path, nil, map[string]string{"service": c.service, "user": c.user, "by": by[0]})
		r := result{Service: c.service, User: c.user, Action: action, OK: err == nil}
		if err != nil {
			if exitCode(err) == exitUnreachable {
				return err
			}
			failed++
			r.Error = strings.TrimPrefix(err.Error(), "otpgate: ")
		}
		results = append(results, r)
	}
	if a.json {
		for _, r := range results {
			if err := json.NewEncoder(a.out).Encode(r); err != nil {
				return err
			}
		}
	} else {
		rows := [][]string{{"SERVICE", "USER", "RESULT"}}
		for _, r := range results {
			res := "done"
			if !r.OK {
				res = "FAILED: " + r.Error
			}
			rows = append(rows, []string{r.Service, r.User, res})
		}
		if err := table(a.out, rows); err != nil {
			return err
		}
	}
	switch {
	case failed == 0:
		return nil
	case len(customers) == 1:
		return fail(exitRefused, "otpgate: %s", results[0].Error)
	}
	return fail(exitRefused, "otpgate: %d of %d customers not %s (see above); the others were", failed, len(customers), pastTense(action))
}

func pastTense(action string) string {
	if action == "reset" {
		return "reset"
	}
	return action + "ed"
}

func runRequireOTP(cmd *cobra.Command, a *adminClient) error {
	v, err := required(cmd, "service", "by")
	if err != nil {
		return err
	}
	_, b, err := a.do(http.MethodPost, "/otpgate/require", nil, map[string]string{"service": v[0], "by": v[1]})
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(b)
		return err
	}
	_, err = fmt.Fprintf(a.out, "Service %s now requires OTP of every user.\n", v[0])
	return err
}

func runRekey(cmd *cobra.Command, a *adminClient) error {
	v, err := required(cmd, "by")
	if err != nil {
		return err
	}
	_, b, err := a.do(http.MethodPost, "/otpgate/rekey", nil, map[string]string{"by": v[0]})
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(b)
		return err
	}
	var out struct {
		Resealed int `json:"resealed"`
	}
	json.Unmarshal(b, &out)
	_, err = fmt.Fprintf(a.out, "%d secrets re-sealed under the current key.\n", out.Resealed)
	return err
}

func runHeldList(cmd *cobra.Command, a *adminClient) error {
	q := url.Values{}
	for _, n := range []string{"service", "user"} {
		if v, _ := cmd.Flags().GetString(n); v != "" {
			q.Set(n, v)
		}
	}
	_, b, err := a.do(http.MethodGet, "/otpgate/held", q, nil)
	if err != nil {
		return err
	}
	var out struct {
		Held []struct {
			ID, Service, User, Kind, Rule, Digest string
			Expires                               time.Time
		} `json:"held"`
		More bool `json:"more"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fail(exitUnreachable, "otpgate: the gateway's answer is not a list of held operations: %v", err)
	}
	if a.json {
		_, err := a.out.Write(b)
		return err
	}
	rows := [][]string{{"SERVICE", "USER", "KIND", "RULE", "EXPIRES", "ID", "DIGEST"}}
	for _, h := range out.Held {
		rows = append(rows, []string{orDash(h.Service), orDash(h.User), h.Kind, h.Rule, localTime(h.Expires), h.ID, h.Digest[:min(16, len(h.Digest))]})
	}
	if err := table(a.out, rows); err != nil {
		return err
	}
	more := ""
	if out.More {
		more = " (more not shown: narrow with --service and --user)"
	}
	_, err = fmt.Fprintf(a.out, "%d operations waiting for a code%s\n", len(out.Held), more)
	return err
}
