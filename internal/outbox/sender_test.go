package outbox

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Two senders on one store (two handlers, or two nodes) deliver every
// notice once while their claims hold.
func TestTwoSendersDeliverEachOnce(t *testing.T) {
	st := openStore(t)
	const total = 40
	for i := range total {
		enqueue(t, st, notice(i))
	}
	clk := &clock{t: t0}
	var mu sync.Mutex
	count := map[string]int{}
	senders := make([]*Sender, 2)
	for i := range senders {
		senders[i] = newSender(st, clk, func(_ context.Context, n Notice) error {
			mu.Lock()
			count[n.User]++
			mu.Unlock()
			// Long enough for the other sender to reach the same notice.
			time.Sleep(time.Millisecond)
			return nil
		})
	}
	var wg sync.WaitGroup
	sent := make([]int, len(senders))
	for i, s := range senders {
		wg.Go(func() {
			// Both scan the whole queue and so race for every notice.
			n, _, err := s.DrainOnce(ctx, total)
			if err != nil {
				t.Error(err)
			}
			sent[i] = n
		})
	}
	wg.Wait()
	if len(count) != total || sent[0]+sent[1] != total {
		t.Errorf("%d notices delivered, senders report %v, want %d", len(count), sent, total)
	}
	for user, n := range count {
		if n != 1 {
			t.Errorf("%s delivered %d times", user, n)
		}
	}
	if c := depth(t, st); c != (Counts{}) {
		t.Errorf("after draining: %+v", c)
	}
}

// A claim keeps other senders off only for its lease: a sender that died
// (here: hangs) mid-delivery does not hold a notice back for ever. The
// notice is then sent twice, which is the at-least-once the package
// promises.
func TestExpiredClaimIsTakenOver(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, notice(1))
	clk := &clock{t: t0}
	inside, release := make(chan struct{}), make(chan struct{})
	hung := newSender(st, clk, func(context.Context, Notice) error {
		close(inside)
		<-release
		return nil
	})
	done := make(chan int)
	go func() {
		n, _, err := hung.DrainOnce(ctx, 10)
		if err != nil {
			t.Error(err)
		}
		done <- n
	}()
	select {
	case <-inside:
	case <-time.After(15 * time.Second):
		t.Fatal("first sender never delivered")
	}

	rec := &recorder{}
	other := newSender(st, clk, rec.deliver)
	if sent, failed, err := other.DrainOnce(ctx, 10); sent+failed != 0 || err != nil {
		t.Fatalf("while the claim holds: %d sent, %d failed, %v", sent, failed, err)
	}
	clk.Set(t0.Add(hung.Lease))
	if sent, _, err := other.DrainOnce(ctx, 10); sent != 1 || err != nil {
		t.Fatalf("after the lease: %d sent, %v", sent, err)
	}
	close(release)
	if n := <-done; n != 1 {
		t.Errorf("first sender reports %d sent", n)
	}
	if c := depth(t, st); c != (Counts{}) {
		t.Errorf("after both: %+v", c)
	}
}

// Run stops when its context ends, whether idle or mid-delivery, and a
// delivery cut short is handed back due at once.
func TestRunStopsOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		queued bool
	}{
		{"idle", false},
		{"mid-delivery", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			clk := &clock{t: t0}
			inside := make(chan struct{})
			if tc.queued {
				enqueue(t, st, notice(1))
			} else {
				close(inside)
			}
			s := newSender(st, clk, func(ctx context.Context, _ Notice) error {
				close(inside)
				<-ctx.Done()
				return ctx.Err()
			})
			s.Poll = time.Hour
			stop := start(t, s)
			select {
			case <-inside:
			case <-time.After(15 * time.Second):
				t.Fatal("Run never delivered")
			}
			stop()
			if !tc.queued {
				return
			}
			rec := &recorder{}
			next := newSender(st, clk, rec.deliver)
			if sent, _, err := next.DrainOnce(ctx, 10); sent != 1 || err != nil {
				t.Errorf("the interrupted notice: %d sent, %v; want it due at once", sent, err)
			}
		})
	}
}

// A sleeping sender sends what was queued as soon as it is kicked, not at
// its next poll.
func TestKickWakesSleepingSender(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, notice(0))
	delivered := make(chan Notice, 3)
	s := NewSender(st, func(_ context.Context, n Notice) error {
		delivered <- n
		return nil
	})
	s.Now = func() time.Time { return t0.Add(time.Hour) }
	s.Poll = time.Hour
	defer start(t, s)()
	for i := range 3 {
		if i > 0 {
			// Queued while Run sleeps for an hour.
			enqueue(t, st, notice(i))
			s.Kick()
		}
		select {
		case n := <-delivered:
			if n.User != notice(i).User {
				t.Errorf("delivered %s, want %s", n.User, notice(i).User)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("notice %d not sent after Kick", i)
		}
	}
}

// start runs s until the returned stop is called; stop fails the test if
// Run does not return promptly.
func start(t *testing.T, s *Sender) (stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		s.Run(runCtx)
		close(stopped)
	}()
	return func() {
		t.Helper()
		cancel()
		select {
		case <-stopped:
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not stop within 15s of its context ending")
		}
	}
}
