package app

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/storemodule"
)

// storePool keeps each open store, by pool key, for as long as any loaded
// configuration's app uses it: bbolt locks its file, so a reload must reuse
// the open handle rather than open the file again, and a store's
// background worker must not be started twice. Each App holds one
// reference per store it opened and drops it in Cleanup.
var storePool = caddy.NewUsagePool()

// pooledStore is one open store and its one background worker: the sweeper
// (expired keys, unsealed leftovers, renewal reminders) and the outbox
// sender.
//
// The worker belongs to the pool entry, not to an app, and is handed from
// one configuration to the next. Caddy starts a reload's new apps before it
// stops the old ones, so a worker per app would run twice on the store
// while both are up, and stopping the old app's worker before the new one
// starts is not in the app's hands. Instead each started app that uses the
// store is an owner; the worker runs while there is one, and every round
// works with the newest owner's managers and mail settings. A reload adds
// the new app as newest, then the old one leaves: the worker never stops or
// doubles. A reload that fails after its app started removes that app
// again, and the running configuration's becomes the newest once more.
type pooledStore struct {
	store  store.Store
	sender *outbox.Sender
	logger *zap.Logger
	// locks serialise logins and releases per bank session for every
	// handler of the store, across reloads (gate.SessionLocks).
	locks *gate.SessionLocks

	// life serialises own and disown, so a stopping worker is waited for
	// before another can start.
	life sync.Mutex

	mu     sync.Mutex
	owners []*State // of started apps, oldest first
	stop   context.CancelFunc
	done   chan struct{} // closed when the worker has stopped
	starts int           // how often the worker was started
}

// workerStopWait bounds how long stopping the worker waits for the
// delivery or sweep in progress to end.
const workerStopWait = 10 * time.Second

// openPooled returns the pool entry of key, opening the store of mod if no
// loaded configuration has it open. The caller owns one reference and
// releases it with storePool.Delete(key).
func openPooled(key string, mod storemodule.Store) (*pooledStore, error) {
	v, _, err := storePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := mod.Open()
		if err != nil {
			return nil, err
		}
		// A store several gateways share locks bank sessions for all of
		// them (gate.SessionLocks).
		shared, _ := st.(store.Locker)
		// Timed and counted for the metrics, its audit records published
		// as events (observedstore.go).
		st = observeStore(st)
		p := &pooledStore{store: st, logger: caddy.Log().Named("otpgate").With(zap.String("store", key)), locks: gate.NewSessionLocks(shared)}
		p.sender = outbox.NewSender(st, p.deliver)
		p.sender.OnFailure = func(e outbox.Entry, err error) {
			p.logger.Error("mail notice failed", zap.String("event", e.Notice.Event), zap.String("service", e.Notice.Service),
				zap.String("user", e.Notice.User), zap.Int("attempts", e.Attempts), zap.Time("next_at", e.NextAt),
				zap.Bool("given_up", !e.DeadAt.IsZero()), zap.Error(err))
		}
		p.sender.OnError = func(err error) { p.logger.Warn("reading the mail outbox", zap.Error(err)) }
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pooledStore), nil
}

// own makes st, of an app that has started, the store's newest owner, and
// starts the worker if it is not running.
func (p *pooledStore) own(st *State) {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.owners = append(p.owners, st)
	if p.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		p.stop, p.done = cancel, make(chan struct{})
		p.starts++
		go p.work(ctx, p.done)
	}
}

// disown removes st, of an app that stops. The last owner stops the worker
// first, waiting for it, so that no round runs without an owner.
func (p *pooledStore) disown(st *State) {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	last := len(p.owners) == 1 && p.owners[0] == st
	p.mu.Unlock()
	if last {
		p.halt()
	}
	p.mu.Lock()
	p.owners = slices.DeleteFunc(p.owners, func(x *State) bool { return x == st })
	p.mu.Unlock()
}

// halt stops the worker, if it runs, and waits for it (bounded).
func (p *pooledStore) halt() {
	p.mu.Lock()
	stop, done := p.stop, p.done
	p.stop, p.done = nil, nil
	p.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	select {
	case <-done:
	case <-time.After(workerStopWait):
		p.logger.Warn("the store's background worker did not stop in time")
	}
}

