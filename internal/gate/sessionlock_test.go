package gate

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// A second locker of a session waits until the first unlocks; lockers of
// other sessions do not wait; overlapping sets taken in opposite orders
// do not deadlock; a locker whose context ends gives up; nothing is left
// in the table afterwards.
func TestSessionLocks(t *testing.T) {
	l := NewSessionLocks(nil)
	ctx := context.Background()

	unlockA, err := l.lock(ctx, []string{"A", "", "A"})
	if err != nil {
		t.Fatal(err)
	}
	// Another session is free.
	unlockB, err := l.lock(ctx, []string{"B"})
	if err != nil {
		t.Fatal(err)
	}
	unlockB.unlock(0)

	got := make(chan struct{})
	go func() {
		unlock, err := l.lock(ctx, []string{"B", "A"})
		if err != nil {
			t.Error(err)
		}
		close(got)
		unlock.unlock(0)
	}()
	select {
	case <-got:
		t.Fatal("a second locker of A did not wait for the first")
	case <-time.After(100 * time.Millisecond):
	}

	// A locker that gives up waiting leaves nothing behind.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(short, []string{"A"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a locker whose context ended: %v, want DeadlineExceeded", err)
	}

	unlockA.unlock(0)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting locker did not get A once it was unlocked")
	}

	// Overlapping sets in opposite orders, many times over.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			set := []string{"X", "Y", "Z"}
			if i%2 == 1 {
				set = []string{"Z", "Y", "X"}
			}
			unlock, err := l.lock(ctx, set)
			if err != nil {
				t.Error(err)
				return
			}
			unlock.unlock(0)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("lockers of overlapping sessions deadlocked")
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) != 0 {
		t.Errorf("%d sessions left in the table after every locker unlocked", len(l.m))
	}
}

// Logins wait out a fence (a release the bank may still be carrying out);
// confirmations do not; a login whose context ends gives up.
func TestSessionLocksFence(t *testing.T) {
	l := NewSessionLocks(nil)
	ctx := context.Background()
	l.fence([]string{"A"}, 300*time.Millisecond)

	start := time.Now()
	unlock, err := l.lock(ctx, []string{"A"})
	if err != nil {
		t.Fatal(err)
	}
	unlock.unlock(0)
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("a confirmation waited %v for a fence meant for logins", d)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.lockForLogin(short, []string{"B", "A"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a login that gave up during the fence: %v, want DeadlineExceeded", err)
	}

	unlock, err = l.lockForLogin(ctx, []string{"B", "A"})
	if err != nil {
		t.Fatal(err)
	}
	unlock.unlock(0)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("a login went ahead %v after a 300ms fence was set", d)
	}
	if unlock, err := l.lockForLogin(ctx, []string{"C"}); err != nil {
		t.Fatal(err)
	} else {
		unlock.unlock(0)
	}
}

// A login already waiting for a release's lock when the release ends with
// an unknown outcome (the fence is set before the release unlocks) waits
// out the fence too, rather than going ahead at the unlock.
func TestSessionLocksFenceSetWhileLoginWaits(t *testing.T) {
	l := NewSessionLocks(nil)
	ctx := context.Background()
	unlock, err := l.lock(ctx, []string{"A"}) // the release
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		unlock, err := l.lockForLogin(ctx, []string{"A"})
		if err != nil {
			t.Error(err)
		}
		got <- time.Now()
		unlock.unlock(0)
	}()
	time.Sleep(50 * time.Millisecond) // the login waits for the lock
	released := time.Now()
	l.fence([]string{"A"}, 300*time.Millisecond)
	unlock.unlock(0)
	select {
	case at := <-got:
		if d := at.Sub(released); d < 250*time.Millisecond {
			t.Errorf("the waiting login went ahead %v after the release, within its 300ms fence", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the login never got the lock")
	}
}

// memLocker is a store.Locker in memory, shared by the SessionLocks of
// several "gateways", as etcd is; fail makes every call fail as a store
// that cannot be reached; valid is how long a lock is said to last.
type memLocker struct {
	mu     sync.Mutex
	held   map[string]chan struct{}
	fences map[string]time.Time
	names  [][]string
	fail   bool
	valid  time.Duration
}

func newMemLocker() *memLocker {
	return &memLocker{held: map[string]chan struct{}{}, fences: map[string]time.Time{}, valid: time.Hour}
}

type memHeld struct {
	m     *memLocker
	names []string
	until time.Time
}

func (h *memHeld) ValidUntil() time.Time { return h.until }

func (h *memHeld) Unlock(fence time.Duration) {
	m := h.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range h.names {
		if fence > 0 {
			m.fences[n] = time.Now().Add(fence)
		}
		close(m.held[n])
		delete(m.held, n)
	}
	h.names = nil
}

func (m *memLocker) Lock(ctx context.Context, names []string, _ time.Duration) (store.Held, error) {
	m.mu.Lock()
	m.names = append(m.names, names)
	fail := m.fail
	m.mu.Unlock()
	if fail {
		return nil, store.ErrUnavailable
	}
	h := &memHeld{m: m, until: time.Now().Add(m.valid)}
	for _, n := range names {
		for {
			m.mu.Lock()
			ch, busy := m.held[n]
			if !busy {
				m.held[n] = make(chan struct{})
				h.names = append(h.names, n)
				m.mu.Unlock()
				break
			}
			m.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				h.Unlock(0)
				return nil, ctx.Err()
			}
		}
	}
	return h, nil
}

