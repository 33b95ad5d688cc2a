package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

// Integration tests of the gateway core (issue 2, "Done when"), each through
// the real Caddy handler chain in front of the demo bank. Helpers here are
// prefixed gw so they do not clash with other test files of the package.

// gwTransfer is the transfer most tests pause and release.
var gwTransfer = url.Values{"to_bank": {"0001"}, "to_account": {"1234567"}, "amount": {"50000"}}

// gwCompletion marks the bank's completion page: the proof that an
// operation was executed.
const gwCompletion = "受付番号"

// gwEnrolled returns a browser customer who logged in through the gateway
// and activated a token.
func gwEnrolled(e *env, service, user string) *customer {
	e.t.Helper()
	c := e.customer(service, user)
	c.login()
	c.json = true
	c.enrol()
	c.json = false
	return c
}

// gwPause posts form to path as a browser and returns the challenge ID the
// gateway redirected to.
func gwPause(c *customer, path string, form url.Values) string {
	c.e.t.Helper()
	res, body := c.postForm(path, form)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		c.e.t.Fatalf("POST %s: status %d, Location %q; want 303 to the confirm page\n%s", path, res.StatusCode, loc, body)
	}
	return strings.TrimPrefix(loc, "/.otpgate/confirm/")
}

// gwPauseJSON posts form to path as an API client and returns the challenge
// ID of the 401 otp_required answer.
func gwPauseJSON(c *customer, path string, form url.Values) string {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, body := c.do(req)
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || out["error"] != "otp_required" || id == "" {
		c.e.t.Fatalf("POST %s as JSON: status %d %s; want 401 otp_required", path, res.StatusCode, body)
	}
	return id
}

// gwConfirmForm loads the confirm page of challenge id as a browser and
// posts code (plus extra fields) to the form's action. It returns the
// answer and the action it posted to.
func gwConfirmForm(c *customer, id, code string, extra url.Values) (*http.Response, string, string) {
	c.e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
	req.Header.Set("Accept", "text/html")
	res, page := c.do(req)
	if res.StatusCode != http.StatusOK {
		c.e.t.Fatalf("confirm page of %s: status %d\n%s", id, res.StatusCode, page)
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		c.e.t.Fatalf("no CSRF field on the confirm page:\n%s", page)
	}
	action := regexpAction(c.e.t, page)
	form := url.Values{"otp": {code}, "csrf": {strings.ReplaceAll(m[1], "&#43;", "+")}}
	for k, v := range extra {
		form[k] = v
	}
	res, body := c.postForm(action, form)
	return res, body, action
}

// gwPostJSON posts v as JSON to path and returns the answer, raw and decoded.
func gwPostJSON(c *customer, path string, v any) (*http.Response, string, map[string]any) {
	c.e.t.Helper()
	return c.postJSONRaw(path, v)
}

// gwConfirmJSON confirms challenge id with code as an API client.
func gwConfirmJSON(c *customer, id, code string) (*http.Response, string, map[string]any) {
	c.e.t.Helper()
	return gwPostJSON(c, "/.otpgate/confirm/"+id, map[string]string{"otp": code})
}

// gwCodeNow is the right code of the current step, without marking it used
// (c.code would then hand it out again).
func gwCodeNow(c *customer) string {
	return totpAt(c.secret, c.e.clock.Now().Unix()/60)
}

// gwWrongCode is a six-digit code that no step in the window accepts.
func gwWrongCode(c *customer) string { return c.wrongCode() }

// gwSession is the bank session cookie in c's cookie jar.
func gwSession(c *customer) string {
	u, _ := url.Parse(gatewayURL)
	for _, k := range c.c.Jar.Cookies(u) {
		if k.Name == "JSESSIONID" {
			return k.Value
		}
	}
	c.e.t.Fatalf("%s/%s has no JSESSIONID cookie", c.Service, c.ID)
	return ""
}

