package gate_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

var ctx = context.Background()

// t0 is the middle of a 60-second step; taro's activation spent its step,
// so the tests start one step later, at t1.
var (
	t0 = time.Date(2026, 4, 1, 9, 0, 30, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

// The customers: taro has an active token; hanako none, in SVC01, which
// requires OTP since taro activated; jiro none, in SVC02, which does not.
var (
	taro   = gate.HeaderCustomer("SVC01", "taro")
	hanako = gate.HeaderCustomer("SVC01", "hanako")
	jiro   = gate.HeaderCustomer("SVC02", "jiro")
)

const clientIP = "192.0.2.10"

// The template database: taro enrolled through the real lifecycle once
// for the package (argon2id is slow); each test works on its own copy.
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

// links keeps the setup link of the one issue the template makes.
type links struct {
	mu   sync.Mutex
	link string
}

func (l *links) Notify(_ context.Context, n token.Notice) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n.Event == "setup" {
		l.link = n.Link
	}
	return nil
}

const linkBase = "https://bank.example.jp/.otpgate/setup/"

func enrol() error {
	dir, err := os.MkdirTemp("", "otpgate-gate-test-")
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
	mail := &links{}
	tokens, err := token.New(db, sealer, mail, token.Config{EnrolAddress: token.EnrolAddress{Mode: token.AnyAddress}})
	if err != nil {
		return err
	}
	tokens.Now = func() time.Time { return t0 }
	u := token.User{Service: taro.Service, ID: taro.User}
	const pin = "4829"
	if _, err := tokens.Issue(ctx, u, "taro@example.jp", pin, linkBase, clientIP); err != nil {
		return fmt.Errorf("Issue: %w", err)
	}
	link, ok := strings.CutPrefix(mail.link, linkBase)
	if !ok {
		return fmt.Errorf("setup link %q", mail.link)
	}
	sr, err := tokens.Setup(ctx, link, u.Service, u.ID, pin, clientIP)
	if err != nil {
		return fmt.Errorf("Setup: %w", err)
	}
	if tmpl.secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(sr.Secret); err != nil {
		return err
	}
	if err := tokens.Activate(ctx, u, totp(tmpl.secret, t0), clientIP); err != nil {
		return fmt.Errorf("Activate: %w", err)
	}
	return db.Close()
}

// totp is an RFC 6238 code of its own (HMAC-SHA1, 6 digits, 60 s).
func totp(secret []byte, t time.Time) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(t.Unix()/60))
	mac := hmac.New(sha1.New, secret)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	return fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:])&0x7fffffff)%1_000_000)
}

// clock is the injected Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// env is a Gate over its own copy of the template database.
type env struct {
	t        *testing.T
	db       *boltstore.DB
	clk      *clock
	tokens   *token.Manager
	held     *challenge.Manager
	sessions *session.Manager
	g        *gate.Gate
}

// loginForm is the bank's login exchange in the tests.
func loginForm(t *testing.T) *session.LoginForm {
	t.Helper()
	login, err := policy.CompileFixedPath("/login")
	if err != nil {
		t.Fatal(err)
	}
	logout, err := policy.CompileFixedPath("/logout")
	if err != nil {
		t.Fatal(err)
	}
	return &session.LoginForm{Path: login, Logout: logout, ServiceField: "service_id", UserField: "user_id",
		Cookie: "JSESSIONID", SuccessStatus: []int{http.StatusFound, http.StatusSeeOther}}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tmpl.once.Do(func() { tmpl.err = enrol() })
	if tmpl.err != nil {
		t.Fatalf("enrolling the template customer: %v", tmpl.err)
	}
	e := &env{t: t, clk: &clock{t: t1}}
	path := filepath.Join(t.TempDir(), "otpgate.db")
	copyFile(t, tmpl.path, path)
	db, err := boltstore.OpenWith(path, boltstore.Options{Timeout: time.Second, Now: e.clk.now, TxnLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	sealer, err := seal.New(tmpl.key)
	if err != nil {
		t.Fatal(err)
	}
	if e.tokens, err = token.New(db, sealer, &links{}, token.Config{EnrolAddress: token.EnrolAddress{Mode: token.AnyAddress}}); err != nil {
		t.Fatal(err)
	}
	if e.held, err = challenge.New(db, sealer, e.tokens, challenge.Config{}); err != nil {
		t.Fatal(err)
	}
	e.sessions = session.New(db, 0, 0)
	e.tokens.Now, e.held.Now, e.sessions.Now = e.clk.now, e.clk.now, e.clk.now
	e.g = gate.New(db, e.tokens, e.held, e.sessions, loginForm(t), nil)
	return e
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

// code is taro's right code now; wrong is a code wrong at every step near
// now.
func (e *env) code() string { return totp(tmpl.secret, e.clk.now()) }

func (e *env) wrong() string {
	now := e.clk.now()
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (271828+i*7919)%1_000_000)
		clash := false
		for d := -3; d <= 3; d++ {
			clash = clash || totp(tmpl.secret, now.Add(time.Duration(d)*time.Minute)) == c
		}
		if !clash {
			return c
		}
	}
}

// audit is the trail written since the tests' start.
func (e *env) audit() []audit.Record {
	e.t.Helper()
	var out []audit.Record
	if err := audit.Export(ctx, e.db, t1, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// transfer is a protected request as the bank would receive it, and the
// policy's match of it.
func transfer(t *testing.T) (*policy.Match, gate.Request) {
	t.Helper()
	p, err := policy.Compile([]policy.Rule{{Name: "furikomi", Kind: policy.Transfer, Paths: []string{"/transfer/execute"},
		Show: []policy.Field{{Name: "amount", Label: "金額", LabelEn: "Amount"}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := gate.Request{Method: http.MethodPost, URI: "/transfer/execute?step=2", Host: "bank.example.jp", ClientIP: clientIP,
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Cookie": {"JSESSIONID=abc"},
			"Connection": {"keep-alive, X-Hop"}, "X-Hop": {"1"}, "Authorization": {"Basic dGFybzpwdw=="}},
		Body: []byte("amount=50000&to=1234567"), HasBody: true}
	m := p.Classify(&policy.Request{Method: r.Method, Path: r.Path(), RawQuery: r.RawQuery(), Header: r.Header}, r.Body)
	if m == nil {
		t.Fatal("the test transfer matches no rule")
	}
	return m, r
}

// known identifies as who, and counts the calls.
func known(who *gate.Customer, calls *int) func() (*gate.Customer, error) {
	return func() (*gate.Customer, error) { *calls++; return who, nil }
}

// hold holds a transfer of taro and expects it held.
func (e *env) hold() *challenge.Operation {
	e.t.Helper()
	m, r := transfer(e.t)
	var calls int
	d, op, ref := e.g.Hold(ctx, known(taro, &calls), m, r)
	if d != gate.Held || ref != nil {
		e.t.Fatalf("Hold = %v, %v; want Held", d, ref)
	}
	return op
}