// owner is the newest owner, nil if no started app uses the store.
func (p *pooledStore) owner() *State {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.owners) == 0 {
		return nil
	}
	return p.owners[len(p.owners)-1]
}

// Destruct stops the worker, should an app have been cleaned up without
// being stopped, then closes the store.
func (p *pooledStore) Destruct() error {
	p.life.Lock()
	defer p.life.Unlock()
	p.halt()
	return p.store.Close()
}

// work runs the store's background work until ctx ends: at once on a
// store of one node; on a store several nodes share (store.Leader, etcd)
// only while this node leads, campaigning again whenever the lead is lost,
// so that it runs once per cluster and moves when its node dies.
func (p *pooledStore) work(ctx context.Context, done chan struct{}) {
	defer close(done)
	l, ok := p.store.(store.Leader)
	if !ok {
		p.lead(ctx)
		return
	}
	for ctx.Err() == nil {
		p.term(ctx, l)
	}
}

// term campaigns for the lead and works while this node holds it. It
// returns once the lead is handed back (ctx ended) or lost, having waited
// for the hand-back, so that another node takes over at once rather than
// when the lead would expire.
func (p *pooledStore) term(ctx context.Context, l store.Leader) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost, err := l.Campaign(tctx)
	if err != nil {
		if ctx.Err() == nil {
			p.logger.Warn("campaigning for the store's background work; trying again in a second", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		return
	}
	p.logger.Info("this node leads the store's background work (sweeps, reminders, mail outbox)")
	go func() {
		select {
		case <-lost:
			cancel()
		case <-tctx.Done():
		}
	}()
	p.lead(tctx)
	cancel()
	<-lost
	if ctx.Err() == nil {
		p.logger.Warn("lost the lead of the store's background work; campaigning again")
	}
}

// lead runs the outbox sender and the sweeper until ctx ends.
func (p *pooledStore) lead(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { p.sender.Run(ctx) })
	defer wg.Wait()
	for {
		every := time.Minute
		if st := p.owner(); st != nil {
			every = st.sweepEvery
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if st := p.owner(); st != nil {
			st.Sweep(ctx)
		}
	}
}

// deliver mails a queued notice with the newest owner's mail settings, so a
// reload that changes the relay takes effect at once.
func (p *pooledStore) deliver(ctx context.Context, n outbox.Notice) error {
	st := p.owner()
	if st == nil {
		return errors.New("otpgate: no running configuration uses this store to mail through")
	}
	return st.mailer.deliver(ctx, n)
}

// sweepStore removes what has expired in st (session bindings, setup
// links), a bounded batch at a time and at most sweepRounds batches a
// call, so one call neither holds one long write transaction nor runs
// unbounded behind a flood of expired keys.
func sweepStore(ctx context.Context, st store.Store) error {
	for range sweepRounds {
		n, err := st.Sweep(ctx, sweepBatch)
		if err != nil || n < sweepBatch {
			return err
		}
	}
	return nil
}

const (
	sweepBatch  = 500
	sweepRounds = 100
)

// Worker is what a store's background worker is doing, for diagnostics.
type Worker struct {
	// Running is true while the worker runs (on a store of several nodes,
	// also while it campaigns for the lead).
	Running bool
	// Starts counts how often it was started since the store was opened:
	// a reload hands it over without a new start.
	Starts int
	// Owners are the started configurations using the store.
	Owners int
	// Current is true when the state asked is the newest owner's, whose
	// settings the worker sweeps and mails with.
	Current bool
	// Mail is what the outbox sender did since the store was opened.
	Mail outbox.Stats
}

// Worker reports the store's background worker as st sees it.
func (st *State) Worker() Worker {
	p := st.pooled
	if p == nil {
		return Worker{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return Worker{Running: p.stop != nil, Starts: p.starts, Owners: len(p.owners),
		Current: len(p.owners) > 0 && p.owners[len(p.owners)-1] == st, Mail: p.sender.Stats()}
}

// Opened says how many loaded configurations hold the store of key open;
// 0 when it is closed.
func Opened(key string) int {
	n, _ := storePool.References(key)
	return n
}
