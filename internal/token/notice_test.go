package token

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
)

// failingStore fails every Update after fn has run, in fn's transaction, as
// a store does whose commit fails: nothing fn wrote is kept.
type failingStore struct {
	store.Store
	updates atomic.Int64
}

var errCommit = errors.New("commit failed (test)")

func (f *failingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	f.updates.Add(1)
	return f.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errCommit
	})
}

// The fifth wrong code locks the customer and queues exactly one lock
// notice in the same transaction: if that transaction does not commit,
// there is neither a lock nor a notice. Through Activate, Renew, and a
// caller's own transaction (a paused operation's code check) with
// EnqueueLocked.
func TestLockQueuesOneNoticeWithTheLock(t *testing.T) {
	tests := []struct {
		name  string
		state State
		lock  func(m *Manager, u User, code string) error
	}{
		{"activation", Initialised, func(m *Manager, u User, code string) error {
			return m.Activate(ctx, u, code, "")
		}},
		{"renewal", Active, func(m *Manager, u User, code string) error {
			_, err := m.Renew(ctx, u, code, "")
			return err
		}},
		{"caller's transaction", Active, func(m *Manager, u User, code string) error {
			return m.store.Update(ctx, func(tx store.Tx) error {
				c, err := m.CheckInTx(tx, u, code, ForOperation, m.Now())
				if err != nil || !c.JustLocked {
					return err
				}
				return EnqueueLocked(tx, c.Record)
			})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			u := User{"SVC", "taro"}
			expires := t0.Add(10 * day) // in the renewal window
			secret := e.seed(u, func(r *Record) {
				r.State, r.Failures, r.Expires = tc.state, 4, expires
				if tc.state == Initialised {
					r.Expires = time.Time{}
				}
			})
			bad := wrongCode(secret, t0)

			// A commit that fails takes the lock and its notice with it.
			failing := &failingStore{Store: e.db}
			m, err := New(failing, e.sealer, e.mail, e.cfg)
			if err != nil {
				t.Fatal(err)
			}
			m.Now = e.clk.now
			if err := tc.lock(m, u, bad); !errors.Is(err, errCommit) {
				t.Fatalf("with a failing commit: %v; want it", err)
			}
			if r := e.get(u); r.Locked || r.Failures != 4 || e.queued() != 0 {
				t.Fatalf("after a failed commit: locked %v, %d failures, %d notices queued; want none of it", r.Locked, r.Failures, e.queued())
			}

			// Queued, not sent: seen in the outbox before the sender runs.
			e.m.Kick = nil
			if err := tc.lock(e.m, u, bad); err != nil && !errors.Is(err, ErrLocked) {
				t.Fatal(err)
			}
			r := e.get(u)
			if !r.Locked || e.queued() != 1 {
				t.Fatalf("after the fifth wrong code: locked %v, %d notices queued; want locked and 1", r.Locked, e.queued())
			}
			// Wrong codes while locked queue nothing more.
			if err := tc.lock(e.m, u, bad); err != nil && !errors.Is(err, ErrLocked) {
				t.Fatal(err)
			}
			e.drain()
			if got := e.mail.events(u); !slices.Equal(got, []string{"locked"}) {
				t.Fatalf("notices %v; want one locked", got)
			}
			n, _ := e.mail.last(u, "locked")
			if n.Email != r.Email || !n.At.Equal(r.LockedAt) {
				t.Errorf("lock notice %+v; want to %s at %v", n, r.Email, r.LockedAt)
			}
		})
	}
}

