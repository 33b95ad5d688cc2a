package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

var (
	ctx = context.Background()
	t0  = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
)

// openStore opens a fresh bbolt database that the test closes at its end,
// with etcd's transaction limits on, so nothing here works on bbolt alone.
func openStore(t *testing.T) store.Store {
	t.Helper()
	db, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "otpgate.db"), boltstore.Options{Timeout: time.Second, TxnLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// clock is a settable clock shared by the senders of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func notice(i int) Notice {
	return Notice{Event: "locked", Service: "S1", User: fmt.Sprintf("u%03d", i),
		To: fmt.Sprintf("u%03d@example.jp", i), At: t0.Add(time.Duration(i) * time.Second)}
}

func enqueue(t *testing.T, st store.Store, ns ...Notice) {
	t.Helper()
	for _, n := range ns {
		if err := st.Update(ctx, func(tx store.Tx) error { return Enqueue(tx, n) }); err != nil {
			t.Fatalf("Enqueue %+v: %v", n, err)
		}
	}
}

// recorder is a Deliver that records what it was given and fails as told.
type recorder struct {
	mu   sync.Mutex
	got  []Notice
	fail func(n Notice, try int) error // nil: always succeed
}

func (r *recorder) deliver(_ context.Context, n Notice) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, n)
	if r.fail != nil {
		return r.fail(n, len(r.got))
	}
	return nil
}

func (r *recorder) notices() []Notice {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Notice(nil), r.got...)
}

func newSender(st store.Store, clk *clock, deliver func(context.Context, Notice) error) *Sender {
	s := NewSender(st, deliver)
	s.Now = clk.Now
	return s
}