// gwWithCookie sends a request with exactly the Cookie header given,
// bypassing c's cookie jar.
func gwWithCookie(c *customer, method, path, cookie, contentType, body string, accept string) (*http.Response, string) {
	c.e.t.Helper()
	req, _ := http.NewRequest(method, gatewayURL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	cl := &http.Client{Transport: c.c.Transport, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(req)
	if err != nil {
		c.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// gwDBPath is the env's database file, the key of its store.
func gwDBPath(e *env) string { return filepath.Join(e.dir, "otpgate.db") }

// gwInPool reports whether a loaded configuration holds the env's
// database open.
func gwInPool(e *env) bool { return app.Opened(gwDBPath(e)) > 0 }

// gwLoad loads a Caddyfile through the admin API the way "otpgate reload"
// (caddy reload) does: adapted locally, posted as JSON to /load with
// Cache-Control: must-revalidate.
func gwLoad(t *testing.T, caddyfile string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting config: %v", err)
	}
	status, body, err := adminLoad(adminAddr(), cfg)
	if err != nil {
		t.Fatalf("loading config: %v", err)
	}
	if status != http.StatusOK {
		t.Fatalf("loading config: status %d %s", status, body)
	}
}

// gwRestart simulates a restart of the process: a config without otpgate
// makes the gateway release the bbolt file (the app closes it), then the
// gateway is loaded again on the same file.
func gwRestart(e *env, opt envOptions) {
	e.t.Helper()
	gwLoad(e.t, fmt.Sprintf("{\n\tadmin localhost:%d\n\thttp_port %d\n\tskip_install_trust\n}\n:%d {\n\trespond \"down for maintenance\" 503\n}\n", adminPort, gatewayPort, gatewayPort))
	if gwInPool(e) {
		e.t.Fatal("the database is still open after a config without otpgate was loaded")
	}
	gwLoad(e.t, e.caddyfile(opt))
	waitServing(e.t)
	if !gwInPool(e) {
		e.t.Fatal("the database is not open after the gateway was loaded again")
	}
}

// gwAudit is the gateway's whole audit trail.
func gwAudit(e *env) []audit.Record {
	e.t.Helper()
	return e.auditTrail()
}

// gwBankRequest is a request as it reached the bank.
type gwBankRequest struct {
	Method, RequestURI string
	Header             http.Header
	Body               []byte
}

// gwRecorder stands in front of the demo bank and keeps what reaches it.
type gwRecorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []gwBankRequest
}

func (r *gwRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, gwBankRequest{Method: req.Method, RequestURI: req.RequestURI, Header: req.Header.Clone(), Body: b})
	r.mu.Unlock()
	req.Body = io.NopCloser(bytes.NewReader(b))
	r.next.ServeHTTP(w, req)
}

// last is the newest request the bank received.
func (r *gwRecorder) last() gwBankRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		return gwBankRequest{}
	}
	return r.reqs[len(r.reqs)-1]
}

// gwRecordBank puts a recorder in front of e's bank and reloads the gateway
// to proxy to it.
func gwRecordBank(e *env, opt envOptions) *gwRecorder {
	e.t.Helper()
	rec := &gwRecorder{next: e.bank}
	srv := httptest.NewServer(rec)
	e.t.Cleanup(srv.Close)
	e.bankURL = srv.URL
	gwLoad(e.t, e.caddyfile(opt))
	waitServing(e.t)
	return rec
}

// gwWantError checks a JSON refusal.
func gwWantError(t *testing.T, what string, res *http.Response, out map[string]any, status int, code string) {
	t.Helper()
	if res.StatusCode != status || out["error"] != code {
		t.Errorf("%s: status %d %v; want %d {\"error\":%q}", what, res.StatusCode, out, status, code)
	}
}

