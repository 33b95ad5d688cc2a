package session

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

var ctx = context.Background()

var t0 = time.Date(2026, 4, 1, 9, 0, 30, 0, time.UTC)

const (
	idle   = 30 * time.Minute
	maxAge = 2 * time.Hour
)

// countingStore counts write transactions, and can run a hook once before
// the next one (to interleave another request's change).
type countingStore struct {
	store.Store
	updates      atomic.Int64
	beforeUpdate func()
}

func (c *countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	c.updates.Add(1)
	if f := c.beforeUpdate; f != nil {
		c.beforeUpdate = nil
		f()
	}
	return c.Store.Update(ctx, fn)
}

type env struct {
	t   *testing.T
	db  *boltstore.DB
	cs  *countingStore
	m   *Manager
	now time.Time
}

// newEnv opens a store on the test's clock, with etcd's transaction limits.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, now: t0}
	db, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "otpgate.db"),
		boltstore.Options{Now: func() time.Time { return e.now }, TxnLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db, e.cs = db, &countingStore{Store: db}
	e.m = New(e.cs, idle, maxAge)
	e.m.Now = func() time.Time { return e.now }
	return e
}

func (e *env) bind(cookie, service, user string) {
	e.t.Helper()
	if err := e.m.Bind(ctx, cookie, service, user, "192.0.2.1"); err != nil {
		e.t.Fatalf("Bind: %v", err)
	}
}

func (e *env) lookup(cookie string) (Binding, bool) {
	e.t.Helper()
	b, ok, err := e.m.Lookup(ctx, cookie)
	if err != nil {
		e.t.Fatalf("Lookup: %v", err)
	}
	return b, ok
}

// stored reads the binding as stored, without Lookup's side effects.
func (e *env) stored(cookie string) (Binding, bool) {
	e.t.Helper()
	var b Binding
	var found bool
	err := e.db.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(store.Sessions, Hash(cookie))
		if err == store.ErrNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return json.Unmarshal(v, &b)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b, found
}

// keys lists the bindings the store holds and has not expired.
func (e *env) keys() []string {
	e.t.Helper()
	page, next, err := e.db.Scan(ctx, store.Sessions, "", store.MaxScanLimit)
	if err != nil || next != "" {
		e.t.Fatalf("Scan: %v, next %q", err, next)
	}
	var out []string
	for _, kv := range page {
		out = append(out, kv.Key)
	}
	return out
}

func (e *env) audit() []audit.Record {
	e.t.Helper()
	var out []audit.Record
	err := audit.Export(ctx, e.db, time.Time{}, func(r audit.Record) error { out = append(out, r); return nil })
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestBindAndLookup(t *testing.T) {
	e := newEnv(t)
	e.bind("cookie-taro", "SVC01", "taro")
	e.bind("cookie-hanako", "SVC01", "hanako")

	b, ok := e.lookup("cookie-taro")
	if !ok || b.Service != "SVC01" || b.User != "taro" || !b.Created.Equal(t0) || !b.Seen.Equal(t0) {
		t.Fatalf("Lookup = %+v, %v", b, ok)
	}
	if !hexID.MatchString(b.ID) {
		t.Errorf("login ID %q is not 128 random bits in hex", b.ID)
	}
	h, ok := e.lookup("cookie-hanako")
	if !ok || h.User != "hanako" || h.ID == b.ID {
		t.Errorf("second binding %+v, %v (first ID %s)", h, ok, b.ID)
	}
	for _, unknown := range []string{"", "cookie-jiro", "COOKIE-TARO", "cookie-taro "} {
		if b, ok := e.lookup(unknown); ok {
			t.Errorf("Lookup(%q) found %+v", unknown, b)
		}
	}

	// A new login that sets the same value replaces the binding.
	e.bind("cookie-taro", "SVC02", "jiro")
	if b2, ok := e.lookup("cookie-taro"); !ok || b2.Service != "SVC02" || b2.User != "jiro" || b2.ID == b.ID {
		t.Errorf("after a new login: %+v, %v", b2, ok)
	}

	recs := e.audit()
	if len(recs) != 3 {
		t.Fatalf("%d audit records, want one per Bind", len(recs))
	}
	for _, r := range recs {
		j, _ := json.Marshal(r)
		if r.Event != audit.Login || r.ClientIP != "192.0.2.1" || !r.Time.Equal(t0) || strings.Contains(string(j), "cookie-") {
			t.Errorf("audit record %s", j)
		}
	}
}

func TestBindRefusesEmptyValues(t *testing.T) {
	tests := []struct{ name, cookie, service, user string }{
		{"empty cookie value", "", "SVC01", "taro"},
		{"empty service", "cookie", "", "taro"},
		{"empty user", "cookie", "SVC01", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if err := e.m.Bind(ctx, tc.cookie, tc.service, tc.user, "192.0.2.1"); err == nil {
				t.Error("Bind succeeded")
			}
			if k := e.keys(); len(k) != 0 {
				t.Errorf("bindings stored: %q", k)
			}
			if a := e.audit(); len(a) != 0 {
				t.Errorf("audit records written: %+v", a)
			}
		})
	}
}

