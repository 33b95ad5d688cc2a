package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/caddyconf"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

// The unit layer of ServeHTTP, in the style of Caddy's caddyauth_test.go:
// a handler built without a Caddy server, requests prepared as Caddy
// prepares them (caddyhttp.PrepareRequest), a recording next handler in
// place of the bank, and t.Parallel. It proves what needs no bank and no
// customer journey; the integration tests (harness_test.go) run the real
// handler chain.

// unitGateway prepares g as Provision does, without Caddy: its defaults,
// identity, rules and own paths, over a store of its own in a temporary
// folder with the managers the otpgate app would give it. The identity
// defaults to the bank's login form, the rules to one transfer.
func unitGateway(t *testing.T, g *Gateway) *Gateway {
	t.Helper()
	if g.Identity == nil {
		g.Identity = &Identity{Source: "login_form"}
	}
	if g.Rules == nil {
		g.Rules = []policy.Rule{{Kind: policy.Transfer, Paths: []string{"/transfer/execute"}}}
	}
	g.logger = zap.NewNop()
	if err := g.prepare(); err != nil {
		t.Fatal(err)
	}
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "otpgate.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := token.New(db, sealer, noNotices{}, token.Config{RequireAll: true})
	if err != nil {
		t.Fatal(err)
	}
	challenges, err := challenge.New(db, sealer, tokens, challenge.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g.useStore(&app.State{Store: db, Sealer: sealer, Tokens: tokens, Challenges: challenges})
	return g
}

// noNotices drops the token lifecycle's notices: the unit layer mails
// nothing.
type noNotices struct{}

func (noNotices) Notify(context.Context, token.Notice) error { return nil }

// bankStub stands for everything after the gateway: it records what
// reached it and answers 200 "bank".
type bankStub struct {
	calls int
	req   *http.Request
	body  string
}

func (b *bankStub) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b.calls++
	b.req = r
	if r.Body != nil {
		body, _ := io.ReadAll(r.Body)
		b.body = string(body)
	}
	_, err := io.WriteString(w, "bank")
	return err
}

// serveUnit runs g.ServeHTTP on r as Caddy would, and returns the answer
// and the bank stub. repl are placeholders handlers before the gateway
// left (forward_auth's answer, an authenticated user).
func serveUnit(t *testing.T, g *Gateway, r *http.Request, repl ...map[string]any) (*httptest.ResponseRecorder, *bankStub) {
	t.Helper()
	w := httptest.NewRecorder()
	rp := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, rp, w, nil)
	for _, m := range repl {
		for k, v := range m {
			rp.Set(k, v)
		}
	}
	bank := new(bankStub)
	if err := g.ServeHTTP(w, r, bank); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w, bank
}

// A path that backends could read differently is refused with 400 before
// anything reads it, whatever it is (a protected operation, the gateway's
// pages, the login), unless an allowed prefix covers it; the bank never
// sees it.
func TestServeAmbiguousPath(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{AllowAmbiguousPaths: []string{"/static/**"}})
	for _, tc := range []struct {
		target string
		bank   bool // passed to the bank
	}{
		{"/transfer%2Fexecute", false},
		{"/transfer%2fexecute", false},
		{"/transfer/%2e/execute", false},
		{"/x/../transfer/execute", false},
		{"/transfer//execute", false},
		{"/transfer/execute%252f", false},
		{"/transfer%5Cexecute", false},
		{"/transfer%3Bjsessionid=1/execute", false},
		{"/transfer/execute.", false},
		{"/TRANSF~1/execute", false},
		{"/transfer/%c0%afexecute", false},
		{"/transfer/%EF%BD%85xecute", false}, // fullwidth e
		{"/.otpgate/%2e%2e/transfer/execute", false},
		{"/login%2F", false},
		{"/static/img%2Flogo.png", true},
		{"/static/a..b.css", true},
	} {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, tc.target, strings.NewReader("amount=1"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Accept", "application/json")
			w, bank := serveUnit(t, g, r)
			if tc.bank {
				if bank.calls != 1 || w.Code != http.StatusOK {
					t.Fatalf("status %d, bank called %d times; want it passed to the bank", w.Code, bank.calls)
				}
				return
			}
			var out map[string]any
			json.Unmarshal(w.Body.Bytes(), &out)
			if w.Code != http.StatusBadRequest || out["error"] != gate.AmbiguousPath || bank.calls != 0 {
				t.Fatalf("status %d %s, bank called %d times; want 400 ambiguous_path and nothing at the bank", w.Code, w.Body, bank.calls)
			}
			if msg, _ := out["message"].(string); !strings.HasPrefix(msg, "otpgate: ") {
				t.Fatalf("message %q does not say it is the gateway's", msg)
			}
		})
	}
}

