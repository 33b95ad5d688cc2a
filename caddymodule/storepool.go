package caddymodule

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

// storePool keeps one bbolt handle per file for the whole process: bbolt
// locks its file, so a config reload must reuse the open handle instead of
// opening the file a second time. With the handle goes the database's one
// outbox sender, however many handlers use the database.
var storePool = caddy.NewUsagePool()

// pooledStore is one database's shared state.
type pooledStore struct {
	db     *boltstore.DB
	path   string
	sender *outbox.Sender
	start  sync.Once
	cancel context.CancelFunc // stops the sender; nil if it never started
	done   chan struct{}      // closed when the sender has stopped
}

// senderStopWait bounds how long closing a database waits for its sender
// to settle the delivery it was making.
const senderStopWait = 10 * time.Second

// Destruct stops the sender, then closes the database.
func (p *pooledStore) Destruct() error {
	// Once also orders this after startSender's writes, and keeps the
	// sender from starting on a closed database.
	p.start.Do(func() {})
	if p.cancel != nil {
		p.cancel()
		select {
		case <-p.done:
		case <-time.After(senderStopWait):
			caddy.Log().Named("otpgate.outbox").Warn("the mail outbox sender did not stop in time; closing the database under it",
				zap.String("database", p.path))
		}
	}
	return p.db.Close()
}

func openStore(path string) (*pooledStore, error) {
	v, _, err := storePool.LoadOrNew(path, func() (caddy.Destructor, error) {
		db, err := boltstore.Open(path, 5*time.Second)
		if err != nil {
			return nil, err
		}
		p := &pooledStore{db: db, path: path}
		p.sender = outbox.NewSender(db, p.deliver)
		logger := caddy.Log().Named("otpgate.outbox").With(zap.String("database", path))
		p.sender.OnFailure = func(e outbox.Entry, err error) {
			logger.Error("mail notice failed", zap.String("event", e.Notice.Event), zap.String("service", e.Notice.Service),
				zap.String("user", e.Notice.User), zap.Int("attempts", e.Attempts), zap.Time("next_at", e.NextAt),
				zap.Bool("given_up", !e.DeadAt.IsZero()), zap.Error(err))
		}
		p.sender.OnError = func(err error) { logger.Warn("reading the mail outbox", zap.Error(err)) }
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*pooledStore), nil
}

// startSender starts the database's outbox sender, once, when the first
// handler on it is registered: before that there is no mail configuration
// to deliver with.
func (p *pooledStore) startSender() {
	p.start.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		p.cancel, p.done = cancel, make(chan struct{})
		go func() {
			defer close(p.done)
			p.sender.Run(ctx)
		}()
	})
}

// deliver mails a queued notice with the mail settings of the newest
// handler registered on the database, so a reload that changes the relay
// takes effect, and one that fails leaves the running configuration's.
func (p *pooledStore) deliver(ctx context.Context, n outbox.Notice) error {
	g, _ := currentInstance(p.path)
	if g == nil {
		return errors.New("otpgate: no handler on this database is running to mail through")
	}
	return g.mailer.deliver(ctx, n)
}

// instances are the provisioned gateways by database, newest last, so the
// admin API (a separate module) can find the store and lifecycle settings.
var (
	instancesMu sync.Mutex
	instances   = map[string][]*Gateway{}
)

func registerInstance(g *Gateway) {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	instances[g.dbKey] = append(instances[g.dbKey], g)
}

func unregisterInstance(g *Gateway) {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	list := instances[g.dbKey]
	for i, x := range list {
		if x == g {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(instances, g.dbKey)
	} else {
		instances[g.dbKey] = list
	}
}

// currentInstance returns the newest gateway on database db, or on the only
// database if db is empty.
func currentInstance(db string) (*Gateway, []string) {
	instancesMu.Lock()
	defer instancesMu.Unlock()
	var names []string
	for k := range instances {
		names = append(names, k)
	}
	if db == "" && len(instances) == 1 {
		db = names[0]
	}
	list := instances[db]
	if len(list) == 0 {
		return nil, names
	}
	return list[len(list)-1], names
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
