package app

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/mail"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/storemodule"
)

// A store opened by several configurations is opened once and has one
// worker, handed from owner to owner as apps start and stop: a reload adds
// the new app before the old one leaves, a failed reload removes the new
// app and the running one mails again, and the worker stops with its last
// owner, before the store closes.
func TestStorePoolHandsTheWorkerOver(t *testing.T) {
	mod := &storemodule.BoltStore{Path: filepath.Join(t.TempDir(), "otpgate.db")}
	if err := mod.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	key := mod.PoolKey()
	p, err := openPooled(key, mod)
	if err != nil {
		t.Fatal(err)
	}
	again, err := openPooled(key, mod)
	if err != nil {
		t.Fatal(err)
	}
	if again != p {
		t.Fatal("a second configuration on the store got a second pool entry")
	}

	n := outbox.Notice{Event: "unlocked", Service: "S001", User: "U001", To: "u001@mobile.example", At: time.Now()}
	if err := p.deliver(context.Background(), n); err == nil {
		t.Error("a notice was delivered with no started configuration on the store")
	}
	dirs := []string{t.TempDir(), t.TempDir()}
	var states []*State
	for _, d := range dirs {
		states = append(states, &State{key: key, pooled: p, Store: p.store, sweepEvery: time.Hour,
			mailer: mailNotifier{sender: &mail.Dir{Path: d, From: "otp@bank.example"}, issuer: "bank", from: "otp@bank.example"}})
	}
	mails := func(dir string) int {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		return len(files)
	}

	p.own(states[0])
	done := p.done
	p.own(states[1]) // a reload: the new app starts before the old one stops
	if p.done != done {
		t.Fatal("a second owner started a second worker")
	}
	if err := p.deliver(context.Background(), n); err != nil || mails(dirs[1]) != 1 || mails(dirs[0]) != 0 {
		t.Fatalf("deliver: %v; mails %d, %d; want one through the newest owner", err, mails(dirs[0]), mails(dirs[1]))
	}
	p.disown(states[1]) // the reload failed after its app started
	if err := p.deliver(context.Background(), n); err != nil || mails(dirs[0]) != 1 {
		t.Fatalf("deliver after the newest owner left: %v; want one through the running configuration's", err)
	}
	if p.done != done {
		t.Fatal("the worker was restarted while an owner was left")
	}

	// A notice that cannot be composed is given up on at its first try.
	bad := n
	bad.Event = "no_such_event"
	if err := p.store.Update(context.Background(), func(tx store.Tx) error { return outbox.Enqueue(tx, bad) }); err != nil {
		t.Fatal(err)
	}
	if err := p.store.Update(context.Background(), func(tx store.Tx) error { return outbox.Enqueue(tx, n) }); err != nil {
		t.Fatal(err)
	}
	p.sender.Kick()
	deadline := time.Now().Add(15 * time.Second)
	for s := p.sender.Stats(); s.Sent != 1 || s.Dead != 1; s = p.sender.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the worker's sender did not work the queue: %+v; want one sent, one given up", s)
		}
		time.Sleep(10 * time.Millisecond)
	}

	p.disown(states[0])
	select {
	case <-done:
	default:
		t.Error("the worker still runs after its last owner stopped")
	}
	for range 2 {
		if _, err := storePool.Delete(key); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := p.store.Scan(context.Background(), store.Outbox, "", 1); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("store after its last reference went: %v; want it closed", err)
	}
}