func TestStoredKeyIsAHash(t *testing.T) {
	e := newEnv(t)
	const cookie = "JSESSIONID-7Hq2vLx9RkPz0aWmYc3N"
	e.bind(cookie, "SVC01", "taro")
	if k := e.keys(); len(k) != 1 || k[0] != Hash(cookie) {
		t.Fatalf("keys %q, want only Hash(cookie)", k)
	}
	if Hash(cookie) == Hash(cookie+"x") || strings.Contains(Hash(cookie), cookie) {
		t.Error("Hash does not hide or tell values apart")
	}
	path := e.db.Path()
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(cookie)) {
		t.Error("the database file holds the session cookie value")
	}
	if !bytes.Contains(raw, []byte(Hash(cookie))) {
		t.Error("the database file does not hold the hashed key (wrong file?)")
	}
}

func TestIdleTimeoutAndMaxAge(t *testing.T) {
	tests := []struct {
		name string
		uses []time.Duration // Lookups after the login, before the last
		at   time.Duration
		want bool
	}{
		{"just under idle", nil, idle - time.Second, true},
		{"idle reached", nil, idle, false},
		{"long idle", nil, 5 * time.Hour, false},
		{"kept alive by use", []time.Duration{20 * time.Minute, 40 * time.Minute, 60 * time.Minute}, 85 * time.Minute, true},
		{"idle after the last use", []time.Duration{20 * time.Minute}, 20*time.Minute + idle, false},
		{"just under max age despite use", []time.Duration{25 * time.Minute, 50 * time.Minute, 75 * time.Minute, 100 * time.Minute}, maxAge - time.Second, true},
		{"max age reached despite use", []time.Duration{25 * time.Minute, 50 * time.Minute, 75 * time.Minute, 100 * time.Minute}, maxAge, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.bind("cookie", "SVC01", "taro")
			for _, d := range tc.uses {
				e.now = t0.Add(d)
				if _, ok := e.lookup("cookie"); !ok {
					t.Fatalf("binding gone at +%v", d)
				}
			}
			e.now = t0.Add(tc.at)
			if _, ok := e.lookup("cookie"); ok != tc.want {
				t.Errorf("Lookup at +%v found = %v, want %v", tc.at, ok, tc.want)
			}
			if !tc.want {
				if k := e.keys(); len(k) != 0 {
					t.Errorf("expired binding was not removed: %q", k)
				}
				// And once the store has swept it, it does not come back
				// even to a clock set back.
				if _, err := e.db.Sweep(ctx, 100); err != nil {
					t.Fatal(err)
				}
				e.now = t0.Add(time.Second)
				if _, ok := e.lookup("cookie"); ok {
					t.Error("expired binding found again")
				}
			}
		})
	}
}

