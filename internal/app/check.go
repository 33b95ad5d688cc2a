package app

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/storemodule"
)

// checking is set while "otpgate validate" provisions a configuration:
// the otpgate app then checks its stores' settings (keys, mail, token
// lifecycle, rules) without opening the stores, so that validating beside
// the running gateway neither waits for the bbolt lock it holds nor
// creates a database file, and never touches the running gateway's pool
// entries.
var checking atomic.Bool

// CheckOnly runs check, which provisions a configuration, with the otpgate
// app checking its stores' settings without opening the stores. It is
// exported for "otpgate validate", whose command line lives in
// internal/cli.
func CheckOnly(check func() error) error {
	checking.Store(true)
	defer checking.Store(false)
	return check()
}

// pool returns the pool entry of key for the app: the open store, or,
// while checking, a stand-in that opens nothing.
func (a *App) pool(key string, mod storemodule.Store) (*pooledStore, error) {
	if !a.checking {
		return openPooled(key, mod)
	}
	s := unopenedStore{key: key}
	return &pooledStore{store: s, sender: outbox.NewSender(s, func(context.Context, outbox.Notice) error { return errUnopened }),
		logger: caddy.Log().Named("otpgate").With(zap.String("store", key))}, nil
}

// release gives back the app's reference to the pool entry of key; a
// checking app took none.
func (a *App) release(key string) error {
	if a.checking {
		return nil
	}
	_, err := storePool.Delete(key)
	return err
}

// errUnopened is what a store not opened for a check answers.
var errUnopened = fmt.Errorf("otpgate: the store is not opened while a configuration is checked: %w", store.ErrUnavailable)

// unopenedStore stands in for a store while a configuration is checked.
type unopenedStore struct{ key string }

func (unopenedStore) Update(context.Context, func(store.Tx) error) error { return errUnopened }
func (unopenedStore) View(context.Context, func(store.Tx) error) error   { return errUnopened }
func (unopenedStore) Scan(context.Context, store.Bucket, string, int) ([]store.KV, string, error) {
	return nil, "", errUnopened
}
func (unopenedStore) Sweep(context.Context, int) (int, error) { return 0, errUnopened }
func (unopenedStore) Close() error                            { return nil }
