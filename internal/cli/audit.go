package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/otpgate/otpgate/internal/audit"
)

// The audit trail's commands — audit, audit verify and audit-export — are
// administration commands like the others, registered with them in
// admin.go.

// auditVerify is "otpgate audit verify".
var auditVerify = adminCommand{
	name: "verify", usage: "[--json]",
	short: "Check the audit trail's tamper-evident chain",
	long: "Walks the audit trail and the chain its records are linked into (each record's link is the SHA-256\n" +
		"of the one before, its key and its bytes) and reports every record changed, deleted or inserted since\n" +
		"it was linked, and the head's hash: compare it with the one the gateway logged (\"audit records\n" +
		"linked into the chain\") to detect a rewrite of the whole chain. Records are linked a minute after they\n" +
		"are written. Exit status 1 when the chain does not hold.",
	flags: func(*pflag.FlagSet) {},
	run:   runAuditVerify,
}

func runAuditVerify(_ *cobra.Command, a *adminClient) error {
	_, b, err := a.do(http.MethodGet, "/otpgate/audit/verify", nil, nil)
	if err != nil {
		return err
	}
	var rep struct {
		OK       bool            `json:"ok"`
		Records  int             `json:"records"`
		Linked   int             `json:"linked"`
		Pending  int             `json:"pending"`
		Head     string          `json:"head"`
		Problems []audit.Problem `json:"problems"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return fail(exitUnreachable, "otpgate: the gateway's answer is not a verification report: %v", err)
	}
	if a.json {
		if _, err := a.out.Write(b); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.out, "%d records: %d linked and verified, %d not linked yet\nHead: %s\n", rep.Records, rep.Linked, rep.Pending, orDash(rep.Head))
		if len(rep.Problems) > 0 {
			rows := [][]string{{"KEY", "TIME", "PROBLEM"}}
			for _, p := range rep.Problems {
				rows = append(rows, []string{p.Key, orDash(p.Time), p.What})
			}
			if err := table(a.out, rows); err != nil {
				return err
			}
		}
	}
	if !rep.OK {
		return fail(exitRefused, "otpgate: the audit trail's chain does not hold at %d places (see above)", len(rep.Problems))
	}
	return nil
}

func filterFlags(f *pflag.FlagSet) {
	f.String("service", "", "only records of this service (company) ID")
	f.String("user", "", "only records of this user ID")
	f.StringArray("event", nil, "only records of this event (repeat for several): "+eventList())
	f.String("since", "", "only records at or after this time")
	f.String("until", "", "only records before this time")
}

func auditFlags(f *pflag.FlagSet) {
	filterFlags(f)
	f.Int("last", 100, "show at most the last n records that match")
}

func eventList() string {
	var names []string
	for _, e := range audit.Events {
		names = append(names, string(e))
	}
	return strings.Join(names, ", ")
}

// parseWhen reads a time flag: RFC 3339, a day (local midnight), or a
// duration back from now (24h, 7d).
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	if d, err := caddy.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fail(exitRefused, "otpgate: --%s %q: want an RFC 3339 time (2026-01-02T09:00:00+09:00), a day (2026-01-02) or a duration back from now (24h, 7d)", flag, s)
}

// auditQuery is the admin API query of the filter flags.
func auditQuery(cmd *cobra.Command, defaultSince time.Duration) (url.Values, error) {
	f := cmd.Flags()
	q := url.Values{}
	for _, n := range []string{"service", "user"} {
		if v, _ := f.GetString(n); v != "" {
			q.Set(n, v)
		}
	}
	events, _ := f.GetStringArray("event")
	for _, e := range events {
		if !slices.Contains(audit.Events, audit.Event(e)) {
			return nil, fail(exitRefused, "otpgate: --event %q: no such audit event; want one of %s", e, eventList())
		}
		q.Add("event", e)
	}
	now := time.Now()
	for _, n := range []string{"since", "until"} {
		v, _ := f.GetString(n)
		if v == "" {
			if n == "since" && defaultSince > 0 {
				q.Set("since", now.Add(-defaultSince).Format(time.RFC3339))
			}
			continue
		}
		t, err := parseWhen(n, v, now)
		if err != nil {
			return nil, err
		}
		q.Set(n, t.Format(time.RFC3339Nano))
	}
	return q, nil
}

// auditPage is how many records one request of the audit commands asks
// for.
const auditPage = 1000

// eachAuditPage calls fn with every page of records q selects.
func (a *adminClient) eachAuditPage(q url.Values, fn func([]audit.Record) error) error {
	q.Set("format", "json")
	q.Set("limit", strconv.Itoa(auditPage))
	for {
		_, b, err := a.do(http.MethodGet, "/otpgate/audit", q, nil)
		if err != nil {
			return err
		}
		var page struct {
			Records []audit.Record `json:"records"`
			Next    string         `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return fail(exitUnreachable, "otpgate: the gateway's answer is not a page of the audit trail: %v", err)
		}
		if err := fn(page.Records); err != nil {
			return err
		}
		if page.Next == "" {
			return nil
		}
		q.Set("after", page.Next)
	}
}

