package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/token"
)

// registeredImport posts a customer file to the admin API.
func registeredImport(t *testing.T, e *env, csv, by string) (int, map[string]any) {
	t.Helper()
	q := url.Values{"by": {by}, "db": {filepath.Join(e.dir, "otpgate.db")}}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/otpgate/registered?%s", adminPort, q.Encode()), strings.NewReader(csv))
	req.Header.Set("Content-Type", "text/csv")
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	if out == nil {
		out = map[string]any{"raw": string(b)}
	}
	return res.StatusCode, out
}

// mailsTo lists the mails in the gateway's mail folder addressed to addr.
func mailsTo(t *testing.T, e *env, addr string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dir, "mail", "*.eml"))
	n := 0
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if msg, err := mail.ReadMessage(bytes.NewReader(b)); err == nil && strings.Contains(msg.Header.Get("To"), addr) {
			n++
		}
	}
	return n
}

// With enrol_address registered (the default), a customer with only the
// login password cannot have a setup link mailed to an address of their
// choosing; the bank imports its customer file through the admin API or
// the CLI, and the company's registered address hears of the enrolment.
func TestRegisteredAddressEnrolment(t *testing.T) {
	e := newEnv(t, envOptions{Extra: "enrol_address registered"})
	if got := e.gw().shared.Tokens.Config().EnrolAddress.Mode; got != token.RegisteredAddress {
		t.Fatalf("enrol_address registered configured %q", got)
	}
	c := e.customer("S001", "U001")
	c.login()
	c.json = true

	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": "u001@mobile.example", "pin": "4829"})
	if msg, _ := out["message"].(string); res.StatusCode != http.StatusForbidden || out["error"] != "email_not_registered" || !strings.HasPrefix(msg, "otpgate: ") {
		t.Fatalf("issue before the import: %d %v; want 403 email_not_registered", res.StatusCode, out)
	}
	res, out = c.postJSON("/.otpgate/token/issue", map[string]string{"email": "u001@mobile.example", "pin": "1234"})
	if res.StatusCode != http.StatusBadRequest || out["error"] != "pin_trivial" {
		t.Fatalf("trivial PIN: %d %v; want 400 pin_trivial", res.StatusCode, out)
	}

	if status, out := registeredImport(t, e, "S001,U001,u001@mobile.example\nS001,U002,not an address\n", "yamada"); status != http.StatusBadRequest ||
		!strings.Contains(fmt.Sprint(out), "line 2") {
		t.Fatalf("a wrong file: %d %v; want 400 naming line 2", status, out)
	}
	if status, out := registeredImport(t, e, "S001,U001,u001@mobile.example\n", ""); status != http.StatusBadRequest {
		t.Fatalf("an import by nobody: %d %v", status, out)
	}
	// The CLI, as an operator runs it: a wrong file or a missing flag is
	// one line and exit status 1, and imports nothing; a right file prints
	// what it imported.
	dir, db := t.TempDir(), filepath.Join(e.dir, "otpgate.db")
	wrong := filepath.Join(dir, "wrong.csv")
	os.WriteFile(wrong, []byte("S001,U001,u001@mobile.example\nS001,U002,not an address\n"), 0o600)
	code, _, stderr := cli(t, "registered-import", "--db", db, "--file", wrong, "--by", "yamada")
	wantFailure(t, "registered-import of a wrong file", code, stderr, 1, "line 2")
	code, _, stderr = cli(t, "registered-import", "--db", db, "--file", wrong)
	wantFailure(t, "registered-import without --by", code, stderr, 1, "--by is required")
	code, _, stderr = cli(t, "registered-import", "--db", db, "--file", filepath.Join(dir, "missing.csv"), "--by", "yamada")
	wantFailure(t, "registered-import of a missing file", code, stderr, 1, "reading the customer file")
	file := filepath.Join(dir, "customers.csv")
	os.WriteFile(file, []byte("service_id,user_id,email\nS001,U001,u001@mobile.example\nS001,,keiri@corp.example\n"), 0o600)
	code, printed, stderr := cli(t, "registered-import", "--db", db, "--file", file, "--by", "yamada")
	if code != 0 || !strings.Contains(printed, "1 customers, 1 companies, 2 addresses") {
		t.Fatalf("registered-import: exit %d, printed %q, stderr %q", code, printed, stderr)
	}

	res, out = c.postJSON("/.otpgate/token/issue", map[string]string{"email": "attacker@evil.example", "pin": "4829"})
	if res.StatusCode != http.StatusForbidden || out["error"] != "email_not_registered" {
		t.Fatalf("issue to another address: %d %v", res.StatusCode, out)
	}
	if mailsTo(t, e, "attacker@evil.example") != 0 {
		t.Fatal("a mail went to the unregistered address")
	}
	c.enrol() // to u001@mobile.example, the registered address
	if n := mailsTo(t, e, "keiri@corp.example"); n != 1 {
		t.Errorf("%d mails to the company's registered address, want the issue notice", n)
	}
	if r := enrolFindAudit(enrolAuditTrail(t, e), token.RegisteredImported, "", ""); len(r) != 1 || r[0].Actor != "admin:yamada" {
		t.Errorf("import audit records %+v; want one by admin:yamada", r)
	}
}
