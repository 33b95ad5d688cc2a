package caddymodule

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/demobank"
)

// The integration tests run the real Caddy handler chain in this process
// (caddytest), with the gateway in front of a real demo bank.

// The ports the in-process Caddy uses. OTPGATE_TEST_ADMIN_PORT and
// OTPGATE_TEST_HTTP_PORT move them, so that two test processes on one
// machine do not load their configurations into each other's server.
var (
	adminPort   = envPort("OTPGATE_TEST_ADMIN_PORT", 2999)
	gatewayPort = envPort("OTPGATE_TEST_HTTP_PORT", 18080)
	// gatewayURL is where the gateway under test listens.
	gatewayURL = fmt.Sprintf("http://localhost:%d", gatewayPort)
)

func envPort(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// env is one gateway in front of one demo bank, with its own database and
// mail folder.
type env struct {
	t       *testing.T
	bank    *demobank.Bank
	bankURL string
	dir     string
	tester  *caddytest.Tester
	clock   *fakeClock
}

// fakeClock replaces the package clock so tests can spend one time step
// after another without waiting a minute each.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// envOptions vary the gateway's configuration.
type envOptions struct {
	// Extra is added inside the otpgate block.
	Extra string
	// NoRequireAll leaves out "require_otp all".
	NoRequireAll bool
	// Mail replaces the mail_dir line (e.g. an smtp block).
	Mail string
}

// newEnv starts a demo bank and loads a gateway in front of it.
func newEnv(t *testing.T, opt envOptions) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	e := &env{t: t, bank: demobank.New(), dir: t.TempDir(), clock: &fakeClock{t: time.Now()}}
	srv := httptest.NewServer(e.bank)
	t.Cleanup(srv.Close)
	e.bankURL = srv.URL
	prev := app.Now
	app.Now = e.clock.Now
	t.Cleanup(func() { app.Now = prev })

	e.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	initServer(e.tester, e.caddyfile(opt))
	if t.Failed() {
		t.FailNow()
	}
	waitServing(t)
	// Before the test's folders go: a configuration without the gateway
	// stops its outbox sender, which would otherwise still be writing
	// mail into this test's folder while it is removed.
	t.Cleanup(func() { unloadGateway(t) })
	return e
}

// unloadGateway loads a configuration with the admin endpoint only.
func unloadGateway(t *testing.T) {
	status, body, err := adminLoad(adminAddr(), []byte(fmt.Sprintf(`{"admin":{"listen":"localhost:%d"}}`, adminPort)))
	switch {
	case err != nil:
		t.Errorf("unloading the gateway: %v", err)
	case status != http.StatusOK:
		t.Errorf("unloading the gateway: status %d %s", status, body)
	}
}

// adminClient talks to Caddy's admin endpoint on a connection of its own
// each time: every configuration load replaces the admin server, which
// closes the connections kept alive to it, and a request sent on one of
// them as it closes meets EOF.
var adminClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

// adminLoad posts the JSON configuration cfg to /load at the admin
// endpoint addr and returns the answer. must-revalidate makes Caddy load it even when it
// equals the running one. A connection closed before it carried the request
// (EOF, the replaced admin server closing as it was dialled) is tried once
// more: nothing was loaded then.
func adminLoad(addr string, cfg []byte) (status int, body string, err error) {
	for try := 0; ; try++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/load", bytes.NewReader(cfg))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cache-Control", "must-revalidate")
		res, err := adminClient.Do(req)
		if err != nil {
			if try == 0 && errors.Is(err, io.EOF) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return 0, "", err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), nil
	}
}

// adminAddr is the admin endpoint of the tests' configurations.
func adminAddr() string { return fmt.Sprintf("localhost:%d", adminPort) }

// initServer loads cfg with caddytest, which starts Caddy in this process
// the first time. caddytest posts with http.DefaultTransport: its
// connections kept alive to an earlier admin server are dropped first (see
// adminClient).
func initServer(tester *caddytest.Tester, cfg string) {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	tester.InitServer(cfg, "caddyfile")
}

// waitServing waits until three requests in a row, each on a connection of
// its own, get an answer: the server of the previous test's configuration
// can still accept a connection while it shuts down, and close it unanswered
// (Caddy's listener handover; see TestGwReloadUnderLoad).
func waitServing(t *testing.T) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for ok := 0; ok < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway at %s does not answer steadily after the configuration load", gatewayURL)
		}
		res, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/.otpgate/ready", gatewayPort))
		if err != nil {
			ok = 0
			time.Sleep(20 * time.Millisecond)
			continue
		}
		res.Body.Close()
		ok++
	}
}

var testKey = func() string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}()