// A browser gets the refusal of an ambiguous path as a page in its
// language that says what could not be read.
func TestServeAmbiguousPathPage(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{})
	for lang, want := range map[string]string{"ja": "lang=\"ja\"", "en": "lang=\"en\""} {
		r := httptest.NewRequest(http.MethodGet, "/menu%2F..%2Ftransfer", nil)
		r.Header.Set("Accept", "text/html")
		r.Header.Set("Accept-Language", lang)
		w, bank := serveUnit(t, g, r)
		if w.Code != http.StatusBadRequest || bank.calls != 0 || !strings.Contains(w.Body.String(), want) ||
			!strings.Contains(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s: status %d %s, bank called %d times; want a 400 page", lang, w.Code, w.Header().Get("Content-Type"), bank.calls)
		}
	}
}

// What no rule protects passes to the bank once, unchanged: method, URI,
// headers and body, and the bank's answer reaches the client as it is.
func TestServePassThrough(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{})
	for _, tc := range []struct {
		method, target, body string
	}{
		{http.MethodGet, "/menu", ""},
		{http.MethodGet, "/transfer/history?from=2026-01-01", ""},
		{http.MethodPost, "/search", "q=%E6%8C%AF%E8%BE%BC"},
		{http.MethodPost, "/transfer/input", "amount=50000"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.body != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			r.Header.Set("X-Bank-Header", "kept")
			w, bank := serveUnit(t, g, r)
			if bank.calls != 1 || w.Code != http.StatusOK || w.Body.String() != "bank" {
				t.Fatalf("status %d %q, bank called %d times; want the bank's answer", w.Code, w.Body, bank.calls)
			}
			if bank.req.Method != tc.method || bank.req.RequestURI != tc.target || bank.body != tc.body || bank.req.Header.Get("X-Bank-Header") != "kept" {
				t.Fatalf("the bank got %s %s %q %v; want the request unchanged", bank.req.Method, bank.req.RequestURI, bank.body, bank.req.Header)
			}
			if c := w.Header().Get("Set-Cookie"); c != "" {
				t.Fatalf("the gateway added a cookie to a passed request: %s", c)
			}
		})
	}
}

// A protected operation is refused, and never reaches the bank, from
// someone the gateway does not know: no session cookie, two of them, one it
// never bound, or request headers a client sent itself where the
// configuration trusts forward_auth. The same headers name a customer once
// forward_auth has answered the request 2xx: that customer has no token
// yet, so the answer sends them to enrol, and nothing reaches the bank
// either.
func TestServeProtectedIdentity(t *testing.T) {
	t.Parallel()
	login := unitGateway(t, &Gateway{})
	header := unitGateway(t, &Gateway{Identity: &Identity{Source: "header", Trusted: caddyconf.TrustedForwardAuth,
		Service: "{http.request.header.Remote-Service}", User: "{http.request.header.Remote-User}"}})
	forged := map[string]string{"Remote-Service": "S001", "Remote-User": "U001"}
	for _, tc := range []struct {
		name   string
		g      *Gateway
		header map[string]string
		repl   map[string]any
		want   string
	}{
		{"no session cookie", login, nil, nil, gate.LoginRequired},
		{"two session cookies", login, map[string]string{"Cookie": "JSESSIONID=a; JSESSIONID=b"}, nil, gate.LoginRequired},
		{"a session cookie the gateway never bound", login, map[string]string{"Cookie": "JSESSIONID=unknown"}, nil, gate.LoginRequired},
		{"headers without forward_auth", header, forged, nil, gate.LoginRequired},
		{"headers forward_auth answered with a redirect", header, forged, map[string]any{"http.reverse_proxy.status_code": http.StatusFound}, gate.LoginRequired},
		{"headers forward_auth approved", header, forged, map[string]any{"http.reverse_proxy.status_code": http.StatusOK}, gate.EnrollmentRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/transfer/execute", strings.NewReader("amount=50000"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Accept", "application/json")
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w, bank := serveUnit(t, tc.g, r, tc.repl)
			var out map[string]any
			json.Unmarshal(w.Body.Bytes(), &out)
			if w.Code != http.StatusForbidden || out["error"] != tc.want || bank.calls != 0 {
				t.Fatalf("status %d %s, bank called %d times; want 403 %s and nothing at the bank", w.Code, w.Body, bank.calls, tc.want)
			}
		})
	}
}