// Wrong codes count per user: the browser sees a page with the attempts
// left, an API client 401 invalid_otp; the fifth wrong code locks the user
// (423) and discards the paused operation, and the lock survives a restart.
func TestGwWrongCodesLockSurvivesRestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	browser := gwEnrolled(e, "S001", "U001")
	api := gwEnrolled(e, "S001", "U002")
	api.json = true

	bid := gwPause(browser, "/transfer/execute", gwTransfer)
	for i := 1; i <= 5; i++ {
		res, body, _ := gwConfirmForm(browser, bid, gwWrongCode(browser), nil)
		switch {
		case i < 5 && (res.StatusCode != http.StatusOK || !strings.Contains(body, fmt.Sprintf("あと%d回", 5-i))):
			t.Fatalf("browser wrong code %d: status %d; want 200 page with %d attempts left\n%s", i, res.StatusCode, 5-i, body)
		case i == 5 && res.StatusCode != http.StatusLocked:
			t.Fatalf("browser wrong code 5: status %d; want 423", res.StatusCode)
		}
	}

	aid := gwPauseJSON(api, "/transfer/execute", gwTransfer)
	for i := 1; i <= 5; i++ {
		res, _, out := gwConfirmJSON(api, aid, gwWrongCode(api))
		if i < 5 {
			if res.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_otp" || out["attempts_left"] != float64(5-i) {
				t.Fatalf("JSON wrong code %d: %d %v; want 401 invalid_otp attempts_left %d", i, res.StatusCode, out, 5-i)
			}
			continue
		}
		gwWantError(t, "JSON wrong code 5", res, out, http.StatusLocked, "locked")
	}

	// The paused operations are gone: even the right code releases nothing.
	for _, x := range []struct {
		c  *customer
		id string
	}{{browser, bid}, {api, aid}} {
		res, _, out := gwConfirmJSON(x.c, x.id, gwCodeNow(x.c))
		gwWantError(t, x.c.ID+": right code after the lock", res, out, http.StatusGone, gate.ChallengeGone)
		res, _ = x.c.get("/.otpgate/confirm/" + x.id)
		if res.StatusCode != http.StatusGone {
			t.Errorf("%s: confirm page after the lock: status %d; want 410", x.c.ID, res.StatusCode)
		}
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("ledger after the lock: %+v; want empty", l)
	}

	gwRestart(e, envOptions{})

	res, body := browser.postForm("/transfer/execute", gwTransfer)
	if res.StatusCode != http.StatusLocked {
		t.Errorf("browser transfer after restart: status %d; want 423\n%s", res.StatusCode, body)
	}
	res, body = api.postForm("/transfer/execute", gwTransfer)
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	gwWantError(t, "JSON transfer after restart", res, out, http.StatusLocked, "locked")
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("ledger after restart: %+v; want empty", l)
	}
	var locked int
	for _, r := range gwAudit(e) {
		if r.Event == audit.Locked {
			locked++
		}
	}
	if locked != 2 {
		t.Errorf("audit trail has %d lock records; want 2", locked)
	}
}

// A code's time step is spent once per user: the same code on the next
// operation is refused with 409, which leaves that operation waiting for
// the next code.
func TestGwSpentStepRefusedOnNextOperation(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	c.json = true

	first := gwPauseJSON(c, "/transfer/execute", gwTransfer)
	code := c.code()
	res, body, _ := gwConfirmJSON(c, first, code)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("first confirmation: status %d; want the bank's completion page\n%s", res.StatusCode, body)
	}

	second := gwPauseJSON(c, "/payment/execute", url.Values{"payee": {"東京電力"}, "amount": {"3000"}})
	res, _, out := gwConfirmJSON(c, second, code)
	gwWantError(t, "same code on the next operation (JSON)", res, out, http.StatusConflict, "otp_reused")

	c.json = false
	third := gwPause(c, "/transfer/execute", url.Values{"to_bank": {"0005"}, "to_account": {"7654321"}, "amount": {"100"}})
	res, page, _ := gwConfirmForm(c, third, code, nil)
	if res.StatusCode != http.StatusConflict {
		t.Errorf("same code on the next operation (browser): status %d; want 409\n%s", res.StatusCode, page)
	}
	if n := len(e.ledger()); n != 1 {
		t.Fatalf("ledger has %d entries after the reused code; want 1", n)
	}

	// The refused operation still waits, and the next code releases it.
	res, body, _ = gwConfirmJSON(c, second, c.code())
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("next code: status %d; want the bank's completion page\n%s", res.StatusCode, body)
	}
	l := e.ledger()
	if len(l) != 2 || l[1].Op != "bill_payment" || l[1].Params["amount"] != "3000" {
		t.Fatalf("ledger = %+v; want the transfer and then the payment of 3000", l)
	}
}

// Twenty concurrent submissions of the right code to one challenge release
// it exactly once; every other submission is answered 410 (or 409).
func TestGwConcurrentConfirmationsReleaseOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPauseJSON(c, "/transfer/execute", gwTransfer)
	code := c.code()
	body, _ := json.Marshal(map[string]string{"otp": code})

	const n = 20
	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/.otpgate/confirm/"+id, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			<-start
			res, err := c.c.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			answers[i] = answer{status: res.StatusCode, body: string(b), err: err}
		}()
	}
	close(start)
	wg.Wait()

	var released, refused int
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("submission %d: %v", i, a.err)
		case a.status == http.StatusOK && strings.Contains(a.body, gwCompletion):
			released++
		case a.status == http.StatusGone || a.status == http.StatusConflict:
			refused++
		default:
			t.Errorf("submission %d: status %d %s", i, a.status, a.body)
		}
	}
	if released != 1 || refused != n-1 {
		t.Errorf("%d released, %d refused; want 1 and %d", released, refused, n-1)
	}
	l := e.ledger()
	if len(l) != 1 || l[0].Params["amount"] != "50000" {
		t.Fatalf("ledger = %+v; want exactly one transfer", l)
	}
}