func (e *env) caddyfile(opt envOptions) string {
	require := "require_otp all"
	if opt.NoRequireAll {
		require = ""
	}
	mailLines := "mail_dir " + filepath.Join(e.dir, "mail")
	if opt.Mail != "" {
		mailLines = opt.Mail
	}
	return fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	skip_install_trust
}
:%d {
	otpgate {
		database %s
		secret_key %s
		issuer "テスト信用組合"
		home /menu
		%s
		mail_from otp@test-bank.example
		enrol_address any
		%s
		identity login_form {
			path /login
			cookie JSESSIONID
			success_location /menu
		}
		rule transfer {
			path /transfer/execute
			show to_bank 振込先金融機関 "Payee bank"
			show to_account 振込先口座 "Payee account" account
			show amount 金額 Amount yen
		}
		rule bill_payment {
			path /payment/execute
			show payee 収納機関 Payee
			show amount 金額 Amount yen
		}
		rule bulk_transfer {
			path /bulk/execute /payroll/execute
			show file 振込データ "Transfer file"
			show_file file zengin
		}
		rule user_change {
			path /profile/update
			show email メールアドレス E-mail
		}
		%s
	}
	reverse_proxy %s
}
`, adminPort, gatewayPort, gatewayPort, filepath.Join(e.dir, "otpgate.db"), testKey, require, mailLines, opt.Extra, strings.TrimPrefix(e.bankURL, "http://"))
}

// gw returns the gateway under test (for its token manager, store…).
func (e *env) gw() *Gateway {
	return gatewayOn(e.t, filepath.Join(e.dir, "otpgate.db"))
}

// auditTrail is the gateway's whole audit trail, read from its store.
func (e *env) auditTrail() []audit.Record {
	e.t.Helper()
	var out []audit.Record
	err := audit.Export(context.Background(), e.gw().shared.Store, time.Time{}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		e.t.Fatalf("exporting audit trail: %v", err)
	}
	return out
}

// customer is one browser (or API client) with its own cookie jar.
type customer struct {
	e            *env
	c            *http.Client
	Service, ID  string
	secret       []byte
	json         bool
	lastStepUsed int64
}

func (e *env) customer(service, user string) *customer {
	jar, _ := cookiejar.New(nil)
	return &customer{e: e, Service: service, ID: user, c: &http.Client{
		Transport:     caddytest.CreateTestingTransport(),
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request and returns the response with its body read.
func (c *customer) do(req *http.Request) (*http.Response, string) {
	c.e.t.Helper()
	if c.json && req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	res, err := c.c.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (c *customer) get(path string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+path, nil)
	return c.do(req)
}

// postForm posts an urlencoded form.
func (c *customer) postForm(path string, form url.Values) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// postJSON posts a JSON object as an API client.
func (c *customer) postJSON(path string, v any) (*http.Response, map[string]any) {
	c.e.t.Helper()
	res, _, out := c.postJSONRaw(path, v)
	return res, out
}

// postJSONRaw is postJSON, also returning the answer's body as sent.
func (c *customer) postJSONRaw(path string, v any) (*http.Response, string, map[string]any) {
	c.e.t.Helper()
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, body := c.do(req)
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	return res, body, out
}

// login logs in at the bank through the gateway.
func (c *customer) login() {
	c.e.t.Helper()
	res, _ := c.postForm("/login", url.Values{"service_id": {c.Service}, "user_id": {c.ID}, "password": {"demo"}})
	if res.StatusCode != http.StatusSeeOther {
		c.e.t.Fatalf("login %s/%s: status %d", c.Service, c.ID, res.StatusCode)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf loads a gateway page and returns its form's CSRF token.
func (c *customer) csrf(path string) string {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+path, nil)
	req.Header.Set("Accept", "text/html")
	_, body := c.do(req)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		c.e.t.Fatalf("no CSRF field on %s:\n%s", path, body)
	}
	return strings.ReplaceAll(m[1], "&#43;", "+")
}

// enrol runs STEP 1-3 through the gateway's JSON contract, reading the
// setup link from the mail folder, and remembers the secret.
func (c *customer) enrol() {
	c.e.t.Helper()
	email := strings.ToLower(c.ID) + "@mobile.example"
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": "4829"})
	if res.StatusCode != http.StatusOK {
		c.e.t.Fatalf("issue: %d %v", res.StatusCode, out)
	}
	link := c.e.setupLink(email)
	res, out = c.postJSON(strings.TrimPrefix(link, gatewayURL), map[string]string{"service_id": c.Service, "user_id": c.ID, "pin": "4829"})
	if res.StatusCode != http.StatusOK {
		c.e.t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	secret, _ := out["secret"].(string)
	c.secret, _ = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if len(c.secret) < 20 {
		c.e.t.Fatalf("setup secret %q shorter than 160 bits", secret)
	}
	res, out = c.postJSON("/.otpgate/token/confirm", map[string]string{"otp": c.code()})
	if res.StatusCode != http.StatusOK {
		c.e.t.Fatalf("activate: %d %v", res.StatusCode, out)
	}
}

// code returns a right code for a time step this customer has not used,
// advancing the shared clock a period when needed.
func (c *customer) code() string {
	step := c.e.clock.Now().Unix() / 60
	if step <= c.lastStepUsed {
		c.e.clock.Advance(60 * time.Second)
		step = c.e.clock.Now().Unix() / 60
	}
	c.lastStepUsed = step
	return totpAt(c.secret, step)
}

// The package's test helpers, one of each: totp and wrongCodeAt for codes,
// mailText for a mail's body, (*env).auditTrail for the trail, postJSON
// for JSON requests. The prefixed helpers of other files (gw*, enrol*,
// browser*) that do the same are thin wrappers of these, kept so that the
// tests using them read as before.

// totpAt is the code of step with the default settings (SHA1, 6 digits).
func totpAt(secret []byte, step int64) string { return totp(secret, step, 6, "SHA1") }

// totp is RFC 6238 / RFC 4226 written out here, independent of the
// gateway's implementation: HMAC over the step, dynamic truncation, digits
// digits. It is "" for an algorithm other than SHA1, SHA256 or SHA512.
func totp(secret []byte, step int64, digits int, algorithm string) string {
	h := map[string]func() hash.Hash{"SHA1": sha1.New, "SHA256": sha256.New, "SHA512": sha512.New}[strings.ToUpper(algorithm)]
	if h == nil {
		return ""
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m := hmac.New(h, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	o := sum[len(sum)-1] & 0xf
	v := binary.BigEndian.Uint32(sum[o:o+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod)
}

// wrongCodeAt is a six-digit code right for no step within three of step:
// wrong whatever window (skew 0-3) the gateway accepts.
func wrongCodeAt(secret []byte, step int64) string {
	near := map[string]bool{}
	for d := int64(-3); d <= 3; d++ {
		near[totpAt(secret, step+d)] = true
	}
	for n := 0; ; n++ {
		if code := fmt.Sprintf("%06d", (n*7919+424242)%1000000); !near[code] {
			return code
		}
	}
}

// wrongCode is a code no step near the clock accepts for c.
func (c *customer) wrongCode() string { return wrongCodeAt(c.secret, c.e.clock.Now().Unix()/60) }

var linkPattern = regexp.MustCompile(`https?://\S+/\.otpgate/setup/[A-Za-z0-9_-]+`)