func depth(t *testing.T, st store.Store) Counts {
	t.Helper()
	c, err := Depth(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The notice exists exactly when the change it announces does.
func TestEnqueueFollowsItsTransaction(t *testing.T) {
	errChange := errors.New("the change was refused")
	for _, tc := range []struct {
		name     string
		fnErr    error
		wantSent int
	}{
		{"committed", nil, 1},
		{"rolled back", errChange, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			err := st.Update(ctx, func(tx store.Tx) error {
				if err := tx.Put(store.Tokens, "S1\x1fu01", []byte(`{"locked":true}`)); err != nil {
					return err
				}
				if err := Enqueue(tx, notice(1)); err != nil {
					return err
				}
				return tc.fnErr
			})
			if !errors.Is(err, tc.fnErr) {
				t.Fatalf("Update: %v, want %v", err, tc.fnErr)
			}
			if c := depth(t, st); c.Queued != tc.wantSent {
				t.Errorf("queued %d, want %d", c.Queued, tc.wantSent)
			}
			rec := &recorder{}
			s := newSender(st, &clock{t: t0}, rec.deliver)
			for range 2 {
				if _, _, err := s.DrainOnce(ctx, 10); err != nil {
					t.Fatal(err)
				}
			}
			if got := rec.notices(); len(got) != tc.wantSent || (tc.wantSent == 1 && got[0] != notice(1)) {
				t.Errorf("delivered %+v, want %d × %+v", got, tc.wantSent, notice(1))
			}
			if c := depth(t, st); c != (Counts{}) {
				t.Errorf("after draining: %+v, want empty", c)
			}
			if s := s.Stats(); s != (Stats{Sent: uint64(tc.wantSent)}) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestEnqueueRefusesIncompleteNotice(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Notice)
	}{
		{"no event", func(n *Notice) { n.Event = "" }},
		{"no address", func(n *Notice) { n.To = " " }},
		{"no time", func(n *Notice) { n.At = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			n := notice(1)
			tc.edit(&n)
			err := st.Update(ctx, func(tx store.Tx) error { return Enqueue(tx, n) })
			if err == nil {
				t.Fatal("Enqueue accepted an incomplete notice")
			}
			if c := depth(t, st); c.Queued != 0 {
				t.Errorf("queued %d", c.Queued)
			}
		})
	}
}

// Notices go out in the order of their changes, not of their writes, and
// a round takes at most its limit.
func TestDrainInEventOrder(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, notice(3), notice(1), notice(2))
	if c := depth(t, st); c.Queued != 3 || !c.Oldest.Equal(notice(1).At) {
		t.Errorf("depth %+v, want 3 queued, oldest %v", c, notice(1).At)
	}
	rec := &recorder{}
	s := newSender(st, &clock{t: t0}, rec.deliver)
	if sent, failed, err := s.DrainOnce(ctx, 2); sent != 2 || failed != 0 || err != nil {
		t.Fatalf("first round: %d sent, %d failed, %v", sent, failed, err)
	}
	if sent, _, err := s.DrainOnce(ctx, 2); sent != 1 || err != nil {
		t.Fatalf("second round: %d sent, %v", sent, err)
	}
	got := rec.notices()
	for i, n := range got {
		if n.User != notice(i+1).User {
			t.Errorf("delivery %d is %s, want %s", i, n.User, notice(i+1).User)
		}
	}
}

// A queue longer than a scan page is counted and drained whole, in order.
func TestQueueLongerThanAPage(t *testing.T) {
	st := openStore(t)
	const total = 2*scanPage + 50
	for first := 0; first < total; first += scanPage {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := first; i < min(first+scanPage, total); i++ {
				if err := Enqueue(tx, notice(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := depth(t, st); c.Queued != total || !c.Oldest.Equal(notice(0).At) {
		t.Errorf("depth %+v, want %d queued, oldest %v", c, total, notice(0).At)
	}
	rec := &recorder{}
	s := newSender(st, &clock{t: t0}, rec.deliver)
	if sent, _, err := s.DrainOnce(ctx, 2*total); sent != total || err != nil {
		t.Fatalf("%d sent, %v", sent, err)
	}
	for i, n := range rec.notices() {
		if n != notice(i) {
			t.Fatalf("delivery %d is %s, want %s", i, n.User, notice(i).User)
		}
	}
}

// A failing delivery is retried after waits that double, never early.
func TestRetriesBackOff(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, notice(1))
	clk := &clock{t: t0}
	rec := &recorder{fail: func(_ Notice, try int) error {
		if try <= 3 {
			return errors.New("relay down")
		}
		return nil
	}}
	var failures []Entry
	s := newSender(st, clk, rec.deliver)
	s.OnFailure = func(e Entry, err error) { failures = append(failures, e) }

	for try := 1; try <= 4; try++ {
		if try > 1 {
			next := failures[len(failures)-1].NextAt
			wait := next.Sub(clk.Now())
			base := 30 * time.Second << (try - 2)
			if wait < base/2 || wait > base {
				t.Errorf("wait before try %d: %v, want between %v and %v", try, wait, base/2, base)
			}
			clk.Set(next.Add(-time.Millisecond))
			if sent, failed, _ := s.DrainOnce(ctx, 10); sent+failed != 0 {
				t.Fatalf("try %d made before its time", try)
			}
			clk.Set(next)
		}
		sent, failed, err := s.DrainOnce(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := try == 4; (sent == 1) != want || (failed == 1) == want {
			t.Fatalf("try %d: %d sent, %d failed", try, sent, failed)
		}
		if try == 2 {
			if c := depth(t, st); c.Queued != 1 || c.Retrying != 1 {
				t.Errorf("while retrying: %+v", c)
			}
		}
	}
	if len(failures) != 3 || failures[2].Attempts != 3 || failures[2].LastError != "relay down" {
		t.Errorf("failures reported: %+v", failures)
	}
	if s := s.Stats(); s != (Stats{Sent: 1, Failed: 3}) {
		t.Errorf("stats %+v", s)
	}
	if c := depth(t, st); c != (Counts{}) {
		t.Errorf("after delivery: %+v", c)
	}
}

// A notice that cannot be delivered ends in the dead letters, where an
// operator finds it and can requeue it.
func TestGivesUpIntoDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		attempts int
	}{
		{"after max attempts", errors.New("relay down"), 3},
		{"at once on a permanent error", Permanent(errors.New("550 no such user")), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			enqueue(t, st, notice(1))
			clk := &clock{t: t0}
			failing := true
			rec := &recorder{fail: func(Notice, int) error {
				if failing {
					return tc.err
				}
				return nil
			}}
			s := newSender(st, clk, rec.deliver)
			s.MaxAttempts = 3
			var last Entry
			s.OnFailure = func(e Entry, _ error) { last = e }
			// Far more rounds than attempts, each long after the last.
			for i := range 10 {
				clk.Set(t0.Add(time.Duration(i) * 2 * time.Hour))
				if _, _, err := s.DrainOnce(ctx, 10); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(rec.notices()); n != tc.attempts {
				t.Errorf("%d deliveries tried, want %d", n, tc.attempts)
			}
			if last.DeadAt.IsZero() || last.Attempts != tc.attempts {
				t.Errorf("last failure reported %+v, want dead after %d attempts", last, tc.attempts)
			}
			if c := depth(t, st); c.Queued != 0 || c.Dead != 1 {
				t.Errorf("depth %+v, want 1 dead", c)
			}
			if got := s.Stats(); got.Dead != 1 || got.Failed != uint64(tc.attempts-1) {
				t.Errorf("stats %+v", got)
			}
			dead, err := Dead(ctx, st, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].Notice != notice(1) || dead[0].LastError != tc.err.Error() || dead[0].ID != last.ID {
				t.Fatalf("dead letters %+v", dead)
			}

			failing = false
			if err := Requeue(ctx, st, dead[0].ID); err != nil {
				t.Fatal(err)
			}
			if c := depth(t, st); c.Queued != 1 || c.Dead != 0 || c.Retrying != 0 {
				t.Errorf("requeued: %+v", c)
			}
			if sent, _, err := s.DrainOnce(ctx, 10); sent != 1 || err != nil {
				t.Errorf("after requeue: %d sent, %v", sent, err)
			}
		})
	}
}

func TestRequeueUnknownID(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, notice(1))
	var queued string
	if err := scan(ctx, st, queuedPrefix, func(id string, _ []byte) error { queued = id; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "zz", newID(t0), "../" + newID(t0)[3:], queued} {
		if err := Requeue(ctx, st, id); !errors.Is(err, ErrUnknown) {
			t.Errorf("Requeue(%q): %v, want ErrUnknown", id, err)
		}
	}
}

// A damaged record is given up on, not retried forever, and does not hold
// the queue back.
func TestDamagedRecordIsDeadLettered(t *testing.T) {
	st := openStore(t)
	err := st.Update(ctx, func(tx store.Tx) error {
		return tx.Put(store.Outbox, queuedPrefix+newID(t0), []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, st, notice(1))
	rec := &recorder{}
	s := newSender(st, &clock{t: t0.Add(time.Hour)}, rec.deliver)
	var reported error
	s.OnFailure = func(_ Entry, err error) { reported = err }
	sent, failed, err := s.DrainOnce(ctx, 10)
	if sent != 1 || failed != 1 || err != nil {
		t.Fatalf("%d sent, %d failed, %v", sent, failed, err)
	}
	if c := depth(t, st); c.Queued != 0 || c.Dead != 1 {
		t.Errorf("depth %+v", c)
	}
	if reported == nil || s.Stats().Dead != 1 {
		t.Errorf("damage reported %v, stats %+v", reported, s.Stats())
	}
}

func TestExponential(t *testing.T) {
	b := Exponential(30*time.Second, time.Hour)
	for _, tc := range []struct {
		attempt int
		full    time.Duration
	}{
		{0, 30 * time.Second},
		{1, 30 * time.Second},
		{2, time.Minute},
		{7, 32 * time.Minute},
		{8, time.Hour},
		{1000, time.Hour},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b(tc.attempt)
			if d < tc.full/2 || d > tc.full {
				t.Fatalf("attempt %d: %v, want between %v and %v", tc.attempt, d, tc.full/2, tc.full)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: always %v, no jitter", tc.attempt, b(tc.attempt))
		}
	}
	// A ceiling near the largest duration must not overflow into a negative wait.
	huge := Exponential(time.Second, time.Duration(1<<62))
	if d := huge(100); d < 1<<61 {
		t.Errorf("huge ceiling: %v", d)
	}
}
