package caddymodule

import (
	"crypto/rand"
	"encoding/json"
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
	tokens, err := token.New(db, sealer, mailNotifier{}, token.Config{RequireAll: true})
	if err != nil {
		t.Fatal(err)
	}
	challenges, err := challenge.New(db, sealer, tokens, challenge.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g.useStore(&storeState{store: db, sealer: sealer, tokens: tokens, challenges: challenges})
	return g
}

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
// and the bank stub.
func serveUnit(t *testing.T, g *Gateway, r *http.Request) (*httptest.ResponseRecorder, *bankStub) {
	t.Helper()
	w := httptest.NewRecorder()
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
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

// A protected operation from someone the gateway does not know is refused
// and never reaches the bank: no session cookie, two of them, or a request
// header a client sent itself where the configuration trusts forward_auth.
func TestServeProtectedWithoutIdentity(t *testing.T) {
	t.Parallel()
	login := unitGateway(t, &Gateway{})
	header := unitGateway(t, &Gateway{Identity: &Identity{Source: "header", Trusted: trustedForwardAuth,
		Service: "{http.request.header.Remote-Service}", User: "{http.request.header.Remote-User}"}})
	for _, tc := range []struct {
		name   string
		g      *Gateway
		header map[string]string
	}{
		{"no session cookie", login, nil},
		{"two session cookies", login, map[string]string{"Cookie": "JSESSIONID=a; JSESSIONID=b"}},
		{"a session cookie the gateway never bound", login, map[string]string{"Cookie": "JSESSIONID=unknown"}},
		{"headers without forward_auth", header, map[string]string{"Remote-Service": "S001", "Remote-User": "U001"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/transfer/execute", strings.NewReader("amount=50000"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Accept", "application/json")
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w, bank := serveUnit(t, tc.g, r)
			var out map[string]any
			json.Unmarshal(w.Body.Bytes(), &out)
			if w.Code != http.StatusForbidden || out["error"] != gate.LoginRequired || bank.calls != 0 {
				t.Fatalf("status %d %s, bank called %d times; want 403 login_required and nothing at the bank", w.Code, w.Body, bank.calls)
			}
		})
	}
}

// The same headers name a customer once forward_auth has answered the
// request 2xx: the operation is held for that customer (who has no token
// yet, so the answer is the way to enrol), and still never reaches the bank.
func TestServeForwardAuthIdentity(t *testing.T) {
	t.Parallel()
	g := unitGateway(t, &Gateway{Identity: &Identity{Source: "header", Trusted: trustedForwardAuth,
		Service: "{http.request.header.Remote-Service}", User: "{http.request.header.Remote-User}"}})
	r := httptest.NewRequest(http.MethodPost, "/transfer/execute", strings.NewReader("amount=50000"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Remote-Service", "S001")
	r.Header.Set("Remote-User", "U001")
	w := httptest.NewRecorder()
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, w, nil)
	repl.Set("http.reverse_proxy.status_code", http.StatusOK)
	bank := new(bankStub)
	if err := g.ServeHTTP(w, r, bank); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	if w.Code != http.StatusForbidden || out["error"] != gate.EnrollmentRequired || bank.calls != 0 {
		t.Fatalf("status %d %s, bank called %d times; want 403 enrollment_required for S001/U001", w.Code, w.Body, bank.calls)
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
