package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/etcdstore/etcdtest"
	"github.com/otpgate/otpgate/internal/store/storetest"
)

// The tests share one 3-member cluster on 127.0.0.1:23790-23795 (clients,
// then peers), each store under a prefix of its own; the failure tests
// start a cluster of their own on 23796-23799.
var (
	shared     *etcdtest.Cluster
	sharedErr  error
	sharedOnce sync.Once
	sharedDir  string
	prefixes   atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func cluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "otpgate-etcdstore-test-")
		if sharedErr == nil {
			shared, sharedErr = etcdtest.Start(sharedDir, etcdtest.Options{})
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// open opens a store on c under a fresh prefix.
func open(t *testing.T, c *etcdtest.Cluster, o Options) *Store {
	t.Helper()
	o.Endpoints = c.Endpoints()
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("/test%d/", prefixes.Add(1))
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	s, reachErr, err := Open(o)
	if err != nil || reachErr != nil {
		t.Fatalf("Open: %v, %v", err, reachErr)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The conformance suite, on a real 3-member cluster.
func TestConformance(t *testing.T) {
	c := cluster(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return open(t, c, Options{Now: now})
	})
}

// Keys written with one time to live share a lease; keys with very
// different ones do not; and a lease outlives the expiry it carries.
func TestLeasesShared(t *testing.T) {
	c := cluster(t)
	s := open(t, c, Options{})
	ctx := context.Background()
	for i := range 60 {
		err := s.Update(ctx, func(tx store.Tx) error {
			ttl := 5 * time.Minute
			if i%2 == 1 {
				ttl = 24 * time.Hour
			}
			return store.PutTTL(tx, store.Sessions, fmt.Sprintf("k%02d", i), []byte("v"), ttl)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.cli.Get(ctx, s.prefix+"sessions/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[clientv3.LeaseID]bool{}
	for _, kv := range resp.Kvs {
		ids[clientv3.LeaseID(kv.Lease)] = true
	}
	if len(resp.Kvs) != 60 || len(ids) != 2 {
		t.Errorf("%d keys on %d leases, want 60 keys on 2", len(resp.Kvs), len(ids))
	}
	for id := range ids {
		ttl, err := s.cli.TimeToLive(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Duration(ttl.TTL) * time.Second; left < 5*time.Minute {
			t.Errorf("lease %x has %v left, less than the 5 minutes its keys live", id, left)
		}
	}
}

// What another store wrote is what this one reads and scans: nodes share
// the state, and a claim taken on one is refused on the other.
func TestTwoNodesShareState(t *testing.T) {
	c := cluster(t)
	a := open(t, c, Options{})
	b := open(t, c, Options{Prefix: a.prefix})
	ctx := context.Background()
	claim := func(s *Store) (won bool, err error) {
		err = s.Update(ctx, func(tx store.Tx) error {
			won = false
			if _, err := tx.Get(store.Pending, "op"); !errors.Is(err, store.ErrNotFound) {
				return err
			}
			won = true
			return tx.Put(store.Pending, "op", []byte("consumed"))
		})
		return won, err
	}
	if won, err := claim(a); !won || err != nil {
		t.Fatalf("claim on a: %v, %v", won, err)
	}
	if won, err := claim(b); won || err != nil {
		t.Fatalf("claim on b after a's: %v, %v; want refused", won, err)
	}
	page, _, err := b.Scan(ctx, store.Pending, "", 10)
	if err != nil || len(page) != 1 || string(page[0].Value) != "consumed" {
		t.Errorf("b scans %v, %v", page, err)
	}
}

// failureCluster is a cluster of the test's own, to stop members of.
func failureCluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c, err := etcdtest.Start(t.TempDir(), etcdtest.Options{Members: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Without etcd every call fails with ErrUnavailable within the request
// timeout, fn's writes are never reported committed, and the store works
// again by itself once etcd is back.
func TestUnavailableAndRecovery(t *testing.T) {
	c := failureCluster(t)
	s := open(t, c, Options{RequestTimeout: time.Second})
	ctx := context.Background()
	put := func() error {
		return s.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.Get(store.Tokens, "t"); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return tx.Put(store.Tokens, "t", []byte("v"))
		})
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	c.Kill(0)
	calls := map[string]func() error{
		"Update": put,
		"View": func() error {
			return s.View(ctx, func(tx store.Tx) error { _, err := tx.Get(store.Tokens, "t"); return err })
		},
		"Scan":     func() error { _, _, err := s.Scan(ctx, store.Tokens, "", 10); return err },
		"Campaign": func() error { _, err := s.Campaign(ctx); return err },
		"Lock":     func() error { _, err := s.Lock(ctx, []string{"s"}, 0); return err },
		"FencedUntil": func() error {
			_, err := s.FencedUntil(ctx, []string{"s"})
			return err
		},
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s without etcd: %v, want ErrUnavailable", name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s without etcd took %v; the request timeout is 1s", name, took)
		}
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	var err error
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err = put(); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("no recovery 30 s after etcd came back: %v", err)
	}
}

// A commit sent to a cluster that cannot answer (no quorum) is reported
// ErrOutcomeUnknown, which is ErrUnavailable: the caller releases nothing.
func TestOutcomeUnknownIsUnavailable(t *testing.T) {
	if !errors.Is(ErrOutcomeUnknown, store.ErrUnavailable) {
		t.Fatal("ErrOutcomeUnknown does not wrap ErrUnavailable")
	}
	c := failureCluster(t)
	s := open(t, c, Options{RequestTimeout: time.Second})
	ctx := context.Background()
	// Read first, so the run has its snapshot; etcd dies between the
	// read and the commit.
	err := s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Get(store.Pending, "op"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("reading: %v", err)
		}
		c.Kill(0)
		return tx.Put(store.Pending, "op", []byte("consumed"))
	})
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("commit to a dead cluster: %v, want ErrOutcomeUnknown", err)
	}
}

// The lead goes to one store at a time: the second waits, takes over at
// once when the first hands it back, and within the election TTL when the
// first dies without handing it back.
func TestCampaignOneLeader(t *testing.T) {
	c := cluster(t)
	a := open(t, c, Options{ElectionTTL: 2 * time.Second})
	prefix := a.prefix
	b := open(t, c, Options{Prefix: prefix, ElectionTTL: 2 * time.Second})
	ctx := context.Background()

	actx, handBack := context.WithCancel(ctx)
	lostA, err := a.Campaign(actx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		lost <-chan struct{}
		err  error
		at   time.Time
	}
	won := make(chan result, 1)
	bctx, bStop := context.WithCancel(ctx)
	defer bStop()
	go func() {
		lost, err := b.Campaign(bctx)
		won <- result{lost, err, time.Now()}
	}()
	select {
	case r := <-won:
		t.Fatalf("b leads while a does: %v", r.err)
	case <-time.After(time.Second):
	}
	handBack()
	var r result
	select {
	case r = <-won:
	case <-time.After(15 * time.Second):
		t.Fatal("b does not lead 15 s after a handed the lead back")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case <-lostA:
	case <-time.After(15 * time.Second):
		t.Error("a's lost is not closed after handing back")
	}

	// a campaigns again and waits; b dies without a word (its client
	// closes, its lease is kept alive no more).
	go func() {
		lost, err := a.Campaign(ctx)
		won <- result{lost, err, time.Now()}
	}()
	time.Sleep(500 * time.Millisecond)
	died := time.Now()
	b.cli.Close()
	select {
	case r = <-won:
	case <-time.After(15 * time.Second):
		t.Fatal("a does not take over 15 s after b died")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("a took over %v after b died (election TTL 2s)", r.at.Sub(died).Round(time.Millisecond))
	if took := r.at.Sub(died); took > 8*time.Second {
		t.Errorf("a took over %v after b died; the election TTL is 2s", took)
	}
}
