package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
)

// Released at most once, on the wire (issue 6, class 6; SECURITY.md 29-30):
// the bank executes a released operation and drops the connection without
// answering. No layer below the gateway may send it again — not Go's
// transport, which re-sends a "replayable" request (GET, or any request
// with an Idempotency-Key and no body to rewind) after a reused connection
// fails, and not reverse_proxy's lb_retries or lb_try_duration — and the
// customer and the audit trail are told that the outcome is unknown.

// onceDropPath is the operation the bank executes and then hangs up on.
const onceDropPath = "/transfer/execute"

// onceSlowPath is an operation the bank takes onceSlow to answer.
const (
	onceSlowPath = "/profile/update"
	onceSlow     = 500 * time.Millisecond
)

// onceConnKey holds, in a bank connection's context, its *onceConn.
type onceConnKey struct{}

// onceConn is one connection to the bank and how many requests it has
// carried.
type onceConn struct {
	net.Conn
	requests atomic.Int32
}

// onceBank stands in front of the demo bank, speaking HTTP/1.1 and h2c. A
// request to onceDropPath is executed (counted, its body read) and answered
// by closing the connection (hijacked on HTTP/1.1; on HTTP/2 the whole
// connection); everything else goes to the demo bank.
type onceBank struct {
	next http.Handler
	mu   sync.Mutex
	runs []onceRun
}

// onceRun is one execution of the dropped operation.
type onceRun struct {
	Method, RequestURI, Proto string
	Reused                    bool // the connection had carried a request before
}

func (b *onceBank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(onceConnKey{}).(*onceConn)
	n := c.requests.Add(1)
	if r.URL.Path == onceSlowPath {
		time.Sleep(onceSlow)
	}
	if r.URL.Path != onceDropPath {
		b.next.ServeHTTP(w, r)
		return
	}
	io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	b.runs = append(b.runs, onceRun{Method: r.Method, RequestURI: r.RequestURI, Proto: r.Proto, Reused: n > 1})
	b.mu.Unlock()
	if r.ProtoMajor == 2 {
		c.Close()
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func (b *onceBank) executed() []onceRun {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]onceRun(nil), b.runs...)
}

// newOnceBank puts a onceBank in front of e's demo bank on loopback.
func newOnceBank(e *env) (*onceBank, *httptest.Server) {
	b := &onceBank{next: e.bank}
	srv := httptest.NewUnstartedServer(b)
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, onceConnKey{}, &onceConn{Conn: c})
	}
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	e.t.Cleanup(srv.Close)
	return b, srv
}

// onceLoad loads the gateway in front of bankURL, with lb as the body of
// the reverse_proxy block (none if empty).
func onceLoad(e *env, bankURL, lb string) {
	e.t.Helper()
	e.bankURL = bankURL
	host := strings.TrimPrefix(bankURL, "http://")
	cf := e.caddyfile(envOptions{})
	if lb != "" {
		cf = strings.Replace(cf, "reverse_proxy "+host+"\n", "reverse_proxy "+host+" {\n"+lb+"\t}\n", 1)
	}
	gwLoad(e.t, cf)
	waitServing(e.t)
}

// The ways a release could be sent again below the gateway, and the
// protocol each speaks to the bank. On HTTP/2 a retry is a new stream,
// which the guard stops by closing the connection it was to go out on.
var onceProxies = []struct{ name, lb, proto string }{
	{"default reverse_proxy", "", "HTTP/1.1"},
	{"lb_retries", "\t\tlb_retries 3\n\t\tlb_retry_match {\n\t\t\tmethod POST GET\n\t\t}\n", "HTTP/1.1"},
	{"lb_try_duration", "\t\tlb_try_duration 5s\n\t\tlb_retry_match {\n\t\t\tmethod POST GET\n\t\t}\n", "HTTP/1.1"},
	{"h2c lb_retries", "\t\ttransport http {\n\t\t\tversions h2c\n\t\t}\n\t\tlb_retries 3\n\t\tlb_retry_match {\n\t\t\tmethod POST GET\n\t\t}\n", "HTTP/2.0"},
}

// onceOps are operations paused and released through each proxy: what Go's
// transport deems replayable (GET; an empty POST with an Idempotency-Key,
// whose body reverse_proxy sets to nil) and what only reverse_proxy's
// retries would send again (a POST with a body, with and without a key).
var onceOps = []struct {
	name        string
	method      string
	query, body string
	header      http.Header
	json        bool // confirm as an API client
}{
	{name: "GET", method: http.MethodGet, query: "?" + gwTransfer.Encode()},
	{name: "POST Idempotency-Key", method: http.MethodPost, body: gwTransfer.Encode(), header: http.Header{"Idempotency-Key": {"k-1"}}, json: true},
	{name: "empty POST X-Idempotency-Key", method: http.MethodPost, header: http.Header{"X-Idempotency-Key": {"k-2"}}},
	{name: "plain POST", method: http.MethodPost, body: gwTransfer.Encode(), json: true},
}

