package token

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

// t0 is the middle of a 60-second step, so ±1 step never crosses a boundary
// by accident.
var t0 = time.Date(2026, 4, 1, 9, 0, 30, 0, time.UTC)

const day = 24 * time.Hour

// clock is the injected m.Now; a mutex because the concurrency test reads it
// from many goroutines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)     { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// fakeNotifier records delivered notices and fails the events in fail.
type fakeNotifier struct {
	mu      sync.Mutex
	notices []Notice
	fail    map[string]error
}

func (f *fakeNotifier) Notify(_ context.Context, n Notice) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[n.Event]; err != nil {
		return err
	}
	f.notices = append(f.notices, n)
	return nil
}

func (f *fakeNotifier) setFail(event string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail == nil {
		f.fail = map[string]error{}
	}
	f.fail[event] = err
}

// events lists the notice events delivered to u, in order.
func (f *fakeNotifier) events(u User) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.notices {
		if n.User == u {
			out = append(out, n.Event)
		}
	}
	return out
}

func (f *fakeNotifier) last(u User, event string) (Notice, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.notices) - 1; i >= 0; i-- {
		if n := f.notices[i]; n.User == u && n.Event == event {
			return n, true
		}
	}
	return Notice{}, false
}

type env struct {
	t      *testing.T
	cfg    Config
	path   string
	db     *boltstore.DB
	sealer *seal.Sealer
	key    []byte // the sealer's key
	mail   *fakeNotifier
	clk    *clock
	m      *Manager
	// outbox delivers queued notices to mail, on the test's clock.
	outbox *outbox.Sender
}

const linkBase = "https://bank.example/.otpgate/setup/"

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	if cfg.EnrolAddress.Mode == "" {
		// The tests of the lifecycle mail any address; registered_test.go
		// tests the default.
		cfg.EnrolAddress.Mode = AnyAddress
	}
	key := make([]byte, seal.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, path: filepath.Join(t.TempDir(), "otpgate.db"), sealer: sealer, key: key,
		mail: &fakeNotifier{}, clk: &clock{t: t0}}
	e.open()
	t.Cleanup(func() { e.db.Close() })
	return e
}

