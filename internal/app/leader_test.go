package app

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/mail"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

// leaderStore is a bbolt store whose lead the test grants and takes away,
// as an etcd election would.
type leaderStore struct {
	store.Store
	grant     chan chan struct{} // the test sends the lost channel of a lead
	campaigns atomic.Int32
}

func (l *leaderStore) Campaign(ctx context.Context) (<-chan struct{}, error) {
	l.campaigns.Add(1)
	select {
	case lost := <-l.grant:
		// As the contract says: closed when the lead is lost, and
		// after ctx ends (the lead handed back).
		out := make(chan struct{})
		go func() {
			select {
			case <-lost:
			case <-ctx.Done():
			}
			close(out)
		}()
		return out, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// leaderModule opens a leaderStore.
type leaderModule struct {
	path string
	st   *leaderStore
}

func (m *leaderModule) PoolKey() string { return "leader:" + m.path }

func (m *leaderModule) Open() (store.Store, error) {
	db, err := boltstore.Open(m.path, time.Second)
	if err != nil {
		return nil, err
	}
	m.st = &leaderStore{Store: db, grant: make(chan chan struct{})}
	return m.st, nil
}

// On a store that elects its worker's node (store.Leader), the worker
// mails nothing until this node leads, mails at once when it does, stops
// when the lead is lost and campaigns again; stopping it while it
// campaigns is prompt.
func TestWorkerRunsOnlyWhileLeading(t *testing.T) {
	mod := &leaderModule{path: filepath.Join(t.TempDir(), "otpgate.db")}
	p, err := openPooled(mod.PoolKey(), mod)
	if err != nil {
		t.Fatal(err)
	}
	defer storePool.Delete(mod.PoolKey())
	dir := t.TempDir()
	st := &State{key: mod.PoolKey(), pooled: p, Store: p.store, sweepEvery: time.Hour,
		mailer: mailNotifier{sender: &mail.Dir{Path: dir, From: "otp@bank.example"}, issuer: "bank", from: "otp@bank.example"}}
	mails := func() int {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		return len(files)
	}
	queue := func(user string) {
		n := outbox.Notice{Event: "unlocked", Service: "S001", User: user, To: strings.ToLower(user) + "@mobile.example", At: time.Now()}
		if err := p.store.Update(context.Background(), func(tx store.Tx) error { return outbox.Enqueue(tx, n) }); err != nil {
			t.Fatal(err)
		}
		p.sender.Kick()
	}
	waitMails := func(want int) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); mails() < want && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		}
		if got := mails(); got != want {
			t.Fatalf("%d mails, want %d", got, want)
		}
	}
	waitCampaigns := func(n int32) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); mod.st.campaigns.Load() < n && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		}
		if got := mod.st.campaigns.Load(); got != n {
			t.Fatalf("%d campaigns, want %d", got, n)
		}
	}

	p.own(st)
	queue("U001")
	waitCampaigns(1)
	time.Sleep(300 * time.Millisecond)
	if n := mails(); n != 0 {
		t.Fatalf("%d mails sent before this node led", n)
	}
	lost := make(chan struct{})
	mod.st.grant <- lost
	waitMails(1)

	close(lost) // cut off: another node may lead now
	waitCampaigns(2)
	queue("U002")
	time.Sleep(300 * time.Millisecond)
	if n := mails(); n != 1 {
		t.Fatalf("%d mails after the lead was lost, want still 1", n)
	}
	mod.st.grant <- make(chan struct{})
	waitMails(2)

	// Stop while leading: the lead is handed back and the worker ends
	// promptly.
	start := time.Now()
	p.disown(st)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("stopping the worker took %v", took)
	}
}