func TestReleaseOnceOnTheWire(t *testing.T) {
	e := newEnv(t, envOptions{})
	bank, srv := newOnceBank(e)
	onceLoad(e, srv.URL, "")
	c := gwEnrolled(e, "S001", "U001")

	for _, px := range onceProxies {
		onceLoad(e, srv.URL, px.lb)
		for _, op := range onceOps {
			t.Run(px.name+"/"+op.name, func(t *testing.T) {
				before := len(bank.executed())
				id := oncePause(c, op.method, onceDropPath+op.query, op.body, op.header)
				// A keep-alive connection to the bank, so that the release
				// goes out on a reused one, the case Go's transport retries.
				if res, _ := c.get("/menu"); res.StatusCode != http.StatusOK {
					t.Fatalf("GET /menu: %d", res.StatusCode)
				}
				trail := len(gwAudit(e))
				start := time.Now()
				var res *http.Response
				var body string
				if op.json {
					res, body, _ = gwConfirmJSON(c, id, c.code())
				} else {
					res, body, _ = gwConfirmForm(c, id, c.code(), nil)
				}
				took := time.Since(start)
				t.Logf("release answered in %v", took.Round(time.Millisecond))

				runs := bank.executed()[before:]
				if len(runs) != 1 {
					t.Fatalf("the bank executed the released operation %d times: %+v; want once", len(runs), runs)
				}
				if !runs[0].Reused {
					t.Errorf("the release went out on a fresh connection; the test needs a reused one")
				}
				if runs[0].Method != op.method || runs[0].RequestURI != onceDropPath+op.query || runs[0].Proto != px.proto {
					t.Errorf("the bank executed %s %s over %s; want %s %s over %s", runs[0].Method, runs[0].RequestURI, runs[0].Proto, op.method, onceDropPath+op.query, px.proto)
				}
				onceWantUnknown(t, res, body, op.json)
				if took > 4500*time.Millisecond {
					t.Errorf("release took %v: a retry loop ran instead of stopping", took)
				}
				onceWantAudit(t, gwAudit(e)[trail:], audit.ReleaseError, "outcome unknown")

				// The bank's connection pool still works for the customer.
				if res, _ := c.get("/menu"); res.StatusCode != http.StatusOK {
					t.Errorf("GET /menu after the dropped release: %d", res.StatusCode)
				}
			})
		}
		// An operation the bank answers is released once and its answer
		// reaches the customer: the guard lets the first connection be.
		t.Run(px.name+"/answered", func(t *testing.T) {
			ledger := len(e.ledger())
			id := oncePause(c, http.MethodPost, "/payment/execute", url.Values{"payee": {"東京電力"}, "amount": {"8000"}}.Encode(), nil)
			c.get("/menu")
			trail := len(gwAudit(e))
			res, body, _ := gwConfirmForm(c, id, c.code(), nil)
			if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
				t.Errorf("released payment: status %d, want the bank's completion page\n%s", res.StatusCode, body)
			}
			if n := len(e.ledger()) - ledger; n != 1 {
				t.Errorf("the bank executed the payment %d times, want once", n)
			}
			onceWantAudit(t, gwAudit(e)[trail:], audit.Released, "upstream status 200")
		})
	}
}

// When no connection to the bank can be made, nothing was sent: the
// customer is told the operation was not executed, and so is the audit.
func TestReleaseBankUnreachable(t *testing.T) {
	e := newEnv(t, envOptions{})
	bank, srv := newOnceBank(e)
	onceLoad(e, srv.URL, "")
	c := gwEnrolled(e, "S001", "U001")
	id := oncePause(c, http.MethodPost, onceDropPath, gwTransfer.Encode(), nil)
	srv.Close()
	trail := len(gwAudit(e))

	res, body, _ := gwConfirmForm(c, id, c.code(), nil)
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(body, "お取引は実行されていません") || !strings.Contains(body, "やり直してください") {
		t.Errorf("release to an unreachable bank: status %d, want 502 saying it was not executed\n%s", res.StatusCode, body)
	}
	if runs := bank.executed(); len(runs) != 0 {
		t.Errorf("the bank executed %+v", runs)
	}
	onceWantAudit(t, gwAudit(e)[trail:], audit.ReleaseError, "not executed")
}

