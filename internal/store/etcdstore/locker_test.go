package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Two gateways on one store: a lock one holds makes the other wait until
// it is freed, by unlock or, for a gateway that never frees it, when its
// hold passes; a waiter gives up with its context; locks of other names do
// not wait; a fence written by one is read by the other.
func TestLockAcrossNodes(t *testing.T) {
	c := cluster(t)
	a := open(t, c, Options{})
	b := open(t, c, Options{Prefix: a.prefix})
	ctx := context.Background()

	unlockA, err := a.Lock(ctx, []string{"s1", "s2"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		unlockB, err := b.Lock(ctx, []string{"s2"}, time.Minute)
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		got <- time.Now()
		unlockB()
	}()
	if other, err := b.Lock(ctx, []string{"s3"}, time.Minute); err != nil {
		t.Fatalf("another name: %v", err)
	} else {
		other()
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := b.Lock(wctx, []string{"s1"}, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a waiter whose context ends: %v; want context.DeadlineExceeded", err)
	}
	cancel()
	time.Sleep(500 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("node b took s2 while node a held it")
	default:
	}
	freed := time.Now()
	unlockA()
	select {
	case at := <-got:
		t.Logf("node b took s2 %v after node a freed it", at.Sub(freed).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("node b did not take s2 once node a freed it")
	}

	// A holder that never unlocks (it died): the lock passes with its
	// lease, after the hold and within the lease class's life (hold plus
	// 10 s plus two class widths of 5 s). Its late unlock then leaves the
	// lock of whoever holds it now.
	staleUnlock, err := a.Lock(ctx, []string{"s4"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	unlockB, err := b.Lock(ctx, []string{"s4"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 2*time.Second || took > 30*time.Second {
		t.Errorf("the lock of a holder that never freed it passed after %v; want after its hold of 2 s, within its lease's life", took)
	}
	staleUnlock()
	wctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := a.Lock(wctx, []string{"s4"}, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("after a stale unlock, another lock of s4: %v; want it to wait for node b's", err)
	}
	cancel()
	unlockB()

	if err := a.Fence(ctx, []string{"s5"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	until, err := b.FencedUntil(ctx, []string{"s6", "s5"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(until); d < 50*time.Second || d > time.Minute {
		t.Errorf("the other node reads the fence as passing in %v; want about a minute", d)
	}
	if until, err := b.FencedUntil(ctx, []string{"s6"}); err != nil || !until.IsZero() {
		t.Errorf("a name without a fence: %v, %v; want none", until, err)
	}
}
