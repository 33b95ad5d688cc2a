package etcdstore

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Two gateways on one store: a lock one holds makes the other wait until
// it is freed; a waiter gives up with its context; locks of other names do
// not wait; a lock is valid for at least two thirds of its lease; freeing
// with a fence writes the fence before anyone can take the lock, and the
// other gateway reads it by etcd's count, not by a clock.
func TestLockAcrossNodes(t *testing.T) {
	c := cluster(t)
	a := open(t, c, Options{})
	b := open(t, c, Options{Prefix: a.prefix})
	ctx := context.Background()

	heldA, err := a.Lock(ctx, []string{"s1", "s2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v := time.Until(heldA.ValidUntil()); v < 2*lockTTL/3 || v > lockTTL {
		t.Errorf("a lock just taken is valid for %v; want between two thirds of %v and all of it", v, lockTTL)
	}
	got := make(chan time.Time, 1)
	go func() {
		heldB, err := b.Lock(ctx, []string{"s2"}, 0)
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		got <- time.Now()
		heldB.Unlock(0)
	}()
	if other, err := b.Lock(ctx, []string{"s3"}, 0); err != nil {
		t.Fatalf("another name: %v", err)
	} else {
		other.Unlock(0)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := b.Lock(wctx, []string{"s1"}, 0); !errors.Is(err, context.DeadlineExceeded) {
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
	heldA.Unlock(0)
	select {
	case at := <-got:
		t.Logf("node b took s2 %v after node a freed it", at.Sub(freed).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("node b did not take s2 once node a freed it")
	}

	// Freed with a fence: whoever takes the lock next finds the fence.
	heldA, err = a.Lock(ctx, []string{"s5"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	fenced := make(chan time.Time, 1)
	go func() {
		heldB, err := b.Lock(ctx, []string{"s5"}, 0)
		if err != nil {
			t.Error(err)
			fenced <- time.Time{}
			return
		}
		defer heldB.Unlock(0)
		until, err := b.FencedUntil(ctx, []string{"s6", "s5"})
		if err != nil {
			t.Error(err)
		}
		fenced <- until
	}()
	time.Sleep(200 * time.Millisecond)
	heldA.Unlock(time.Minute)
	select {
	case until := <-fenced:
		if d := time.Until(until); d < 50*time.Second || d > 62*time.Second {
			t.Errorf("the next holder reads the fence as passing in %v; want about a minute", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("node b did not take s5 once node a freed it")
	}
	if until, err := b.FencedUntil(ctx, []string{"s6"}); err != nil || !until.IsZero() {
		t.Errorf("a name without a fence: %v, %v; want none", until, err)
	}

	// A confirmation's lock fences its name while it is held (should its
	// gateway be cut off before it frees it); freed with a known outcome,
	// the fence goes with it; another holder's fence stays.
	other, err := b.Lock(ctx, []string{"s8"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other.Unlock(2 * time.Minute) // another holder's unknown outcome
	heldA, err = a.Lock(ctx, []string{"s9"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if until, err := b.FencedUntil(ctx, []string{"s9"}); err != nil || time.Until(until) < 50*time.Second {
		t.Errorf("a held confirmation's name reads as fenced until %v (%v); want a minute or more", until, err)
	}
	heldA.Unlock(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		until, err := b.FencedUntil(ctx, []string{"s9"})
		if err != nil {
			t.Fatal(err)
		}
		if until.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the provisional fence is still there after the unlock: %v", until)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if until, err := b.FencedUntil(ctx, []string{"s8"}); err != nil || time.Until(until) < 100*time.Second {
		t.Errorf("another holder's fence after it was freed with a fence of 2 min: %v (%v)", until, err)
	}
}

// A lock freed after it was lost and taken by another leaves the other's
// lock in place; the fence it carries is still written.
func TestLockStaleUnlock(t *testing.T) {
	c := cluster(t)
	a := open(t, c, Options{})
	b := open(t, c, Options{Prefix: a.prefix})
	ctx := context.Background()
	stale, err := a.Lock(ctx, []string{"s7"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The lease lost: etcd drops its keys, as for a node cut off.
	id, _, err := a.locking.get(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	heldB, err := b.Lock(ctx, []string{"s7"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	stale.Unlock(time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		until, err := b.FencedUntil(ctx, []string{"s7"})
		if err != nil {
			t.Fatal(err)
		}
		if !until.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stale unlock wrote no fence")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := b.cli.Get(ctx, b.prefix+"locks/s7", clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Fatalf("node b's lock after node a's stale unlock: %v, %v; want it in place", resp, err)
	}
	heldB.Unlock(0)
}