// A paused operation lives five minutes.
func TestGwExpiredChallengeGone(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	c.json = true
	e.clock.Advance(5*time.Minute + time.Second)
	res, _, out := gwConfirmJSON(c, id, c.code())
	gwWantError(t, "confirmation after 5 minutes", res, out, http.StatusGone, "challenge_gone")
	c.json = false
	res, _ = c.get("/.otpgate/confirm/" + id)
	if res.StatusCode != http.StatusGone {
		t.Errorf("confirm page after 5 minutes: status %d; want 410", res.StatusCode)
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries; want 0", n)
	}
}

// A challenge is confirmed only by the session that created it: another
// customer, or the same customer in another login, is told it is gone, and
// that costs the owner nothing.
func TestGwOtherSessionCannotConfirm(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := gwEnrolled(e, "S001", "U001")
	b := gwEnrolled(e, "S002", "U101")
	id := gwPause(a, "/transfer/execute", gwTransfer)

	// B as an API client, with B's own right code.
	res, _, out := gwConfirmJSON(b, id, b.code())
	gwWantError(t, "B confirms A's challenge (JSON)", res, out, http.StatusGone, "challenge_gone")
	// B as a browser, at A's form action, with B's own CSRF token.
	bid := gwPause(b, "/transfer/execute", url.Values{"to_bank": {"9999"}, "to_account": {"666"}, "amount": {"1"}})
	token := b.csrf("/.otpgate/confirm/" + bid)
	res, page := b.postForm("/transfer/execute"+gate.ConfirmMarker+id, url.Values{"otp": {b.code()}, "csrf": {token}})
	if res.StatusCode != http.StatusGone {
		t.Errorf("B confirms A's challenge (form): status %d; want 410\n%s", res.StatusCode, page)
	}
	res, _ = b.get("/.otpgate/confirm/" + id)
	if res.StatusCode != http.StatusGone {
		t.Errorf("B loads A's confirm page: status %d; want 410", res.StatusCode)
	}
	// A again, logged in in a second browser.
	a2 := e.customer("S001", "U001")
	a2.login()
	a2.secret = a.secret
	res, _, out = gwConfirmJSON(a2, id, gwCodeNow(a))
	gwWantError(t, "A's second login confirms A's challenge", res, out, http.StatusGone, "challenge_gone")
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries; want 0", n)
	}

	res, body, _ := gwConfirmForm(a, id, a.code(), nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("A confirms own challenge: status %d; want the bank's completion page\n%s", res.StatusCode, body)
	}
	l := e.ledger()
	if len(l) != 1 || l[0].User != "U001" || l[0].Params["amount"] != "50000" {
		t.Fatalf("ledger = %+v; want A's transfer only", l)
	}
}