func TestLookupRefreshesSeenOnlyWhenStale(t *testing.T) {
	e := newEnv(t)
	e.bind("cookie", "SVC01", "taro")
	// Seen is written when it is more than Idle/10 (3 minutes) old.
	steps := []struct {
		at        time.Duration
		wantWrite bool
		wantSeen  time.Duration // stored afterwards
	}{
		{time.Minute, false, 0},
		{3 * time.Minute, false, 0},
		{3*time.Minute + time.Second, true, 3*time.Minute + time.Second},
		{5 * time.Minute, false, 3*time.Minute + time.Second},
		{7 * time.Minute, true, 7 * time.Minute},
		{30 * time.Minute, true, 30 * time.Minute}, // 23 minutes idle: still alive, and refreshed
	}
	for _, s := range steps {
		e.now = t0.Add(s.at)
		before := e.cs.updates.Load()
		b, ok := e.lookup("cookie")
		if !ok {
			t.Fatalf("+%v: binding gone", s.at)
		}
		if wrote := e.cs.updates.Load() > before; wrote != s.wantWrite {
			t.Errorf("+%v: wrote = %v, want %v", s.at, wrote, s.wantWrite)
		}
		st, _ := e.stored("cookie")
		if !st.Seen.Equal(t0.Add(s.wantSeen)) {
			t.Errorf("+%v: stored Seen %v, want +%v", s.at, st.Seen.Sub(t0), s.wantSeen)
		}
		if !st.Created.Equal(t0) || b.ID != st.ID {
			t.Errorf("+%v: Lookup changed Created or ID: %+v", s.at, st)
		}
	}
}

func TestRotateMovesBindingAndKeepsID(t *testing.T) {
	e := newEnv(t)
	e.bind("old", "SVC01", "taro")
	orig, _ := e.stored("old")

	e.now = t0.Add(10 * time.Minute)
	if err := e.m.Rotate(ctx, "old", "new"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.lookup("old"); ok {
		t.Error("the old value is still bound")
	}
	b, ok := e.lookup("new")
	if !ok || b.ID != orig.ID || b.Service != "SVC01" || b.User != "taro" {
		t.Fatalf("rotated binding %+v, %v; want ID %s of taro", b, ok, orig.ID)
	}
	if !b.Created.Equal(t0) || !b.Seen.Equal(e.now) {
		t.Errorf("rotated binding created %v seen %v; want the login time kept and seen now", b.Created, b.Seen)
	}
	if k := e.keys(); len(k) != 1 || k[0] != Hash("new") {
		t.Errorf("keys %q, want only Hash(new)", k)
	}

	// A rotation is no new login: max age still counts from the login.
	e.now = t0.Add(maxAge - time.Minute)
	if err := e.m.Rotate(ctx, "new", "newer"); err != nil {
		t.Fatal(err)
	}
	e.now = t0.Add(maxAge)
	if _, ok := e.lookup("newer"); ok {
		t.Error("rotations extended the binding past max age")
	}
}

func TestRotateNeverCreatesBinding(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(e *env)
		old, new string
		want     []string // cookie values bound afterwards
	}{
		{"unbound old value", func(e *env) {}, "planted", "new", nil},
		{"unbound old value beside another binding", func(e *env) { e.bind("other", "SVC01", "hanako") }, "planted", "new", []string{"other"}},
		{"idle old value", func(e *env) { e.bind("old", "SVC01", "taro"); e.now = t0.Add(idle) }, "old", "new", nil},
		{"too old value", func(e *env) {
			e.bind("old", "SVC01", "taro")
			for d := 20 * time.Minute; d < maxAge; d += 20 * time.Minute {
				e.now = t0.Add(d)
				e.lookup("old")
			}
			e.now = t0.Add(maxAge)
		}, "old", "new", nil},
		{"empty new value", func(e *env) { e.bind("old", "SVC01", "taro") }, "old", "", []string{"old"}},
		{"same value", func(e *env) { e.bind("old", "SVC01", "taro") }, "old", "old", []string{"old"}},
		{"empty old value", func(e *env) {}, "", "new", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			if err := e.m.Rotate(ctx, tc.old, tc.new); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, c := range tc.want {
				want = append(want, Hash(c))
			}
			got := e.keys()
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("bound keys %q, want hashes of %q", got, tc.want)
			}
			if tc.new != "" && tc.new != tc.old {
				if _, ok := e.stored(tc.new); ok {
					t.Errorf("Rotate created a binding for %q", tc.new)
				}
			}
		})
	}
}

