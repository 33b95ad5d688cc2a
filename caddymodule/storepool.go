package caddymodule

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

// storePool keeps one bbolt handle per file for the whole process: bbolt
// locks its file, so a config reload must reuse the open handle instead of
// opening the file a second time.
var storePool = caddy.NewUsagePool()

type pooledDB struct{ *boltstore.DB }

func (p pooledDB) Destruct() error { return p.Close() }

func openStore(path string) (*boltstore.DB, error) {
	v, _, err := storePool.LoadOrNew(path, func() (caddy.Destructor, error) {
		db, err := boltstore.Open(path, 5*time.Second)
		if err != nil {
			return nil, err
		}
		return pooledDB{db}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooledDB).DB, nil
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