// A form confirmation without a valid CSRF token is refused 403, and a JSON
// confirmation must be application/json; neither counts a failure nor spends
// the code.
func TestGwConfirmationCSRFAndContentType(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := gwEnrolled(e, "S001", "U001")
	b := gwEnrolled(e, "S001", "U002")
	id := gwPause(a, "/transfer/execute", gwTransfer)
	action := "/transfer/execute" + gate.ConfirmMarker + id
	code := a.code() // unspent; used only by the final, valid confirmation

	// B's CSRF cookie and a token made for it, in B's session.
	bid := gwPause(b, "/transfer/execute", gwTransfer)
	bToken := b.csrf("/.otpgate/confirm/" + bid)
	var bCSRFCookie string
	u, _ := url.Parse(gatewayURL)
	for _, k := range b.c.Jar.Cookies(u) {
		if k.Name == gate.CSRFCookie {
			bCSRFCookie = k.Value
		}
	}
	aToken := a.csrf("/.otpgate/confirm/" + id)
	const form = "application/x-www-form-urlencoded"
	aCookie := "JSESSIONID=" + gwSession(a)

	tests := []struct {
		name, cookie, contentType, body string
		want                            int
	}{
		{"no CSRF token", "", form, url.Values{"otp": {code}}.Encode(), http.StatusForbidden},
		{"empty CSRF token", "", form, url.Values{"otp": {code}, "csrf": {""}}.Encode(), http.StatusForbidden},
		{"wrong CSRF token", "", form, url.Values{"otp": {code}, "csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}.Encode(), http.StatusForbidden},
		{"token of another session", "", form, url.Values{"otp": {code}, "csrf": {bToken}}.Encode(), http.StatusForbidden},
		{"token and CSRF cookie of another session", aCookie + "; " + gate.CSRFCookie + "=" + bCSRFCookie, form,
			url.Values{"otp": {code}, "csrf": {bToken}}.Encode(), http.StatusForbidden},
		{"own token without the CSRF cookie", aCookie, form, url.Values{"otp": {code}, "csrf": {aToken}}.Encode(), http.StatusForbidden},
		{"multipart without token", "", "multipart/form-data; boundary=xx",
			"--xx\r\nContent-Disposition: form-data; name=\"otp\"\r\n\r\n" + code + "\r\n--xx--\r\n", http.StatusForbidden},
		{"JSON as text/plain", "", "text/plain", `{"otp":"` + code + `"}`, http.StatusUnsupportedMediaType},
		{"JSON without a content type", "", "", `{"otp":"` + code + `"}`, http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		for _, path := range []string{action, "/.otpgate/confirm/" + id} {
			var res *http.Response
			var body string
			if tt.cookie != "" {
				res, body = gwWithCookie(a, http.MethodPost, path, tt.cookie, tt.contentType, tt.body, "")
			} else {
				req, _ := http.NewRequest(http.MethodPost, gatewayURL+path, strings.NewReader(tt.body))
				if tt.contentType != "" {
					req.Header.Set("Content-Type", tt.contentType)
				}
				res, body = a.do(req)
			}
			if res.StatusCode != tt.want || strings.Contains(body, gwCompletion) {
				t.Errorf("%s at %s: status %d; want %d", tt.name, path, res.StatusCode, tt.want)
			}
		}
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries; want 0", n)
	}
	// No failure was counted and the code was not spent.
	res, _, out := gwConfirmJSON(a, id, gwWrongCode(a))
	if res.StatusCode != http.StatusUnauthorized || out["attempts_left"] != float64(4) {
		t.Errorf("first counted wrong code: %d %v; want 401 with 4 attempts left", res.StatusCode, out)
	}
	res, body, _ := gwConfirmForm(a, id, code, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("confirmation with the refused code: status %d; want the completion page\n%s", res.StatusCode, body)
	}
}

// Whatever is sent with the confirmation, the bank receives the stored
// request: same method, URI and body byte for byte, and the audit trail's
// release record carries its digest and fields.
func TestGwConfirmationAddsNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	rec := gwRecordBank(e, envOptions{})
	c := gwEnrolled(e, "S001", "U001")

	tests := []struct {
		name        string
		contentType string
		body        string
		json        bool
		want        map[string]string
	}{
		{"form", "application/x-www-form-urlencoded", "to_bank=0001&to_account=1234567&amount=50000&memo=%E5%AE%B6%E8%B3%83", false,
			map[string]string{"to_bank": "0001", "to_account": "1234567", "amount": "50000", "memo": "家賃"}},
		{"JSON", "application/json", `{"to_bank":"0009","to_account":"7777777","amount":"120000"}`, true,
			map[string]string{"to_bank": "0009", "to_account": "7777777", "amount": "120000"}},
	}
	for _, tt := range tests {
		before := len(e.ledger())
		req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", tt.contentType)
		req.Header.Set("X-Client-Ref", "ref-"+tt.name)
		if tt.json {
			req.Header.Set("Accept", "application/json")
		}
		res, body := c.do(req)
		var id string
		if tt.json {
			var out map[string]any
			json.Unmarshal([]byte(body), &out)
			id, _ = out["challenge"].(string)
		} else {
			id = strings.TrimPrefix(res.Header.Get("Location"), "/.otpgate/confirm/")
		}
		if id == "" {
			t.Fatalf("%s: not paused: %d %s", tt.name, res.StatusCode, body)
		}

		// The confirmation carries other values for the fields, a method
		// override, and extra query parameters.
		var done string
		if tt.json {
			b, _ := json.Marshal(map[string]string{"otp": c.code(), "amount": "99999999", "to_account": "evil", "_method": "DELETE"})
			req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/.otpgate/confirm/"+id+"?amount=99999999&to_account=evil", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("X-HTTP-Method-Override", "DELETE")
			res, done = c.do(req)
		} else {
			token := c.csrf("/.otpgate/confirm/" + id)
			form := url.Values{"otp": {c.code()}, "csrf": {token}, "amount": {"99999999"}, "to_account": {"evil"}, "_method": {"PUT"}}
			req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute"+gate.ConfirmMarker+id+"?amount=99999999&to_account=evil&memo=x",
				strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-HTTP-Method-Override", "PUT")
			res, done = c.do(req)
		}
		if res.StatusCode != http.StatusOK || !strings.Contains(done, gwCompletion) {
			t.Fatalf("%s: confirmation: status %d; want the completion page\n%s", tt.name, res.StatusCode, done)
		}
		l := e.ledger()
		if len(l) != before+1 {
			t.Fatalf("%s: ledger grew by %d; want 1", tt.name, len(l)-before)
		}
		got := l[len(l)-1]
		if got.Method != "POST" || !maps.Equal(got.Params, tt.want) {
			t.Errorf("%s: bank executed %s %v; want POST %v", tt.name, got.Method, got.Params, tt.want)
		}
		br := rec.last()
		if br.Method != http.MethodPost || br.RequestURI != "/transfer/execute" || string(br.Body) != tt.body {
			t.Errorf("%s: bank received %s %s %q; want POST /transfer/execute %q", tt.name, br.Method, br.RequestURI, br.Body, tt.body)
		}
		if br.Header.Get("Content-Type") != tt.contentType || br.Header.Get("X-Client-Ref") != "ref-"+tt.name || br.Header.Get("X-Http-Method-Override") != "" {
			t.Errorf("%s: bank received headers %v", tt.name, br.Header)
		}
		if !strings.Contains(br.Header.Get("Cookie"), "JSESSIONID="+gwSession(c)) || strings.Contains(br.Header.Get("Cookie"), gate.CSRFCookie) {
			t.Errorf("%s: bank received cookies %q; want the session without the gateway's CSRF cookie", tt.name, br.Header.Get("Cookie"))
		}

		// The audit trail: the release has the digest of the paused request.
		var challengeDigest string
		var released *audit.Record
		for _, r := range gwAudit(e) {
			switch {
			case r.Event == audit.Challenge && r.Fields["amount"] == tt.want["amount"]:
				challengeDigest = r.Digest
			case r.Event == audit.Released && r.Fields["amount"] == tt.want["amount"]:
				released = &r
			}
		}
		switch {
		case released == nil:
			t.Errorf("%s: no released record in the audit trail", tt.name)
		case released.Digest == "" || released.Digest != challengeDigest:
			t.Errorf("%s: released digest %q; want the challenge's %q", tt.name, released.Digest, challengeDigest)
		case released.Fields["to_account"] != tt.want["to_account"] || released.Request != "POST /transfer/execute" || released.User != "U001":
			t.Errorf("%s: released record %+v", tt.name, *released)
		}
	}
}

// The confirm page shows the fields of the stored request, whatever the
// query of the page's own URL says.
func TestGwConfirmPageShowsStoredFields(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	query := "?amount=99999999&to_account=evil&to_bank=6666"
	res, page := c.get("/.otpgate/confirm/" + id + query)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("confirm page: status %d", res.StatusCode)
	}
	for _, want := range []string{"50,000円", "1234567", "0001"} {
		if !strings.Contains(page, want) {
			t.Errorf("confirm page lacks the stored %q", want)
		}
	}
	for _, bad := range []string{"99999999", "evil", "6666"} {
		if strings.Contains(page, bad) {
			t.Errorf("confirm page shows %q from its own query", bad)
		}
	}
	c.json = true
	res, body := c.get("/.otpgate/confirm/" + id + query)
	var out struct {
		Fields []struct{ Name, Value string }
	}
	json.Unmarshal([]byte(body), &out)
	got := map[string]string{}
	for _, f := range out.Fields {
		got[f.Name] = f.Value
	}
	if res.StatusCode != http.StatusOK || !maps.Equal(got, map[string]string{"to_bank": "0001", "to_account": "1234567", "amount": "50000"}) {
		t.Errorf("confirm JSON: %d %s", res.StatusCode, body)
	}

	// A Shift_JIS form is shown decoded.
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute", strings.NewReader("to_bank=%82%DD%82%B8%82%D9&to_account=1234567&amount=10000"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=Shift_JIS")
	res, body = c.do(req)
	var paused map[string]any
	json.Unmarshal([]byte(body), &paused)
	sid, _ := paused["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || sid == "" {
		t.Fatalf("Shift_JIS transfer: %d %s; want 401 otp_required", res.StatusCode, body)
	}
	_, body = c.get("/.otpgate/confirm/" + sid)
	if !strings.Contains(body, `"value":"みずほ"`) {
		t.Errorf("Shift_JIS payee bank not decoded: %s", body)
	}
}