// A customer who leaves while the bank is still working does not cancel
// the release: the bank executes it once, and the audit trail records the
// bank's own answer, not the 499 of a client that went away.
func TestReleaseOutlivesCustomer(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, srv := newOnceBank(e)
	onceLoad(e, srv.URL, "")
	c := gwEnrolled(e, "S001", "U001")
	id := oncePause(c, http.MethodPost, onceSlowPath, url.Values{"email": {"new@example.jp"}, "phone": {"03-0000-0000"}}.Encode(), nil)
	ledger := len(e.ledger())
	trail := len(gwAudit(e))

	impatient := *c.c
	impatient.Timeout = onceSlow / 5
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/.otpgate/confirm/"+id, strings.NewReader(`{"otp":"`+c.code()+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if res, err := impatient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the customer waited for the answer (%d); the test needs one who leaves first", res.StatusCode)
	}

	var rel []audit.Record
	for deadline := time.Now().Add(10 * onceSlow); len(rel) == 0 && time.Now().Before(deadline); time.Sleep(onceSlow / 10) {
		for _, r := range gwAudit(e)[trail:] {
			if r.Event == audit.Released || r.Event == audit.ReleaseError {
				rel = append(rel, r)
			}
		}
	}
	onceWantAudit(t, rel, audit.Released, "upstream status 200")
	if n := len(e.ledger()) - ledger; n != 1 {
		t.Errorf("the bank executed the change %d times, want once", n)
	}
}

// A bank that does not answer within releaseTimeout leaves the outcome
// unknown: the customer and the audit trail are told so, and the release
// does not wait for ever.
func TestReleaseTimeout(t *testing.T) {
	prev := releaseTimeout
	releaseTimeout = onceSlow / 2
	t.Cleanup(func() { releaseTimeout = prev })
	e := newEnv(t, envOptions{})
	_, srv := newOnceBank(e)
	onceLoad(e, srv.URL, "")
	c := gwEnrolled(e, "S001", "U001")
	id := oncePause(c, http.MethodPost, onceSlowPath, url.Values{"email": {"new@example.jp"}, "phone": {"03-0000-0000"}}.Encode(), nil)
	trail := len(gwAudit(e))

	start := time.Now()
	res, body, _ := gwConfirmForm(c, id, c.code(), nil)
	if took := time.Since(start); took >= onceSlow {
		t.Errorf("the release took %v; want it ended after %v", took, releaseTimeout)
	}
	onceWantUnknown(t, res, body, false)
	onceWantAudit(t, gwAudit(e)[trail:], audit.ReleaseError, "outcome unknown")
}

// oncePause sends a protected operation to target (path and query) as a
// browser and returns the challenge ID it was paused under.
func oncePause(c *customer, method, target, body string, header http.Header) string {
	c.e.t.Helper()
	req, _ := http.NewRequest(method, gatewayURL+target, strings.NewReader(body))
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, page := c.do(req)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		c.e.t.Fatalf("%s %s: status %d, Location %q; want 303 to the confirm page\n%s", method, target, res.StatusCode, loc, page)
	}
	return strings.TrimPrefix(loc, "/.otpgate/confirm/")
}

// onceWantUnknown checks the customer's answer to a release the bank did
// not answer: 502, the outcome unknown, check the history before trying
// again; Japanese first, English on request.
func onceWantUnknown(t *testing.T, res *http.Response, body string, asJSON bool) {
	t.Helper()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502\n%s", res.StatusCode, body)
	}
	if asJSON {
		if !strings.Contains(body, `"error":"upstream_failed"`) || !strings.Contains(body, `"outcome":"unknown"`) || !strings.Contains(body, "transaction history") {
			t.Errorf("JSON answer %s; want upstream_failed with outcome unknown", body)
		}
		return
	}
	for _, want := range []string{"お取引の結果を確認できませんでした", "取引履歴"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

// onceWantAudit checks that recs (the trail since the confirmation) hold
// exactly one release record, of event ev with detail starting with
// detail, and never a 499.
func onceWantAudit(t *testing.T, recs []audit.Record, ev audit.Event, detail string) {
	t.Helper()
	var rel []audit.Record
	for _, r := range recs {
		if r.Event == audit.Released || r.Event == audit.ReleaseError {
			rel = append(rel, r)
		}
	}
	for _, r := range rel {
		t.Logf("audit: %s %s", r.Event, r.Detail)
	}
	if len(rel) != 1 || rel[0].Event != ev || !strings.HasPrefix(rel[0].Detail, detail) || strings.Contains(rel[0].Detail, "499") {
		t.Errorf("release records %s; want one %s %q…", fmt.Sprint(rel), ev, detail)
	}
}