// open (re)opens the bbolt file, on the test's clock and with etcd's
// transaction limits, and builds a fresh Manager over it, as a restarted
// process would. Notices the Manager queues are delivered to mail when it
// kicks the outbox, as the gateway's Sender does in the background.
func (e *env) open() {
	e.t.Helper()
	db, err := boltstore.OpenWith(e.path, boltstore.Options{Timeout: time.Second, Now: e.clk.now, TxnLimits: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.db = db
	m, err := New(db, e.sealer, e.mail, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Now = e.clk.now
	e.outbox = outbox.NewSender(db, func(ctx context.Context, n outbox.Notice) error {
		return e.mail.Notify(ctx, Notice{Event: n.Event, User: User{n.Service, n.User}, Email: n.To, Expires: n.Expires, At: n.At})
	})
	e.outbox.Now = e.clk.now
	m.Kick = e.drain
	e.m = m
}

// drain delivers every due notice in the outbox.
func (e *env) drain() {
	e.t.Helper()
	for range 100 {
		sent, failed, err := e.outbox.DrainOnce(context.Background(), 32)
		if err != nil {
			e.t.Errorf("draining the outbox: %v", err)
			return
		}
		if sent+failed < 32 {
			return
		}
	}
	e.t.Error("the outbox did not drain in 100 rounds")
}

// queued counts the notices waiting in the outbox.
func (e *env) queued() int {
	e.t.Helper()
	c, err := outbox.Depth(context.Background(), e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Queued
}

func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// seed writes u's record directly: an active token with a fresh sealed
// secret expiring a year from now, changed by mod. It spares the tests that
// are not about enrolment two argon2id runs each.
func (e *env) seed(u User, mod func(r *Record)) []byte {
	e.t.Helper()
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		e.t.Fatal(err)
	}
	sealed, err := e.sealer.Seal(secret, []byte(u.key()))
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clk.now()
	r := &Record{Service: u.Service, User: u.ID, State: Active, Email: u.ID + "@mail.example.jp",
		Secret: sealed, IssuedAt: now, ActivatedAt: now, Expires: now.Add(365 * day)}
	if mod != nil {
		mod(r)
	}
	err = e.db.Update(context.Background(), func(tx store.Tx) error { return save(tx, r) })
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func (e *env) get(u User) *Record {
	e.t.Helper()
	r, err := e.m.Get(context.Background(), u)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) status(u User) Status {
	e.t.Helper()
	st, err := e.m.Status(context.Background(), u)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// check runs CheckInTx in its own Update, as the gateway does.
func (e *env) check(u User, code string, p Purpose) Check {
	e.t.Helper()
	var c Check
	err := e.db.Update(context.Background(), func(tx store.Tx) error {
		var err error
		c, err = e.m.CheckInTx(tx, u, code, p, e.clk.now())
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) requirement(u User) Requirement {
	e.t.Helper()
	var req Requirement
	err := e.db.View(context.Background(), func(tx store.Tx) error {
		var err error
		req, err = e.m.RequirementInTx(tx, u, e.clk.now())
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return req
}

func (e *env) audit() []audit.Record {
	e.t.Helper()
	var out []audit.Record
	err := audit.Export(context.Background(), e.db, time.Time{}, func(r audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// auditEvents lists u's audit events in order.
func (e *env) auditEvents(u User) []audit.Event {
	var out []audit.Event
	for _, r := range e.audit() {
		if r.Service == u.Service && r.User == u.ID {
			out = append(out, r.Event)
		}
	}
	return out
}

// assertAuditClean fails if any audit record contains one of secrets.
func (e *env) assertAuditClean(secrets ...string) {
	e.t.Helper()
	for _, r := range e.audit() {
		b, _ := json.Marshal(r)
		for _, s := range secrets {
			if s != "" && strings.Contains(string(b), s) {
				e.t.Errorf("audit record %s contains a secret %q", b, s)
			}
		}
	}
}

// linkCount counts the setup links the store holds and has not expired.
func (e *env) linkCount() int {
	e.t.Helper()
	page, next, err := e.db.Scan(context.Background(), store.SetupLinks, "", store.MaxScanLimit)
	if err != nil || next != "" {
		e.t.Fatalf("Scan: %v, next %q", err, next)
	}
	return len(page)
}

// totpCode is an independent RFC 6238 implementation (HMAC-SHA1, 6 digits,
// 60-second steps), so the tests do not check the package against itself.
func totpCode(secret []byte, t time.Time) string {
	return rfc6238(secret, t, 60, 6)
}

func rfc6238(secret []byte, t time.Time, period int64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(t.Unix()/period))
	mac := hmac.New(sha1.New, secret)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod)
}

// wrongCode returns a code that is not right at any step near t.
func wrongCode(secret []byte, t time.Time) string {
	for c := 0; ; c++ {
		s := fmt.Sprintf("%06d", c)
		clash := false
		for d := -3; d <= 3; d++ {
			if totpCode(secret, t.Add(time.Duration(d)*time.Minute)) == s {
				clash = true
			}
		}
		if !clash {
			return s
		}
	}
}

// memTx is a store.Tx over a map, for calling CheckInTx outside a database.
type memTx map[string][]byte

func (m memTx) Get(b store.Bucket, k string) ([]byte, error) {
	v, ok := m[string(b)+"/"+k]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (m memTx) Put(b store.Bucket, k string, v []byte) error {
	m[string(b)+"/"+k] = append([]byte(nil), v...)
	return nil
}

// PutTTL keeps no expiry: nothing outlives a memTx. With it every Tx is
// an ExpiringTx, so that interface can join Tx.
func (m memTx) PutTTL(b store.Bucket, k string, v []byte, _ time.Duration) error {
	return m.Put(b, k, v)
}

var _ store.ExpiringTx = memTx{}

func (m memTx) Delete(b store.Bucket, k string) error { delete(m, string(b)+"/"+k); return nil }

var errMailDown = errors.New("smtp: connection refused")