// A store that fails refuses protected operations with 503, for browsers
// and API clients alike, while ordinary pages still reach the bank.
func TestGwStoreFailingRefusesProtected(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	token := c.csrf("/.otpgate/confirm/" + id)

	db, ok := baseStore(e.gw().shared.Store).(*boltstore.DB)
	if !ok {
		t.Fatalf("store is %T; want *boltstore.DB", e.gw().shared.Store)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	for _, asJSON := range []bool{false, true} {
		c.json = asJSON
		res, body := c.postForm("/transfer/execute", gwTransfer)
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("transfer (json=%v): status %d; want 503\n%s", asJSON, res.StatusCode, body)
		}
		res, body = c.postForm("/bulk/execute", url.Values{"file": {"x"}})
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("bulk transfer (json=%v): status %d; want 503\n%s", asJSON, res.StatusCode, body)
		}
	}
	c.json = false
	res, body := c.postForm("/transfer/execute"+gate.ConfirmMarker+id, url.Values{"otp": {c.code()}, "csrf": {token}})
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("confirmation: status %d; want 503\n%s", res.StatusCode, body)
	}
	res, out := c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": c.code()})
	gwWantError(t, "JSON confirmation", res, out, http.StatusServiceUnavailable, "store_unavailable")
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries; want 0", n)
	}

	res, body = c.get("/menu")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "振込") {
		t.Errorf("/menu: status %d; want the bank's menu\n%s", res.StatusCode, body)
	}
	res, body = c.get("/transfer")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "to_account") {
		t.Errorf("/transfer form: status %d; want the bank's form", res.StatusCode)
	}
	anon := e.customer("S001", "U002")
	res, body = anon.get("/login")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "password") {
		t.Errorf("GET /login: status %d; want the bank's login page", res.StatusCode)
	}
}