// setupLink reads the newest setup mail to addr from the mail folder.
func (e *env) setupLink(addr string) string {
	e.t.Helper()
	for _, body := range e.mailsTo(addr) {
		if l := linkPattern.FindString(body); l != "" {
			return l
		}
	}
	e.t.Fatalf("no setup mail to %s in %s", addr, filepath.Join(e.dir, "mail"))
	return ""
}

// mailsTo are the bodies of the mails to addr in the mail folder, newest
// first.
func (e *env) mailsTo(addr string) []string {
	e.t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dir, "mail", "*.eml"))
	var bodies []string
	for i := len(files) - 1; i >= 0; i-- {
		f, err := os.Open(files[i])
		if err != nil {
			continue
		}
		msg, err := mail.ReadMessage(f)
		if err == nil && strings.Contains(msg.Header.Get("To"), addr) {
			bodies = append(bodies, decodeBody(e.t, msg))
		}
		f.Close()
	}
	return bodies
}

// decodeBody is msg's text; it fails the test if it cannot be read.
func decodeBody(t testing.TB, msg *mail.Message) string {
	t.Helper()
	text, err := mailText(msg)
	if err != nil {
		t.Fatalf("decoding mail body: %v", err)
	}
	return text
}

// mailText reads a single-part body, base64 or not. It returns an error
// rather than failing the test, for goroutines such as the SMTP relay's.
func mailText(msg *mail.Message) (string, error) {
	raw, err := io.ReadAll(msg.Body)
	if err != nil {
		return "", err
	}
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "base64") {
		dec, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
		return string(dec), err
	}
	return string(raw), nil
}

// ledger is what reached the bank.
func (e *env) ledger() []demobank.Entry { return e.bank.Ledger() }

var actionPattern = regexp.MustCompile(`<form[^>]+action="([^"]+)"`)

// regexpAction returns the first form action of a page.
func regexpAction(t *testing.T, page string) string {
	t.Helper()
	m := actionPattern.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form on page:\n%s", page)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}