func runAudit(cmd *cobra.Command, a *adminClient) error {
	q, err := auditQuery(cmd, 30*24*time.Hour)
	if err != nil {
		return err
	}
	last, _ := cmd.Flags().GetInt("last")
	if last < 1 {
		return fail(exitRefused, "otpgate: --last %d: want a number of records, 1 or more", last)
	}
	var recs []audit.Record
	total := 0
	err = a.eachAuditPage(q, func(page []audit.Record) error {
		total += len(page)
		recs = append(recs, page...)
		if len(recs) > last {
			recs = slices.Clone(recs[len(recs)-last:])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if a.json {
		enc := json.NewEncoder(a.out)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	rows := [][]string{{"TIME", "EVENT", "SERVICE", "USER", "ACTOR", "FROM", "KIND", "DETAIL"}}
	for _, r := range recs {
		detail := r.Detail
		if r.Digest != "" {
			detail = strings.TrimSpace(detail + " digest " + r.Digest[:min(16, len(r.Digest))])
		}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range r.Fields {
				if !yield(k) {
					return
				}
			}
		}) {
			detail += " " + k + "=" + r.Fields[k]
		}
		rows = append(rows, []string{localTime(r.Time), string(r.Event), orDash(r.Service), orDash(r.User), orDash(r.Actor),
			orDash(r.ClientIP), orDash(r.Kind), strings.TrimSpace(detail)})
	}
	if err := table(a.out, rows); err != nil {
		return err
	}
	shown := fmt.Sprintf("%d records", len(recs))
	if total > len(recs) {
		shown = fmt.Sprintf("the last %d of %d records (--last for more)", len(recs), total)
	}
	_, err = fmt.Fprintln(a.out, shown)
	return err
}

func runAuditExport(cmd *cobra.Command, a *adminClient) error {
	q, err := auditQuery(cmd, 0)
	if err != nil {
		return err
	}
	format, _ := cmd.Flags().GetString("format")
	if format != "jsonl" && format != "csv" {
		return fail(exitRefused, "otpgate: --format %q: want jsonl or csv", format)
	}
	out := a.out
	if path, _ := cmd.Flags().GetString("out"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fail(exitRefused, "otpgate: --out: %v", err)
		}
		defer f.Close()
		out = f
	}
	var write func(audit.Record) error
	flush := func() error { return nil }
	if format == "csv" {
		w := audit.NewCSVWriter(out)
		write, flush = w.Write, w.Flush
	} else {
		enc := json.NewEncoder(out)
		write = func(r audit.Record) error { return enc.Encode(r) }
	}
	err = a.eachAuditPage(q, func(page []audit.Record) error {
		for _, r := range page {
			if err := write(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
