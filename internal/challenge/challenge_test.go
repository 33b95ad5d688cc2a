package challenge_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/token"
)

var ctx = context.Background()

// t0 is the middle of a 60-second step; the template's activation spent
// t0's step, so the tests start one step later, at t1.
var (
	t0 = time.Date(2026, 4, 1, 9, 0, 30, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

var (
	taro   = token.User{Service: "SVC01", ID: "taro"}   // active token
	ken    = token.User{Service: "SVC01", ID: "ken"}    // active token too
	hanako = token.User{Service: "SVC01", ID: "hanako"} // no token; SVC01 requires OTP since taro activated
	jiro   = token.User{Service: "SVC02", ID: "jiro"}   // no token; SVC02 does not require OTP
)

const (
	taroEmail = "taro.yamada@example.jp"
	clientIP  = "192.0.2.10"
)

var (
	sessTaro  = session.Hash("cookie-taro")
	sessOther = session.Hash("cookie-attacker")
)

// The template database: taro enrolled through the real lifecycle (Issue,
// Setup, Activate) once for the package, because argon2id is slow; each test
// works on its own copy.
var tmpl struct {
	once   sync.Once
	dir    string
	path   string
	key    []byte
	secret []byte
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpl.dir != "" {
		os.RemoveAll(tmpl.dir)
	}
	os.Exit(code)
}

// capture is a token.Notifier that keeps what it is given.
type capture struct {
	mu      sync.Mutex
	notices []token.Notice
}

func (c *capture) Notify(_ context.Context, n token.Notice) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notices = append(c.notices, n)
	return nil
}

func (c *capture) events(event string) []token.Notice {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []token.Notice
	for _, n := range c.notices {
		if n.Event == event {
			out = append(out, n)
		}
	}
	return out
}

const linkBase = "https://bank.example.jp/.otpgate/setup/"

func enrol() error {
	dir, err := os.MkdirTemp("", "otpgate-challenge-test-")
	if err != nil {
		return err
	}
	tmpl.dir, tmpl.path = dir, filepath.Join(dir, "template.db")
	tmpl.key = make([]byte, seal.KeySize)
	if _, err := rand.Read(tmpl.key); err != nil {
		return err
	}
	sealer, err := seal.New(tmpl.key)
	if err != nil {
		return err
	}
	db, err := boltstore.Open(tmpl.path, time.Second)
	if err != nil {
		return err
	}
	defer db.Close()
	mail := &capture{}
	tokens, err := token.New(db, sealer, mail, token.Config{EnrolAddress: token.EnrolAddress{Mode: token.AnyAddress}})
	if err != nil {
		return err
	}
	tokens.Now = func() time.Time { return t0 }

	for _, c := range []struct {
		u      token.User
		email  string
		secret *[]byte
	}{{taro, taroEmail, &tmpl.secret}, {ken, "ken.sato@example.jp", new([]byte)}} {
		if *c.secret, err = enrolOne(tokens, mail, c.u, c.email); err != nil {
			return fmt.Errorf("enrolling %s: %w", c.u.ID, err)
		}
	}
	return db.Close()
}

// enrolOne runs Issue, Setup and Activate for u and returns its secret.
func enrolOne(tokens *token.Manager, mail *capture, u token.User, email string) ([]byte, error) {
	const pin = "4821"
	if _, err := tokens.Issue(ctx, u, email, pin, linkBase, clientIP); err != nil {
		return nil, fmt.Errorf("Issue: %w", err)
	}
	setup := mail.events("setup")
	if len(setup) == 0 || setup[len(setup)-1].Email != email {
		return nil, fmt.Errorf("setup notices %+v", setup)
	}
	link, ok := strings.CutPrefix(setup[len(setup)-1].Link, linkBase)
	if !ok {
		return nil, fmt.Errorf("setup link %q", setup[len(setup)-1].Link)
	}
	sr, err := tokens.Setup(ctx, link, u.Service, u.ID, pin, "198.51.100.7")
	if err != nil {
		return nil, fmt.Errorf("Setup: %w", err)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(sr.Secret)
	if err != nil {
		return nil, err
	}
	if err := tokens.Activate(ctx, u, totp(secret, t0), clientIP); err != nil {
		return nil, fmt.Errorf("Activate: %w", err)
	}
	return secret, nil
}

// clock is the injected Now; locked because concurrent Confirms read it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

type env struct {
	t      *testing.T
	path   string
	db     *boltstore.DB
	mail   *capture
	queued []outbox.Notice // delivered from the outbox
	sealer *seal.Sealer
	clk    *clock
	tokens *token.Manager
	m      *challenge.Manager
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tmpl.once.Do(func() { tmpl.err = enrol() })
	if tmpl.err != nil {
		t.Fatalf("enrolling the template user: %v", tmpl.err)
	}
	e := &env{t: t, mail: &capture{}, clk: &clock{t: t1}, path: filepath.Join(t.TempDir(), "otpgate.db")}
	copyFile(t, tmpl.path, e.path)
	// The store runs on the test clock, with etcd's transaction limits.
	db, err := boltstore.OpenWith(e.path, boltstore.Options{Timeout: time.Second, Now: e.clk.now, TxnLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	sealer, err := seal.New(tmpl.key)
	if err != nil {
		t.Fatal(err)
	}
	if e.tokens, err = token.New(db, sealer, e.mail, token.Config{EnrolAddress: token.EnrolAddress{Mode: token.AnyAddress}}); err != nil {
		t.Fatal(err)
	}
	e.tokens.Now = e.clk.now
	e.sealer = sealer
	e.m = e.manager(sealer, challenge.Config{})
	return e
}

// manager is another Manager on e's store and tokens.
func (e *env) manager(sealer *seal.Sealer, cfg challenge.Config) *challenge.Manager {
	e.t.Helper()
	m, err := challenge.New(e.db, sealer, e.tokens, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Now = e.clk.now
	return m
}

// notices delivers the notices queued in the outbox and returns those of
// event delivered so far.
func (e *env) notices(event string) []outbox.Notice {
	e.t.Helper()
	s := outbox.NewSender(e.db, func(_ context.Context, n outbox.Notice) error {
		e.queued = append(e.queued, n)
		return nil
	})
	s.Now = e.clk.now
	if _, failed, err := s.DrainOnce(ctx, 100); err != nil || failed != 0 {
		e.t.Fatalf("delivering the outbox: %d failed, %v", failed, err)
	}
	var out []outbox.Notice
	for _, n := range e.queued {
		if n.Event == event {
			out = append(out, n)
		}
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// totp is an RFC 6238 code of its own (HMAC-SHA1, 6 digits, 60 s), so the
// tests do not check the token package against itself.
func totp(secret []byte, t time.Time) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(t.Unix()/60))
	mac := hmac.New(sha1.New, secret)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	return fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:])&0x7fffffff)%1_000_000)
}

// code is taro's right code now.
func (e *env) code() string { return totp(tmpl.secret, e.clk.now()) }

// wrongCode returns the k-th code that is wrong at every step near now.
func (e *env) wrongCode(k int) string {
	now := e.clk.now()
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (271828+(k*50+i)*7919)%1_000_000)
		clash := false
		for d := -3; d <= 3; d++ {
			clash = clash || totp(tmpl.secret, now.Add(time.Duration(d)*time.Minute)) == c
		}
		if !clash {
			return c
		}
	}
}