// seedMany writes n active tokens, user(i) for i in 0…n-1, 100 to a
// transaction; mod changes each record.
func (e *env) seedMany(n int, user func(i int) User, mod func(r *Record)) {
	e.t.Helper()
	for from := 0; from < n; from += 100 {
		err := e.db.Update(ctx, func(tx store.Tx) error {
			for i := from; i < min(n, from+100); i++ {
				u := user(i)
				sealed, err := e.sealer.Seal(bytes.Repeat([]byte{byte(i)}, 20), []byte(u.key()))
				if err != nil {
					return err
				}
				r := &Record{Service: u.Service, User: u.ID, State: Active, Email: u.ID + "@mail.example.jp",
					Secret: sealed, IssuedAt: t0, ActivatedAt: t0, Expires: t0.Add(365 * day)}
				if mod != nil {
					mod(r)
				}
				if err := save(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// Several sweepers on one store (two handlers, two nodes) queue each
// reminder once between them.
func TestTwoSweepersQueueOneReminder(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 150 // more than a page
	user := func(i int) User { return User{"SVC", fmt.Sprintf("U%03d", i)} }
	expires := t0.Add(100 * day)
	e.seedMany(n, user, func(r *Record) { r.Expires = expires })
	e.clk.set(expires.Add(-29 * day))

	sweepers := []*Manager{e.m}
	for range 2 {
		m, err := New(e.db, e.sealer, e.mail, e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.Now = e.clk.now
		sweepers = append(sweepers, m)
	}
	e.m.Kick = nil
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, m := range sweepers {
		wg.Go(func() {
			k, err := m.Sweep(ctx)
			if err != nil {
				t.Error(err)
			}
			total.Add(int64(k))
		})
	}
	wg.Wait()
	if total.Load() != n || e.queued() != n {
		t.Fatalf("sweepers report %d reminders, %d queued; want %d", total.Load(), e.queued(), n)
	}
	e.drain()
	for i := range n {
		if got := e.mail.events(user(i)); !slices.Equal(got, []string{"renew_reminder"}) {
			t.Fatalf("%v got %v; want one reminder", user(i), got)
		}
	}
}

// Expired setup links are cleared in transactions of a bounded size,
// whatever their number; a link still valid is kept.
func TestSweepClearsLinksInBatches(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 130 // two cleared links alone are more than MaxTxnKeys writes
	user := func(i int) User { return User{"SVC", fmt.Sprintf("U%03d", i)} }
	hash := func(i int) string { return hashLink(fmt.Sprint("link ", i)) }
	lifetime := func(i int) time.Duration {
		if i == 7 {
			return 48 * time.Hour
		}
		return 24 * time.Hour
	}
	e.seedMany(n, user, func(r *Record) {
		var i int
		fmt.Sscanf(r.User, "U%03d", &i)
		r.State, r.Secret, r.Expires, r.ActivatedAt = Issued, nil, time.Time{}, time.Time{}
		r.LinkHash, r.LinkExpires, r.PINHash = hash(i), t0.Add(lifetime(i)), "$argon2id$…"
	})
	for from := 0; from < n; from += 100 {
		err := e.db.Update(ctx, func(tx store.Tx) error {
			for i := from; i < min(n, from+100); i++ {
				b, _ := json.Marshal(linkRecord{Service: "SVC", User: user(i).ID, Expires: t0.Add(lifetime(i))})
				if err := store.PutTTL(tx, store.SetupLinks, hash(i), b, lifetime(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.clk.add(25 * time.Hour)
	if _, err := e.m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := e.get(user(i))
		if cleared := r.LinkHash == "" && r.PINHash == "" && r.LinkExpires.IsZero(); cleared != (i != 7) {
			t.Fatalf("%v after the sweep: link %q, PIN hash %q; want it cleared only if expired", user(i), r.LinkHash, r.PINHash)
		}
	}
	if _, err := e.db.Sweep(ctx, store.MaxScanLimit); err != nil {
		t.Fatal(err)
	}
	var raw int
	err := e.db.View(ctx, func(tx store.Tx) error {
		for i := range n {
			if _, err := tx.Get(store.SetupLinks, hash(i)); err == nil {
				raw++
			}
		}
		return nil
	})
	if err != nil || raw != 1 || e.linkCount() != 1 {
		t.Errorf("%d links left (%v), %d listed; want the one still valid", raw, err, e.linkCount())
	}
}

// A rotation over more records than a page: every page in a transaction
// of its own within the store's limits, one audit record with the total,
// and a second run finds nothing left. List reads the same pages.
func TestResealManyPages(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 250
	user := func(i int) User { return User{fmt.Sprintf("S%d", i%3), fmt.Sprintf("U%03d", i)} }
	e.seedMany(n, user, nil)

	newKey := make([]byte, seal.KeySize)
	rand.Read(newKey)
	rotated, err := seal.New(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if e.sealer, err = seal.New(newKey, e.key); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	// One token is revoked before the rotation finishes: nothing to seal.
	if err := e.m.Revoke(ctx, user(5), ""); err != nil {
		t.Fatal(err)
	}
	if got, err := e.m.Reseal(ctx, "yamada"); err != nil || got != n-1 {
		t.Fatalf("Reseal = %d, %v; want %d", got, err, n-1)
	}
	for i := range n {
		u := user(i)
		sealed := e.get(u).Secret
		if i == 5 {
			continue
		}
		if got, err := rotated.Open(sealed, []byte(u.key())); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 20)) {
			t.Fatalf("%v: the new key alone does not open the secret: %v", u, err)
		}
	}
	if got, err := e.m.Reseal(ctx, "yamada"); err != nil || got != 0 {
		t.Errorf("second Reseal = %d, %v; want 0", got, err)
	}
	var details []string
	for _, r := range e.audit() {
		if r.Event == audit.Resealed {
			details = append(details, r.Detail)
		}
	}
	want := []string{fmt.Sprintf("%d secrets sealed under the current key", n-1), "0 secrets sealed under the current key"}
	if !slices.Equal(details, want) {
		t.Errorf("reseal audit records %q; want %q", details, want)
	}

	all, err := e.m.List(ctx, "")
	if err != nil || len(all) != n {
		t.Fatalf("List: %d records, %v; want %d", len(all), err, n)
	}
	if !slices.IsSortedFunc(all, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.User, b.User))
	}) {
		t.Error("List is not sorted by service and user")
	}
	s1, err := e.m.List(ctx, "S1")
	if err != nil || len(s1) != n/3 || s1[0].Service != "S1" || s1[len(s1)-1].Service != "S1" {
		t.Errorf("List(S1): %d records, %v; want %d of S1", len(s1), err, n/3)
	}
}
