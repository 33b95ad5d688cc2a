package gate

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A second locker of a session waits until the first unlocks; lockers of
// other sessions do not wait; overlapping sets taken in opposite orders
// do not deadlock; a locker whose context ends gives up; nothing is left
// in the table afterwards.
func TestSessionLocks(t *testing.T) {
	l := NewSessionLocks()
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
	unlockB()

	got := make(chan struct{})
	go func() {
		unlock, err := l.lock(ctx, []string{"B", "A"})
		if err != nil {
			t.Error(err)
		}
		close(got)
		unlock()
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

	unlockA()
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
			unlock()
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
	l := NewSessionLocks()
	ctx := context.Background()
	l.fence([]string{"A"}, 300*time.Millisecond)

	start := time.Now()
	unlock, err := l.lock(ctx, []string{"A"})
	if err != nil {
		t.Fatal(err)
	}
	unlock()
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
	unlock()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("a login went ahead %v after a 300ms fence was set", d)
	}
	if unlock, err := l.lockForLogin(ctx, []string{"C"}); err != nil {
		t.Fatal(err)
	} else {
		unlock()
	}
}

// A login already waiting for a release's lock when the release ends with
// an unknown outcome (the fence is set before the release unlocks) waits
// out the fence too, rather than going ahead at the unlock.
func TestSessionLocksFenceSetWhileLoginWaits(t *testing.T) {
	l := NewSessionLocks()
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
		unlock()
	}()
	time.Sleep(50 * time.Millisecond) // the login waits for the lock
	released := time.Now()
	l.fence([]string{"A"}, 300*time.Millisecond)
	unlock()
	select {
	case at := <-got:
		if d := at.Sub(released); d < 250*time.Millisecond {
			t.Errorf("the waiting login went ahead %v after the release, within its 300ms fence", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the login never got the lock")
	}
}