// Sessions: the identity comes only from the cookie the bank set at login
// (never one the client chose), and ends at logout and after an idle hour.
func TestGwSessionBinding(t *testing.T) {
	e := newEnv(t, envOptions{})
	transfer := func(c *customer, cookie string) (*http.Response, map[string]any) {
		res, body := gwWithCookie(c, http.MethodPost, "/transfer/execute", cookie, "application/x-www-form-urlencoded", gwTransfer.Encode(), "application/json")
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		return res, out
	}
	// Unenrolled customers: a known identity is sent to enrolment, an
	// unknown one must log in.

	// Fixation: a cookie chosen before login is never bound.
	f := e.customer("S001", "U001")
	u, _ := url.Parse(gatewayURL)
	const fixed = "0123456789abcdef0123456789abcdef"
	f.c.Jar.SetCookies(u, []*http.Cookie{{Name: "JSESSIONID", Value: fixed, Path: "/"}})
	f.login()
	set := gwSession(f)
	if set == fixed {
		t.Fatal("the bank kept the planted session ID")
	}
	res, out := transfer(f, "JSESSIONID="+fixed)
	gwWantError(t, "transfer with the planted cookie", res, out, http.StatusForbidden, "login_required")
	res, out = transfer(f, "JSESSIONID="+set)
	gwWantError(t, "transfer with the cookie the bank set", res, out, http.StatusForbidden, "enrollment_required")

	// Logout drops the binding.
	l := e.customer("S001", "U002")
	l.login()
	old := gwSession(l)
	res, out = transfer(l, "JSESSIONID="+old)
	gwWantError(t, "transfer before logout", res, out, http.StatusForbidden, "enrollment_required")
	res, _ = l.postForm("/logout", nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: status %d", res.StatusCode)
	}
	res, out = transfer(l, "JSESSIONID="+old)
	gwWantError(t, "transfer after logout with the old cookie", res, out, http.StatusForbidden, "login_required")

	// Idle timeout: an hour without the gateway seeing the session.
	i := e.customer("S002", "U101")
	i.login()
	sid := gwSession(i)
	res, out = transfer(i, "JSESSIONID="+sid)
	gwWantError(t, "transfer while active", res, out, http.StatusForbidden, "enrollment_required")
	e.clock.Advance(time.Hour + time.Minute)
	res, out = transfer(i, "JSESSIONID="+sid)
	gwWantError(t, "transfer after an idle hour", res, out, http.StatusForbidden, "login_required")
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries; want 0", n)
	}
}

