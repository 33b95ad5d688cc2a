package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/demobank"
)

// The directive order at work, through the real handler chain: in one site
// with rewrite, basic_auth and forward_auth (written after otpgate in the
// Caddyfile), the gateway reads the path rewrite made, runs only once
// basic_auth has let the request in, names the customer forward_auth
// copied (not the header the client forged), and guards reverse_proxy.
// TestDirectiveOrder shows the same order in the adapted JSON.
func TestDirectiveOrderAtRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := &env{t: t, bank: demobank.New(), dir: t.TempDir(), clock: &fakeClock{t: time.Now()}}
	bank := httptest.NewServer(e.bank)
	t.Cleanup(bank.Close)
	// The auth server approves a request carrying its SSO cookie and names
	// the customer in Remote-Service and Remote-User.
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("sso"); err == nil && c.Value == "ok" {
			w.Header().Set("Remote-Service", "S009")
			w.Header().Set("Remote-User", "U901")
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(auth.Close)
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	initServer(tester, fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	skip_install_trust
}
:%d {
	reverse_proxy %s
	otpgate {
		database %s
		secret_key %s
		mail_dir %s
		mail_from otp@test-bank.example
		enrol_address any
		require_otp all
		identity header {
			service {http.request.header.Remote-Service}
			user {http.request.header.Remote-User}
			trusted forward_auth
		}
		rule transfer {
			path /transfer/execute /admin/transfer
		}
	}
	forward_auth %s {
		uri /verify
		copy_headers Remote-Service Remote-User
	}
	basic_auth /admin/* {
		bank %s
	}
	rewrite /furikomi /transfer/execute
}
`, adminPort, gatewayPort, gatewayPort, strings.TrimPrefix(bank.URL, "http://"), filepath.Join(e.dir, "otpgate.db"), testKey,
		filepath.Join(e.dir, "mail"), strings.TrimPrefix(auth.URL, "http://"), hash))
	if t.Failed() {
		t.FailNow()
	}
	waitServing(t)
	t.Cleanup(func() { unloadGateway(t) })

	client := &http.Client{Transport: caddytest.CreateTestingTransport(), Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path string, sso, basic bool) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, gatewayURL+path, strings.NewReader(url.Values{"to_account": {"7654321"}, "amount": {"1000"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		// Forged: forward_auth must replace these with the auth server's.
		req.Header.Set("Remote-Service", "S001")
		req.Header.Set("Remote-User", "U666")
		if sso {
			req.AddCookie(&http.Cookie{Name: "sso", Value: "ok"})
		}
		if basic {
			req.SetBasicAuth("bank", "secret")
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	refusedFor := func(path string) []audit.Record {
		var out []audit.Record
		for _, r := range e.auditTrail() {
			if r.Event == audit.Refused && strings.Contains(r.Request, path) {
				out = append(out, r)
			}
		}
		return out
	}

	// forward_auth refuses before the gateway is reached: nothing audited.
	if res, body := send(http.MethodPost, "/furikomi", false, false); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST /furikomi without SSO: %d %s; want forward_auth's 401", res.StatusCode, body)
	}
	// rewrite ran first: /furikomi is the protected /transfer/execute; and
	// forward_auth ran first: the customer is the auth server's S009/U901,
	// not the forged S001/U666. Without a token under require_otp all, the
	// operation is refused for that customer and never reaches the bank.
	res, body := send(http.MethodPost, "/furikomi", true, false)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "enrollment_required") {
		t.Fatalf("POST /furikomi with SSO: %d %s; want the gateway's 403 enrollment_required", res.StatusCode, body)
	}
	if recs := refusedFor("/transfer/execute"); len(recs) != 1 || recs[0].Service != "S009" || recs[0].User != "U901" {
		t.Fatalf("audit of the rewritten transfer: %+v; want one refusal for S009/U901", recs)
	}
	// basic_auth ran first: without its credentials, its 401 and challenge,
	// and the gateway never saw the request.
	res, body = send(http.MethodPost, "/admin/transfer", true, false)
	if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("POST /admin/transfer without basic auth: %d %q %s; want basic_auth's 401", res.StatusCode, res.Header.Get("WWW-Authenticate"), body)
	}
	if recs := refusedFor("/admin/transfer"); len(recs) != 0 {
		t.Fatalf("the gateway saw a request basic_auth refused: %+v", recs)
	}
	res, body = send(http.MethodPost, "/admin/transfer", true, true)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "enrollment_required") {
		t.Fatalf("POST /admin/transfer with basic auth: %d %s; want the gateway's 403", res.StatusCode, body)
	}
	// The gateway guards reverse_proxy: what it passes reaches the bank,
	// what it refused did not.
	if res, _ := send(http.MethodGet, "/login", true, false); res.StatusCode != http.StatusOK {
		t.Fatalf("GET /login with SSO: %d; want the bank's page", res.StatusCode)
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("the bank executed %v", l)
	}
}
