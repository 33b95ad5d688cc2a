package caddymodule

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/mail"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/store"
)

// Handlers on one database share its handle and its one outbox sender,
// which mails with the newest registered handler's settings (a reload that
// failed leaves the running one's) and stops before the database closes.
func TestStorePoolOneSenderPerDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "otpgate.db")
	p1, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 || p1.sender != p2.sender {
		t.Fatal("two handlers on one database got two pool entries")
	}

	n := outbox.Notice{Event: "unlocked", Service: "S001", User: "U001", To: "u001@mobile.example", At: time.Now()}
	if err := p1.deliver(context.Background(), n); err == nil {
		t.Error("a notice was delivered with no handler registered")
	}
	dirs := []string{t.TempDir(), t.TempDir()}
	var gws []*Gateway
	for _, d := range dirs {
		g := &Gateway{dbKey: path, mailer: mailNotifier{sender: &mail.Dir{Path: d, From: "otp@bank.example"}, issuer: "bank"}}
		registerInstance(g)
		gws = append(gws, g)
	}
	t.Cleanup(func() {
		for _, g := range gws {
			unregisterInstance(g)
		}
	})
	mails := func(dir string) int {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		return len(files)
	}
	if err := p1.deliver(context.Background(), n); err != nil || mails(dirs[1]) != 1 || mails(dirs[0]) != 0 {
		t.Fatalf("deliver: %v; mails %d, %d; want one through the newest handler", err, mails(dirs[0]), mails(dirs[1]))
	}
	unregisterInstance(gws[1])
	if err := p1.deliver(context.Background(), n); err != nil || mails(dirs[0]) != 1 {
		t.Fatalf("deliver after the newest handler went: %v; want one through the one left", err)
	}
	// A notice that cannot be composed is given up on at its first try.
	bad := n
	bad.Event = "no_such_event"
	if err := p1.db.Update(context.Background(), func(tx store.Tx) error { return outbox.Enqueue(tx, bad) }); err != nil {
		t.Fatal(err)
	}
	if _, failed, err := p1.sender.DrainOnce(context.Background(), 10); err != nil || failed != 1 || p1.sender.Stats().Dead != 1 {
		t.Fatalf("DrainOnce: %d failed, %v, %+v; want the notice given up on", failed, err, p1.sender.Stats())
	}

	p1.startSender()
	p2.startSender()
	if err := p1.db.Update(context.Background(), func(tx store.Tx) error { return outbox.Enqueue(tx, n) }); err != nil {
		t.Fatal(err)
	}
	p1.sender.Kick()
	deadline := time.Now().Add(3 * time.Second)
	for p1.sender.Stats().Sent != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the sender did not send the queued notice: %+v", p1.sender.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 2 {
		if _, err := storePool.Delete(path); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-p1.done:
	default:
		t.Error("the sender still runs after its database was released")
	}
	if _, _, err := p1.db.Scan(context.Background(), store.Outbox, "", 1); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("database after release: %v; want it closed", err)
	}
}