// A path longer than any banking page needs is refused before it is read
// the ways lenient backends read it.
func TestServePathTooLong(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{})
	r := httptest.NewRequest(http.MethodGet, "/"+strings.Repeat("a", maxPath), nil)
	r.Header.Set("Accept", "application/json")
	w, bank := serveUnit(t, g, r)
	if w.Code != http.StatusRequestURITooLong || bank.calls != 0 {
		t.Fatalf("status %d, bank called %d times; want 414 and nothing at the bank", w.Code, bank.calls)
	}
}

// Body bytes count against max_buffered while a watched request is read
// and answered: one that would go over it is refused with 503 and a
// Retry-After, and never reaches the bank, whether its length is declared
// or not; the bytes are given back once each request is answered.
func TestServeBodiesOverMaxBuffered(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{MaxBody: 1 << 10, MaxBuffered: 2 << 10})
	transfer := func(declared bool) *http.Request {
		var body io.Reader = strings.NewReader("amount=" + strings.Repeat("1", 900))
		if !declared {
			body = io.MultiReader(body) // no Content-Length: read as it comes
		}
		r := httptest.NewRequest(http.MethodPost, "/transfer/execute", body)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Accept", "application/json")
		return r
	}
	// Other requests' bodies, being read, hold 1.5 KiB of the 2 KiB.
	_, others, err := g.buffered.Read(strings.NewReader(strings.Repeat("x", 1536)), 1536)
	if err != nil {
		t.Fatal(err)
	}
	for _, declared := range []bool{true, false} {
		w, bank := serveUnit(t, g, transfer(declared))
		var out map[string]any
		json.Unmarshal(w.Body.Bytes(), &out)
		if w.Code != http.StatusServiceUnavailable || out["error"] != gate.Busy || w.Header().Get("Retry-After") == "" || bank.calls != 0 {
			t.Errorf("declared length %v: %d %s (Retry-After %q), bank called %d times; want 503 busy with Retry-After, nothing at the bank",
				declared, w.Code, w.Body, w.Header().Get("Retry-After"), bank.calls)
		}
		if used := g.buffered.Used(); used != 1536 {
			t.Errorf("declared length %v: %d bytes counted after the refusal; want the others' 1536", declared, used)
		}
	}
	others()
	for _, declared := range []bool{true, false} {
		// With room, the transfer is read and goes on to the flow, which
		// refuses it for want of a login.
		w, bank := serveUnit(t, g, transfer(declared))
		if w.Code != http.StatusForbidden || bank.calls != 0 {
			t.Errorf("declared length %v, with room: %d %s; want 403 login_required", declared, w.Code, w.Body)
		}
		if used := g.buffered.Used(); used != 0 {
			t.Errorf("declared length %v: %d bytes still counted after the answer; want 0", declared, used)
		}
	}
}

// A confirmation or a login naming more bank sessions than a browser does
// is refused before any of them is locked: each would be a lock, and on a
// shared store a key in etcd.
func TestServeTooManySessions(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{})
	var cookies []string
	for i := range gate.MaxNamedSessions + 1 {
		cookies = append(cookies, fmt.Sprintf("JSESSIONID=S%02d", i))
	}
	for _, target := range []string{"/.otpgate/confirm/x", "/login"} {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader("otp=123456&service_id=S001&user_id=U001&password=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Cookie", strings.Join(cookies, "; "))
		w, bank := serveUnit(t, g, r)
		if w.Code != http.StatusBadRequest || bank.calls != 0 || !strings.Contains(w.Body.String(), "bad_request") {
			t.Errorf("%s naming %d sessions: %d %s, bank called %d times; want 400 and nothing at the bank", target, len(cookies), w.Code, w.Body, bank.calls)
		}
	}
}