func TestDrop(t *testing.T) {
	e := newEnv(t)
	e.bind("cookie", "SVC01", "taro")
	e.bind("other", "SVC01", "hanako")
	for _, v := range []string{"cookie", "cookie", "never-bound", ""} {
		if err := e.m.Drop(ctx, v); err != nil {
			t.Errorf("Drop(%q): %v", v, err)
		}
	}
	if _, ok := e.lookup("cookie"); ok {
		t.Error("dropped binding still found")
	}
	if _, ok := e.lookup("other"); !ok {
		t.Error("Drop removed another session's binding")
	}
}

// The store expires a binding when it idles or ages out, as the manager
// judges it, so bindings nobody looks up again are removed without a sweep
// of the session's own: a binding kept alive by use still ends at its max
// age, and so does one rotated to a new cookie value.
func TestBindingsExpireInTheStore(t *testing.T) {
	e := newEnv(t)
	e.bind("idle", "SVC01", "taro")
	e.bind("busy", "SVC01", "jiro")
	e.bind("rotated", "SVC01", "hanako")
	at := func(d time.Duration, want ...string) {
		t.Helper()
		e.now = t0.Add(d)
		var hashes []string
		for _, c := range want {
			hashes = append(hashes, Hash(c))
		}
		slices.Sort(hashes)
		if got := e.keys(); !slices.Equal(got, hashes) {
			t.Errorf("at +%v the store holds %d bindings, want those of %q", d, len(got), want)
		}
	}
	at(idle-time.Second, "idle", "busy", "rotated")
	for d := 20 * time.Minute; d < maxAge; d += 20 * time.Minute {
		e.now = t0.Add(d)
		if _, ok := e.lookup("busy"); !ok {
			t.Fatalf("busy binding gone at +%v", d)
		}
		if d == 20*time.Minute {
			if err := e.m.Rotate(ctx, "rotated", "rotated-2"); err != nil {
				t.Fatal(err)
			}
		} else if _, ok := e.lookup("rotated-2"); !ok {
			t.Fatalf("rotated binding gone at +%v", d)
		}
	}
	at(idle, "busy", "rotated-2")
	at(maxAge-time.Second, "busy", "rotated-2")
	at(maxAge)
	if n, err := e.db.Sweep(ctx, 100); err != nil || n != 3 {
		t.Errorf("store Sweep = %d, %v; want the 3 expired bindings (idle, busy, rotated-2)", n, err)
	}
}

// A Lookup that refreshes Seen races with a logout or a rotation handled
// for a concurrent request: its write must not bring back the binding
// that the other request dropped or moved.
func TestLookupRefreshDoesNotResurrectBinding(t *testing.T) {
	tests := []struct {
		name      string
		meanwhile func(e *env) error
		want      []string // cookie values bound afterwards
	}{
		{"logout", func(e *env) error { return e.m.Drop(ctx, "old") }, nil},
		{"rotation", func(e *env) error { return e.m.Rotate(ctx, "old", "new") }, []string{"new"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.bind("old", "SVC01", "taro")
			e.now = t0.Add(10 * time.Minute) // stale: Lookup will write
			e.cs.beforeUpdate = func() {
				if err := tc.meanwhile(e); err != nil {
					t.Error(err)
				}
			}
			if _, _, err := e.m.Lookup(ctx, "old"); err != nil {
				t.Fatal(err)
			}
			if e.cs.beforeUpdate != nil {
				t.Fatal("Lookup did not write; the race was not exercised")
			}
			var want []string
			for _, c := range tc.want {
				want = append(want, Hash(c))
			}
			if got := e.keys(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("bound keys %q, want hashes of %q", got, tc.want)
			}
			if _, ok := e.lookup("old"); ok {
				t.Error("the old value is bound again")
			}
		})
	}
}