// newOp is a transfer as the bank would receive it.
func newOp(u token.User, sess string) *challenge.Operation {
	return &challenge.Operation{
		Service: u.Service, User: u.ID, Session: sess, ClientIP: clientIP,
		Rule: "furikomi", Kind: "transfer",
		Fields: []challenge.Field{
			{Name: "amount", Label: "金額", LabelEn: "Amount", Value: "¥1,500,000"},
			{Name: "payee", Label: "振込先", LabelEn: "Payee", Value: "ヤマダ タロウ"},
		},
		Method: "POST", RequestURI: "/ib/transfer/execute.do?step=confirm", Host: "bank.example.jp",
		Header: http.Header{
			"Content-Type":    {"application/x-www-form-urlencoded"},
			"Accept-Language": {"ja", "en;q=0.5"},
		},
		Body: []byte("amount=1%2C500%2C000&payee=%E3%83%A4%E3%83%9E%E3%83%80&csrf=abc"),
	}
}

// pause pauses a transfer of taro and expects it to be stored.
func (e *env) pause() *challenge.Operation {
	e.t.Helper()
	op := newOp(taro, sessTaro)
	req, err := e.m.Pause(ctx, op)
	if err != nil || req != token.NeedCode {
		e.t.Fatalf("Pause = %v, %v; want NeedCode", req, err)
	}
	return op
}

func (e *env) confirm(id, sess, code string) challenge.Result {
	e.t.Helper()
	res, err := e.m.Confirm(ctx, id, sess, code, clientIP)
	if err != nil {
		e.t.Fatalf("Confirm: %v", err)
	}
	return res
}