func (m *memLocker) FencedUntil(_ context.Context, names []string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return time.Time{}, store.ErrUnavailable
	}
	var until time.Time
	for _, n := range names {
		if m.fences[n].After(until) {
			until = m.fences[n]
		}
	}
	return until, nil
}

// On a store that several gateways share, a login on one gateway waits
// for a release into its session on another, and for the fence of a
// release whose outcome is unknown there, written with the unlock; the
// store sees digests of the session IDs, in one order, never the IDs; a
// store that cannot be reached refuses rather than lets the two overlap;
// a hold says whether it outlasts a release.
func TestSessionLocksShared(t *testing.T) {
	shared := newMemLocker()
	one, two := NewSessionLocks(shared), NewSessionLocks(shared)
	ctx := context.Background()

	release, err := one.lock(ctx, []string{"VICTIM-SESSION", "B"})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range shared.names {
		for _, n := range names {
			if n == "VICTIM-SESSION" || n == "B" || len(n) != 32 {
				t.Fatalf("the store was given %q; want digests", names)
			}
		}
		if !slices.IsSorted(names) {
			t.Fatalf("the store was given %q out of order", names)
		}
	}
	logged := make(chan struct{})
	go func() {
		x, err := two.lockForLogin(ctx, []string{"VICTIM-SESSION"})
		if err != nil {
			t.Error(err)
		}
		close(logged)
		x.unlock(0)
	}()
	select {
	case <-logged:
		t.Fatal("a login on the other gateway did not wait for the release")
	case <-time.After(100 * time.Millisecond):
	}
	// The release's outcome is unknown: its fence, written with the
	// unlock, holds the login off after the unlock too.
	unlocked := time.Now()
	release.unlock(300 * time.Millisecond)
	select {
	case <-logged:
		if took := time.Since(unlocked); took < 200*time.Millisecond {
			t.Errorf("the login on the other gateway went ahead %v after the unlock, inside the fence", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the login on the other gateway never went ahead")
	}

	hold := &SessionHold{}
	hold.locked, err = one.lock(ctx, []string{"D"})
	if err != nil {
		t.Fatal(err)
	}
	if !hold.ValidFor(time.Minute) {
		t.Error("a hold valid for an hour does not outlast a minute")
	}
	hold.Unlock()
	shared.valid = 30 * time.Second
	hold.locked, err = one.lock(ctx, []string{"D"})
	if err != nil {
		t.Fatal(err)
	}
	if hold.ValidFor(time.Minute) {
		t.Error("a hold valid for 30 s says it outlasts a minute")
	}
	hold.Unlock()

	shared.mu.Lock()
	shared.fail = true
	shared.mu.Unlock()
	if _, err := two.lock(ctx, []string{"C"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("locking with the store down: %v; want ErrUnavailable", err)
	}
	if _, err := two.lockForLogin(ctx, []string{"E"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a login with the store down: %v; want ErrUnavailable", err)
	}
	// Nothing stays locked here when the store refused.
	shared.mu.Lock()
	shared.fail = false
	shared.mu.Unlock()
	x, err := two.lock(ctx, []string{"C"})
	if err != nil {
		t.Fatal(err)
	}
	x.unlock(0)
}
