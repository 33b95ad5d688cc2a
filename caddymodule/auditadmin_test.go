package caddymodule

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/otpgate/otpgate/internal/audit"
)

// adminGet sends a GET to the admin API and returns the answer.
func adminGet(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("http://localhost:%d%s", adminPort, path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// The examiner's export: filtered by customer and event, as JSON lines,
// CSV or pages of JSON that follow each other to the same records; who
// acted, when and from where on every record (administrators' addresses
// written as customers' are, without a port; the User-Agent too). The
// operators' list of held operations names the customer and never the
// request. Mistakes get a 400 that says what to send.
func TestAdminAuditExportAndHeld(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)

	res, b := adminGet(t, "/otpgate/held?service=S001")
	var held struct {
		Held []map[string]any `json:"held"`
		More bool             `json:"more"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(b, &held) != nil || len(held.Held) != 1 || held.Held[0]["id"] != id ||
		held.Held[0]["user"] != "U001" || held.Held[0]["kind"] != "transfer" {
		t.Fatalf("held: %d %s; want the one operation of U001", res.StatusCode, b)
	}
	if strings.Contains(string(b), "50000") || strings.Contains(string(b), "1234567") {
		t.Errorf("held list shows the request: %s", b)
	}

	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/reset", map[string]string{"service": "S001", "user": "U001", "by": "yamada"}); status != http.StatusOK {
		t.Fatalf("reset: %d %s", status, b)
	}

	// JSON lines, every record of the customer.
	res, b = adminGet(t, "/otpgate/audit?service=S001&user=U001")
	var all []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		all = append(all, r)
	}
	if res.StatusCode != http.StatusOK || len(all) < 5 {
		t.Fatalf("audit export: %d, %d records", res.StatusCode, len(all))
	}
	for _, r := range all {
		if r.ClientIP == "" || strings.Count(r.ClientIP, ":") == 1 {
			t.Errorf("%s by %s: client_ip %q; want an address without a port", r.Event, r.Actor, r.ClientIP)
		}
		if r.Actor != "system" && r.UserAgent == "" {
			t.Errorf("%s by %s: no user agent", r.Event, r.Actor)
		}
	}
	if last := all[len(all)-1]; last.Event != audit.Reset || last.Actor != "admin:yamada" || last.ClientIP != "127.0.0.1" {
		t.Errorf("last record %+v; want the reset by admin:yamada from 127.0.0.1", last)
	}

	// Pages of two follow each other to the same records.
	var paged []audit.Record
	after := ""
	for range 100 {
		q := url.Values{"service": {"S001"}, "user": {"U001"}, "format": {"json"}, "limit": {"2"}, "after": {after}}
		res, b := adminGet(t, "/otpgate/audit?"+q.Encode())
		var page struct {
			Records []audit.Record `json:"records"`
			Next    string         `json:"next"`
		}
		if res.StatusCode != http.StatusOK || json.Unmarshal(b, &page) != nil || len(page.Records) > 2 {
			t.Fatalf("page: %d %s", res.StatusCode, b)
		}
		paged = append(paged, page.Records...)
		if after = page.Next; after == "" {
			break
		}
	}
	if len(paged) != len(all) {
		t.Errorf("%d records in pages of 2; want the %d of the whole export", len(paged), len(all))
	}

	// CSV of one event, paginated by the header's cursor.
	res, b = adminGet(t, "/otpgate/audit?user=U001&event=challenge&format=csv&limit=1")
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][0] != "time" || rows[1][1] != "challenge" || rows[1][3] != "U001" {
		t.Errorf("CSV: %q %v; want the header and the challenge", rows, err)
	}
	if res.Header.Get("Otpgate-Next-Cursor") != "" {
		t.Errorf("one challenge, a page of one: next cursor %q; want none", res.Header.Get("Otpgate-Next-Cursor"))
	}

	for _, tc := range []struct{ path, want string }{
		{"/otpgate/audit?event=lock", "no such audit event"},
		{"/otpgate/audit?limit=0", "limit"},
		{"/otpgate/audit?format=xml", "format"},
		{"/otpgate/audit?after=abc", "give limit too"},
		{"/otpgate/audit?since=yesterday", "RFC 3339"},
		{"/otpgate/held?user=U001", "user needs service"},
	} {
		res, b := adminGet(t, tc.path)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %d %s; want 400 saying %q", tc.path, res.StatusCode, b, tc.want)
		}
	}
}

// audit_retention below a day is refused at load, saying what to write.
func TestAuditRetentionTooShortRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, opt := range []envOptions{{Extra: "audit_retention 12h"}, {Extra: "audit_retention 400"}} {
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(e.caddyfile(opt)), nil)
		if err != nil {
			if strings.Contains(opt.Extra, "400") {
				continue // no unit: the Caddyfile already refuses it
			}
			t.Fatal(err)
		}
		status, body, err := adminLoad(adminAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if status == http.StatusOK || !strings.Contains(body, "audit_retention 12h: want at least a day") {
			t.Errorf("%s: %d %s; want it refused", opt.Extra, status, body)
		}
	}
}