// pendingCount counts the operations held in the store: the keys of
// store.Pending that are neither customers' indexes nor fates.
func (e *env) pendingCount() int {
	e.t.Helper()
	n := 0
	for _, kv := range e.scan(store.Pending) {
		if !strings.HasPrefix(kv.Key, "customer/") && !strings.HasPrefix(kv.Key, "fate/") {
			n++
		}
	}
	return n
}

// scan reads all of b, page by page.
func (e *env) scan(b store.Bucket) []store.KV {
	e.t.Helper()
	var all []store.KV
	after := ""
	for range 1000 {
		page, next, err := e.db.Scan(ctx, b, after, store.MaxScanLimit)
		if err != nil {
			e.t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		after = next
	}
	e.t.Fatalf("scanning %s did not end", b)
	return nil
}

func (e *env) audit() []audit.Record {
	e.t.Helper()
	var out []audit.Record
	err := audit.Export(ctx, e.db, t1, func(r audit.Record) error { out = append(out, r); return nil })
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) events(ev audit.Event) []audit.Record {
	var out []audit.Record
	for _, r := range e.audit() {
		if r.Event == ev {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) record(u token.User) *token.Record {
	e.t.Helper()
	r, err := e.tokens.Get(ctx, u)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) assertGone(id, sess string) {
	e.t.Helper()
	if op, err := e.m.Get(ctx, id, sess); !errors.Is(err, challenge.ErrGone) {
		e.t.Errorf("Get = %+v, %v; want ErrGone", op, err)
	}
}

func (e *env) assertKept(op *challenge.Operation) {
	e.t.Helper()
	got, err := e.m.Get(ctx, op.ID, op.Session)
	if err != nil {
		e.t.Fatalf("paused operation lost: %v", err)
	}
	if got.ID != op.ID || got.Digest != op.Digest {
		e.t.Errorf("Get returned %s/%s, want %s/%s", got.ID, got.Digest, op.ID, op.Digest)
	}
}

func TestPauseByTokenState(t *testing.T) {
	tests := []struct {
		name  string
		user  token.User
		setup func(e *env)
		want  token.Requirement
	}{
		{"active token", taro, nil, token.NeedCode},
		{"no token, service requires OTP", hanako, nil, token.NeedEnrolment},
		{"no token, service without OTP", jiro, nil, token.PassLegacy},
		{"expired token", taro, func(e *env) { e.clk.add(366 * 24 * time.Hour) }, token.NeedRenewal},
		{"revoked token", taro, func(e *env) {
			if err := e.tokens.Revoke(ctx, taro, clientIP); err != nil {
				e.t.Fatal(err)
			}
		}, token.NeedEnrolment},
		{"locked user", taro, func(e *env) {
			op := e.pause()
			for k := range 5 {
				e.confirm(op.ID, sessTaro, e.wrongCode(k))
			}
		}, token.IsLocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			pendingBefore, challengesBefore := e.pendingCount(), len(e.events(audit.Challenge))
			op := newOp(tc.user, sessTaro)
			req, err := e.m.Pause(ctx, op)
			if err != nil || req != tc.want {
				t.Fatalf("Pause = %v, %v; want %v", req, err, tc.want)
			}
			stored := tc.want == token.NeedCode
			if got := e.pendingCount() - pendingBefore; got != map[bool]int{true: 1, false: 0}[stored] {
				t.Errorf("%d operations stored", got)
			}
			if got := len(e.events(audit.Challenge)) - challengesBefore; got != map[bool]int{true: 1, false: 0}[stored] {
				t.Errorf("%d challenge audit records written", got)
			}
			if !stored {
				if _, err := e.m.Get(ctx, op.ID, sessTaro); !errors.Is(err, challenge.ErrGone) {
					t.Errorf("an operation that needs no code can be fetched: %v", err)
				}
				return
			}
			now := e.clk.now()
			if len(op.ID) < 24 || !op.Created.Equal(now) || !op.Expires.Equal(now.Add(5*time.Minute)) || op.Digest != op.ComputeDigest() {
				t.Errorf("paused op ID %q created %v expires %v digest %q", op.ID, op.Created, op.Expires, op.Digest)
			}
			got, err := e.m.Get(ctx, op.ID, sessTaro)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Created.Equal(op.Created) || !got.Expires.Equal(op.Expires) {
				t.Errorf("stored times %v, %v", got.Created, got.Expires)
			}
			got.Created, got.Expires = op.Created, op.Expires
			if !reflect.DeepEqual(got, op) {
				t.Errorf("stored operation\n %+v\nwant\n %+v", got, op)
			}
		})
	}
}

func TestPauseGivesEachOperationItsOwnID(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for range 5 {
		op := e.pause()
		if seen[op.ID] {
			t.Fatalf("ID %s given twice", op.ID)
		}
		seen[op.ID] = true
	}
	if n := e.pendingCount(); n != 5 {
		t.Errorf("%d pending, want 5", n)
	}
}

func TestDigest(t *testing.T) {
	base := newOp(taro, sessTaro)
	d := base.ComputeDigest()
	if len(d) != 64 || d != base.ComputeDigest() || d != newOp(taro, sessTaro).ComputeDigest() {
		t.Fatalf("digest %q is not a stable SHA-256", d)
	}
	tests := []struct {
		name    string
		mod     func(op *challenge.Operation)
		changes bool
	}{
		{"method", func(op *challenge.Operation) { op.Method = "PUT" }, true},
		{"URI path", func(op *challenge.Operation) { op.RequestURI = "/ib/transfer/execute.do;x?step=confirm" }, true},
		{"URI query", func(op *challenge.Operation) { op.RequestURI = "/ib/transfer/execute.do?step=confirm&x=1" }, true},
		{"host", func(op *challenge.Operation) { op.Host = "bank.example.jp:8443" }, true},
		{"header value", func(op *challenge.Operation) { op.Header.Set("Content-Type", "text/plain") }, true},
		{"header added", func(op *challenge.Operation) { op.Header.Set("X-Http-Method-Override", "DELETE") }, true},
		{"header removed", func(op *challenge.Operation) { op.Header.Del("Accept-Language") }, true},
		{"header value order", func(op *challenge.Operation) { op.Header["Accept-Language"] = []string{"en;q=0.5", "ja"} }, true},
		{"header values joined", func(op *challenge.Operation) { op.Header["Accept-Language"] = []string{"ja, en;q=0.5"} }, true},
		{"body byte", func(op *challenge.Operation) { op.Body[len(op.Body)-1] = 'd' }, true},
		{"body longer", func(op *challenge.Operation) { op.Body = append(op.Body, '&') }, true},
		{"body empty", func(op *challenge.Operation) { op.Body = nil }, true},
		{"body moved into the URI", func(op *challenge.Operation) {
			op.RequestURI += "&" + string(op.Body)
			op.Body = nil
		}, true},
		// Bookkeeping around the request is not part of it.
		{"ID and times", func(op *challenge.Operation) {
			op.ID, op.Created, op.Expires = "other", t0, t1
		}, false},
		{"shown fields", func(op *challenge.Operation) { op.Fields = nil }, false},
		{"session and client IP", func(op *challenge.Operation) { op.Session, op.ClientIP = sessOther, "203.0.113.9" }, false},
		{"header map built in another order", func(op *challenge.Operation) {
			op.Header = http.Header{"Accept-Language": {"ja", "en;q=0.5"}, "Content-Type": {"application/x-www-form-urlencoded"}}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			op := newOp(taro, sessTaro)
			tc.mod(op)
			if got := op.ComputeDigest(); (got != d) != tc.changes {
				t.Errorf("digest changed = %v, want %v", got != d, tc.changes)
			}
		})
	}
}

func TestGet(t *testing.T) {
	tests := []struct {
		name    string
		id      func(op *challenge.Operation) string
		sess    string
		after   time.Duration
		wantErr error
	}{
		{"own session", nil, sessTaro, 0, nil},
		{"just before expiry", nil, sessTaro, 5*time.Minute - time.Second, nil},
		{"another session", nil, sessOther, 0, challenge.ErrGone},
		{"no session", nil, "", 0, challenge.ErrGone},
		{"expired", nil, sessTaro, 5 * time.Minute, challenge.ErrGone},
		{"unknown ID", func(*challenge.Operation) string { return "AAAAAAAAAAAAAAAAAAAAAAAA" }, sessTaro, 0, challenge.ErrGone},
		{"empty ID", func(*challenge.Operation) string { return "" }, sessTaro, 0, challenge.ErrGone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			op := e.pause()
			id := op.ID
			if tc.id != nil {
				id = tc.id(op)
			}
			e.clk.add(tc.after)
			got, err := e.m.Get(ctx, id, tc.sess)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (got == nil || got.ID != op.ID || string(got.Body) != string(op.Body)) {
				t.Errorf("Get returned %+v", got)
			}
		})
	}
}

func TestConfirmRightCodeReleasesOnce(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	code := e.code()
	res := e.confirm(op.ID, sessTaro, code)
	if res.Check.Outcome != token.CodeOK || res.Op == nil {
		t.Fatalf("Confirm = %+v", res)
	}
	if res.Op.ID != op.ID || res.Op.Digest != op.Digest || res.Op.Method != op.Method ||
		res.Op.RequestURI != op.RequestURI || res.Op.Host != op.Host ||
		!reflect.DeepEqual(res.Op.Header, op.Header) || string(res.Op.Body) != string(op.Body) {
		t.Errorf("released %+v\nwant %+v", res.Op, op)
	}
	if res.Check.AttemptsLeft != 5 || res.Check.JustLocked {
		t.Errorf("check %+v", res.Check)
	}
	if r := e.record(taro); r.LastStep != e.clk.now().Unix()/60 || r.Failures != 0 {
		t.Errorf("token after the right code: last step %d failures %d", r.LastStep, r.Failures)
	}
	e.assertGone(op.ID, sessTaro)

	// A double submit, and a later right code, find nothing to release.
	for _, c := range []string{code, ""} {
		if c == "" {
			e.clk.add(time.Minute)
			c = e.code()
		}
		res, err := e.m.Confirm(ctx, op.ID, sessTaro, c, clientIP)
		if !errors.Is(err, challenge.ErrGone) || res.Op != nil {
			t.Errorf("second Confirm = %+v, %v; want ErrGone", res, err)
		}
	}
	if n := len(e.events(audit.CodeOK)); n != 1 {
		t.Errorf("%d code_ok records, want 1", n)
	}
}

func TestConfirmWrongCodeKeepsOperation(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	for k, want := range []int{4, 3} {
		res := e.confirm(op.ID, sessTaro, e.wrongCode(k))
		if res.Check.Outcome != token.CodeInvalid || res.Check.AttemptsLeft != want || res.Op != nil || res.Check.JustLocked {
			t.Fatalf("wrong code %d: %+v, want CodeInvalid with %d attempts left", k+1, res, want)
		}
		e.assertKept(op)
	}
	if r := e.record(taro); r.Failures != 2 {
		t.Errorf("failures %d, want 2", r.Failures)
	}
	// The right code still releases it, and resets the count.
	res := e.confirm(op.ID, sessTaro, e.code())
	if res.Check.Outcome != token.CodeOK || res.Op == nil || res.Check.AttemptsLeft != 5 {
		t.Errorf("right code after wrong ones: %+v", res)
	}
	if r := e.record(taro); r.Failures != 0 {
		t.Errorf("failures %d after a right code, want 0", r.Failures)
	}
}

func TestConfirmReusedStepKeepsOperation(t *testing.T) {
	e := newEnv(t)
	first := e.pause()
	code := e.code()
	if res := e.confirm(first.ID, sessTaro, code); res.Check.Outcome != token.CodeOK {
		t.Fatalf("first right code: %+v", res)
	}

	op := e.pause()
	tests := []struct {
		name string
		code string
	}{
		{"the code just spent", code},
		{"the previous step's code (spent by activation)", totp(tmpl.secret, e.clk.now().Add(-time.Minute))},
	}
	for _, tc := range tests {
		res := e.confirm(op.ID, sessTaro, tc.code)
		if res.Check.Outcome != token.CodeReused || res.Op != nil || res.Check.AttemptsLeft != 5 {
			t.Errorf("%s: %+v, want CodeReused with no failure counted", tc.name, res)
		}
		e.assertKept(op)
	}
	if r := e.record(taro); r.Failures != 0 {
		t.Errorf("a reused code counted as a failure: %d", r.Failures)
	}
	if n := len(e.events(audit.CodeReused)); n != len(tests) {
		t.Errorf("%d code_reused records, want %d", n, len(tests))
	}

	// The next step's code releases it.
	e.clk.add(time.Minute)
	if res := e.confirm(op.ID, sessTaro, e.code()); res.Check.Outcome != token.CodeOK || res.Op == nil {
		t.Errorf("next step's code: %+v", res)
	}
}

func TestFifthWrongCodeLocksAndDiscards(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	other := e.pause() // a second paused operation of the same customer
	for k := range 4 {
		res := e.confirm(op.ID, sessTaro, e.wrongCode(k))
		if res.Check.Outcome != token.CodeInvalid || res.Check.AttemptsLeft != 4-k {
			t.Fatalf("wrong code %d: %+v", k+1, res)
		}
	}
	if n := len(e.notices("locked")); n != 0 {
		t.Fatalf("%d locked notices before the fifth failure", n)
	}
	res := e.confirm(op.ID, sessTaro, e.wrongCode(4))
	if res.Check.Outcome != token.CodeLocked || !res.Check.JustLocked || res.Check.AttemptsLeft != 0 || res.Op != nil {
		t.Fatalf("fifth wrong code: %+v, want CodeLocked and JustLocked", res)
	}
	e.assertGone(op.ID, sessTaro)
	if res, err := e.m.Confirm(ctx, op.ID, sessTaro, e.code(), clientIP); !errors.Is(err, challenge.ErrGone) {
		t.Errorf("right code for the discarded operation: %+v, %v; want ErrGone", res, err)
	}
	r := e.record(taro)
	if !r.Locked || !r.LockedAt.Equal(e.clk.now()) {
		t.Errorf("token record after the lock: locked %v at %v", r.Locked, r.LockedAt)
	}
	notices := e.notices("locked")
	if len(notices) != 1 || notices[0].Service != taro.Service || notices[0].User != taro.ID || notices[0].To != taroEmail || !notices[0].At.Equal(e.clk.now()) {
		t.Errorf("locked notices %+v, want one to %s", notices, taroEmail)
	}
	locked := e.events(audit.Locked)
	if len(locked) != 1 || locked[0].Service != taro.Service || locked[0].User != taro.ID || locked[0].Actor != "system" || locked[0].ClientIP != clientIP {
		t.Errorf("locked audit records %+v", locked)
	}

	// Even the right code does not release the other operation of a locked
	// customer: it is discarded too, and nobody is mailed again.
	res = e.confirm(other.ID, sessTaro, e.code())
	if res.Check.Outcome != token.CodeLocked || res.Check.JustLocked || res.Op != nil {
		t.Errorf("right code while locked: %+v", res)
	}
	e.assertGone(other.ID, sessTaro)
	if n := len(e.notices("locked")); n != 1 {
		t.Errorf("%d locked notices, want 1", n)
	}
	if n := e.pendingCount(); n != 0 {
		t.Errorf("%d operations still pending", n)
	}
	// And nothing new is paused.
	if req, err := e.m.Pause(ctx, newOp(taro, sessTaro)); err != nil || req != token.IsLocked {
		t.Errorf("Pause while locked = %v, %v", req, err)
	}
	if n := e.pendingCount(); n != 0 {
		t.Errorf("%d operations pending after Pause while locked", n)
	}
}

func TestConfirmRefusesAnotherSessionWithoutCountingFailure(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	for _, code := range []string{e.wrongCode(0), e.code()} {
		res, err := e.m.Confirm(ctx, op.ID, sessOther, code, "203.0.113.9")
		if !errors.Is(err, challenge.ErrGone) || res.Op != nil {
			t.Errorf("Confirm from another session = %+v, %v; want ErrGone", res, err)
		}
	}
	if r := e.record(taro); r.Failures != 0 || r.LastStep != t0.Unix()/60 {
		t.Errorf("another session's tries touched the token: failures %d, last step %d", r.Failures, r.LastStep)
	}
	e.assertKept(op)
	if res := e.confirm(op.ID, sessTaro, e.code()); res.Check.Outcome != token.CodeOK {
		t.Errorf("own session after the stranger: %+v", res)
	}
}

func TestConfirmExpiredOperation(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	e.clk.add(5 * time.Minute)
	code := e.code()
	if res, err := e.m.Confirm(ctx, op.ID, sessTaro, code, clientIP); !errors.Is(err, challenge.ErrGone) || res.Op != nil {
		t.Fatalf("Confirm of an expired operation = %+v, %v; want ErrGone", res, err)
	}
	// The code was not spent on it.
	if res := e.confirm(e.pause().ID, sessTaro, code); res.Check.Outcome != token.CodeOK {
		t.Errorf("the code offered for the expired operation was spent: %+v", res)
	}
}

func TestConfirmAfterRevokeDiscards(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	if err := e.tokens.Revoke(ctx, taro, clientIP); err != nil {
		t.Fatal(err)
	}
	res := e.confirm(op.ID, sessTaro, e.code())
	if res.Check.Outcome != token.CodeNoToken || res.Op != nil {
		t.Errorf("Confirm after the token was revoked: %+v, want CodeNoToken", res)
	}
	e.assertGone(op.ID, sessTaro)
}

func TestConcurrentConfirmsOfOneCode(t *testing.T) {
	const n = challenge.MaxOpsLimit // as many operations as one customer can hold
	tests := []struct {
		name     string
		ops      int // paused operations; goroutine i confirms op i%ops
		otherErr error
		other    token.Outcome // what the others get when they get no error
	}{
		{"one operation", 1, challenge.ErrGone, 0},
		{"as many operations", n, nil, token.CodeReused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.m = e.manager(e.sealer, challenge.Config{MaxOps: n})
			ops := make([]*challenge.Operation, tc.ops)
			for i := range ops {
				ops[i] = e.pause()
			}
			code := e.code()
			results := make([]challenge.Result, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					results[i], errs[i] = e.m.Confirm(ctx, ops[i%tc.ops].ID, sessTaro, code, clientIP)
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for i := range n {
				switch {
				case errs[i] == nil && results[i].Check.Outcome == token.CodeOK:
					ok++
					if results[i].Op == nil {
						t.Error("CodeOK without an operation")
					}
				case !errors.Is(errs[i], tc.otherErr):
					t.Errorf("confirm %d: %v, want %v", i, errs[i], tc.otherErr)
				case errs[i] == nil && (results[i].Check.Outcome != tc.other || results[i].Op != nil):
					t.Errorf("confirm %d: %+v, want outcome %v", i, results[i], tc.other)
				}
			}
			if ok != 1 {
				t.Fatalf("%d confirmations released an operation, want exactly 1", ok)
			}
			if got := len(e.events(audit.CodeOK)); got != 1 {
				t.Errorf("%d code_ok records, want 1", got)
			}
			if got, want := e.pendingCount(), tc.ops-1; got != want {
				t.Errorf("%d operations pending, want %d", got, want)
			}
			if r := e.record(taro); r.Failures != 0 {
				t.Errorf("failures %d, want 0", r.Failures)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	op := e.pause()
	keep := e.pause()
	if err := e.m.Cancel(ctx, op.ID, sessOther, "203.0.113.9"); !errors.Is(err, challenge.ErrGone) {
		t.Errorf("Cancel from another session: %v, want ErrGone", err)
	}
	e.assertKept(op)
	if err := e.m.Cancel(ctx, op.ID, sessTaro, clientIP); err != nil {
		t.Fatal(err)
	}
	e.assertGone(op.ID, sessTaro)
	e.assertKept(keep)
	if err := e.m.Cancel(ctx, op.ID, sessTaro, clientIP); !errors.Is(err, challenge.ErrGone) {
		t.Errorf("second Cancel: %v, want ErrGone", err)
	}
	if res, err := e.m.Confirm(ctx, op.ID, sessTaro, e.code(), clientIP); !errors.Is(err, challenge.ErrGone) {
		t.Errorf("Confirm after Cancel: %+v, %v", res, err)
	}
	recs := e.events(audit.Cancelled)
	if len(recs) != 1 || recs[0].Digest != op.Digest || recs[0].User != taro.ID || recs[0].ClientIP != clientIP {
		t.Errorf("cancelled audit records %+v", recs)
	}
}

// Expiry is the store's: an operation past its lifetime is gone, and its
// record and chunks are no longer listed, without any sweep.
func TestExpiredOperationGoneWithoutSweep(t *testing.T) {
	e := newEnv(t)
	a, b := e.pause(), e.pause()
	e.clk.add(2 * time.Minute)
	c := e.pause()
	e.clk.add(3 * time.Minute) // a and b reach their expiry; c has 2 minutes left
	e.assertGone(a.ID, sessTaro)
	e.assertGone(b.ID, sessTaro)
	e.assertKept(c)
	if n := e.pendingCount(); n != 1 {
		t.Errorf("%d operations listed, want 1", n)
	}
	if res, err := e.m.Confirm(ctx, a.ID, sessTaro, e.code(), clientIP); !errors.Is(err, challenge.ErrGone) {
		t.Errorf("Confirm of an expired operation = %+v, %v; want ErrGone", res, err)
	}
	// Chunks outlive their operation by the store's grace minute only.
	e.clk.add(time.Minute)
	if n := len(e.scan(store.Chunks)); n != 1 {
		t.Errorf("%d chunks listed a minute after a and b expired, want c's one", n)
	}
	e.clk.add(2 * time.Minute)
	if n, chunks := e.pendingCount(), len(e.scan(store.Chunks)); n != 0 || chunks != 0 {
		t.Errorf("after every expiry: %d operations and %d chunks listed, want none", n, chunks)
	}
	// The customer's index stays until the worker has recorded the
	// expiries it lists (expire.go).
	if n, err := e.m.AuditExpired(ctx); err != nil || n != 3 {
		t.Errorf("AuditExpired = %d, %v; want the three expiries recorded", n, err)
	}
	for _, kv := range e.scan(store.Pending) {
		if !strings.HasPrefix(kv.Key, "fate/") {
			t.Errorf("after every expiry: %s listed in %s (customer index?), want only fates", kv.Key, store.Pending)
		}
	}
	// What became of them is kept a day longer, then forgotten too.
	e.clk.add(challenge.FateMemory)
	if kvs := e.scan(store.Pending); len(kvs) != 0 {
		t.Errorf("a day after every expiry: %d keys listed in %s, want none", len(kvs), store.Pending)
	}
}

func TestAuditTrail(t *testing.T) {
	e := newEnv(t)
	var codes []string
	op := e.pause()
	wrong := e.wrongCode(0)
	codes = append(codes, wrong)
	e.confirm(op.ID, sessTaro, wrong)
	right := e.code()
	codes = append(codes, right)
	res := e.confirm(op.ID, sessTaro, right)
	if res.Op == nil {
		t.Fatalf("right code: %+v", res)
	}
	if err := e.m.RecordRelease(ctx, res.Op, clientIP, http.StatusOK, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.m.RecordRelease(ctx, res.Op, clientIP, 0, errors.New("dial tcp 10.0.0.5:8080: connection refused")); err != nil {
		t.Fatal(err)
	}
	// And a lock.
	e.clk.add(time.Minute)
	op2 := e.pause()
	for k := range 5 {
		c := e.wrongCode(k + 1)
		codes = append(codes, c)
		e.confirm(op2.ID, sessTaro, c)
	}

	wantFields := map[string]string{"amount": "¥1,500,000", "payee": "ヤマダ タロウ"}
	const request = "POST /ib/transfer/execute.do?step=confirm"
	var got []audit.Event
	for _, r := range e.audit() {
		got = append(got, r.Event)
		if r.Service != taro.Service || r.User != taro.ID || r.ClientIP != clientIP {
			t.Errorf("%s record names %s/%s from %s", r.Event, r.Service, r.User, r.ClientIP)
		}
		switch r.Event {
		case audit.Challenge, audit.CodeOK, audit.Released, audit.ReleaseError:
			if !reflect.DeepEqual(r.Fields, wantFields) {
				t.Errorf("%s record fields %v, want %v", r.Event, r.Fields, wantFields)
			}
			fallthrough
		case audit.CodeInvalid:
			if r.Digest != op.Digest || r.Request != request || r.Kind != "transfer" || r.Rule != "furikomi" {
				t.Errorf("%s record %+v does not name the operation", r.Event, r)
			}
		}
		switch r.Event {
		case audit.Released:
			if r.Detail != "upstream status 200" || r.Actor != "customer" {
				t.Errorf("released record %+v", r)
			}
		case audit.ReleaseError:
			if !strings.Contains(r.Detail, "not retried") || !strings.Contains(r.Detail, "connection refused") {
				t.Errorf("release_error record %+v", r)
			}
		case audit.CodeInvalid:
			if !strings.Contains(r.Detail, "attempts left") && r.Detail != "" {
				t.Errorf("code_invalid record detail %q", r.Detail)
			}
		}
		// Never a code, in any field (the digest, being hex, is left out
		// so that it cannot contain one by chance).
		r.Digest = ""
		j, _ := json.Marshal(r)
		for _, c := range codes {
			if strings.Contains(string(j), c) {
				t.Errorf("audit record %s contains the code %s", j, c)
			}
		}
	}
	want := []audit.Event{
		audit.Challenge, audit.CodeInvalid, audit.CodeOK, audit.Released, audit.ReleaseError,
		audit.Challenge, audit.CodeInvalid, audit.CodeInvalid, audit.CodeInvalid, audit.CodeInvalid, audit.CodeInvalid, audit.Locked,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("audit events\n %v\nwant\n %v", got, want)
	}
	// The digest is the request's, not the challenge's: the same transfer
	// paused again carries the same one.
	if op2.ID == op.ID || op2.Digest != op.Digest {
		t.Errorf("second challenge %s/%s, first %s/%s", op2.ID, op2.Digest, op.ID, op.Digest)
	}
}