var gwHref = regexp.MustCompile(`href="([^"]+)"`)

// The bank's completion page answers at the URL the confirm form posted to
// (the operation's own path), so its relative links resolve into the site.
func TestGwCompletionRelativeLinks(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	for _, path := range []string{"/transfer/execute", "/profile/update"} {
		form := gwTransfer
		if path == "/profile/update" {
			form = url.Values{"email": {"new@example.jp"}, "phone": {"03-0000-0000"}}
		}
		id := gwPause(c, path, form)
		res, body, action := gwConfirmForm(c, id, c.code(), nil)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
			t.Fatalf("%s: confirmation: status %d; want the completion page", path, res.StatusCode)
		}
		if !strings.HasPrefix(action, path+gate.ConfirmMarker) {
			t.Errorf("%s: form action %q; want the operation's path with %s", path, action, gate.ConfirmMarker)
		}
		base, err := url.Parse(gatewayURL + action)
		if err != nil {
			t.Fatal(err)
		}
		if got := base.ResolveReference(&url.URL{Path: "../menu"}).Path; got != "/menu" {
			t.Errorf("%s: ../menu resolves to %s; want /menu", path, got)
		}
		links := gwHref.FindAllStringSubmatch(body, -1)
		if len(links) == 0 {
			t.Fatalf("%s: completion page without links", path)
		}
		for _, m := range links {
			ref, _ := url.Parse(m[1])
			target := base.ResolveReference(ref)
			res, _ := c.get(target.RequestURI())
			if res.StatusCode != http.StatusOK {
				t.Errorf("%s: link %s → %s: status %d", path, m[1], target.Path, res.StatusCode)
			}
		}
	}
	if n := len(e.ledger()); n != 2 {
		t.Fatalf("ledger has %d entries; want 2", n)
	}
}

// Every gateway answer carries the anti-framing, no-store, no-referrer and
// CSP headers.
func TestGwSecurityHeaders(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	anon := e.customer("S001", "U002")
	id := gwPause(c, "/transfer/execute", gwTransfer)

	type probe struct {
		name string
		res  *http.Response
	}
	var probes []probe
	add := func(name string, res *http.Response) { probes = append(probes, probe{name, res}) }

	res, _ := c.postForm("/transfer/execute", gwTransfer)
	add("303 to confirm", res)
	res, _ = c.get("/.otpgate/confirm/" + id)
	add("confirm page", res)
	res, _, _ = gwConfirmForm(c, id, gwWrongCode(c), nil)
	add("wrong code page", res)
	res, _ = c.get("/.otpgate/token")
	add("token page", res)
	res, _ = c.get("/.otpgate/confirm/unknown")
	add("410 page", res)
	res, _ = anon.postForm("/transfer/execute", gwTransfer)
	add("403 page", res)
	res, _ = c.get("/.otpgate/nowhere")
	add("404 page", res)
	c.json = true
	res, _ = c.postForm("/transfer/execute", gwTransfer)
	add("401 JSON", res)
	res, _, _ = gwConfirmJSON(c, id, gwWrongCode(c))
	add("invalid_otp JSON", res)

	for _, p := range probes {
		h := p.res.Header
		if h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", p.name, h.Get("X-Frame-Options"))
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", p.name, csp)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", p.name, h.Get("Cache-Control"))
		}
		if h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: Referrer-Policy %q", p.name, h.Get("Referrer-Policy"))
		}
	}
}
