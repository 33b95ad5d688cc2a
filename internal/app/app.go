// Package app is the otpgate Caddy app (apps.otpgate, the global option
// otpgate): the one owner, per store, of what every otpgate handler on the
// store shares — the open store, the sealer, the token and held-operation
// managers, the mailer, the per-session locks — and of the store's one
// background worker (sweeps, renewal reminders, the mail outbox). It also
// serves the bank's admin API, the Prometheus collectors and the Caddy
// events of the audit trail. The request flow is internal/gate's, the
// handler caddymodule's.
package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/storemodule"
	"github.com/otpgate/otpgate/internal/token"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the otpgate app. It owns, per store, what every otpgate handler
// on that store shares: the open store, the sealer, the token and
// held-operation managers, the mailer, and — through storePool — the one
// background worker that sweeps the store and drains its mail outbox.
// Handlers find it with ctx.App("otpgate") while they are provisioned; the
// admin API finds the running configuration's app when it is called.
//
// Stores are configured here (the global option otpgate in a Caddyfile,
// apps.otpgate in JSON) or, as a shorthand, in an otpgate handler: a
// handler that carries store settings registers them with the app. Every
// handler naming one store shares its state; settings given for a store in
// two places must be the same, or the configuration is refused at load.
//
// The app is provisioned once per configuration load. Its background work
// runs while it is started (Start to Stop); see pooledStore for how a
// reload hands the worker from one load's app to the next.
type App struct {
	// Stores are the gateway's stores, each with its settings. Default:
	// none; each otpgate handler then brings its own.
	Stores []*StoreSettings `json:"stores,omitempty"`

	logger   *zap.Logger
	registry *prometheus.Registry
	events   *eventSink
	checking bool

	// states and order are written while the configuration is
	// provisioned, and only read once it runs (by the admin API and the
	// metrics, after Caddy has made it the active configuration under its
	// own lock), so they need no lock of their own.
	states map[string]*State // by pool key
	order  []string          // pool keys, in the order added
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "otpgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision opens the configured stores.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.checking = checking.Load()
	a.registry = ctx.GetMetricsRegistry()
	events, err := newEventSink(ctx)
	if err != nil {
		return err
	}
	a.events = events
	a.states = map[string]*State{}
	for i, s := range a.Stores {
		mod, err := s.storeModule(ctx)
		if err == nil && mod == nil {
			mod, err = defaultStore(ctx)
		}
		if err != nil {
			return fmt.Errorf("stores[%d]: %w", i, err)
		}
		if a.states[mod.PoolKey()] != nil {
			return fmt.Errorf("otpgate: stores[%d] names the store %s again: configure each store once", i, mod.PoolKey())
		}
		if _, err := a.open(mod, s); err != nil {
			return fmt.Errorf("stores[%d]: %w", i, err)
		}
	}
	return nil
}

// Validate checks each store's settings.
func (a *App) Validate() error {
	for i, s := range a.Stores {
		if err := s.validate(); err != nil {
			return fmt.Errorf("stores[%d]: %w", i, err)
		}
	}
	return nil
}

// Start hands each store's background work to this configuration and
// registers the app's metrics.
func (a *App) Start() error {
	if err := a.registerMetrics(a.registry); err != nil {
		return fmt.Errorf("otpgate: registering metrics: %v", err)
	}
	for _, key := range a.order {
		st := a.states[key]
		st.pooled.own(st)
	}
	a.events.start()
	return nil
}

// Stop takes this configuration's hand off each store's background work;
// the work stops with the last configuration using the store.
func (a *App) Stop() error {
	for _, key := range a.order {
		st := a.states[key]
		st.pooled.disown(st)
	}
	a.events.stop()
	return nil
}

// Cleanup releases the stores Provision and the handlers opened; a store
// no other loaded configuration uses is closed.
func (a *App) Cleanup() error {
	var errs []error
	for _, key := range a.order {
		if err := a.release(key); err != nil {
			errs = append(errs, fmt.Errorf("closing store %s: %v", key, err))
		}
	}
	return errors.Join(errs...)
}

// StoreFor returns the state of the store that s names, opening it with
// s's settings if the app has none for it yet. A handler that names no
// store gets the app's only store, or otpgate.db when the app has none.
// Settings given for a store the app already has must be the same as its
// own: two handlers (or a handler and the global option) that configure
// one store differently are refused, naming the options that differ.
func (a *App) StoreFor(ctx caddy.Context, s *StoreSettings) (*State, error) {
	mod, err := s.storeModule(ctx)
	if err != nil {
		return nil, err
	}
	var key string
	switch {
	case mod != nil:
		key = mod.PoolKey()
	case len(a.order) == 1:
		key = a.order[0]
	case len(a.order) > 1:
		return nil, fmt.Errorf("otpgate: several stores are configured (%s): name one with database or store", strings.Join(a.order, ", "))
	default:
		if mod, err = defaultStore(ctx); err != nil {
			return nil, err
		}
		key = mod.PoolKey()
	}
	st := a.states[key]
	if st == nil {
		return a.open(mod, s)
	}
	written, err := s.written()
	if err != nil {
		return nil, err
	}
	if len(written) > 0 {
		if diff := differences(st.written, written); len(diff) > 0 {
			return nil, fmt.Errorf("otpgate: the store %s is configured twice with different settings (%s): give every otpgate handler on one store the same settings, or set them once in the global otpgate option and leave them out of the handlers",
				key, strings.Join(diff, ", "))
		}
	}
	return st, nil
}

// state returns the state of the store with pool key key, or of the only
// store when key is empty, for the admin API.
func (a *App) state(key string) (*State, error) {
	if key == "" && len(a.order) == 1 {
		key = a.order[0]
	}
	if st := a.states[key]; st != nil {
		return st, nil
	}
	switch {
	case len(a.order) == 0:
		return nil, errors.New("no otpgate store is open in this configuration")
	case key == "":
		return nil, fmt.Errorf("several otpgate stores are open; add ?db= with one of: %s", strings.Join(a.order, ", "))
	}
	return nil, fmt.Errorf("no otpgate store %q is open; open: %s", key, strings.Join(a.order, ", "))
}

// open opens the store of mod, configured by s, and adds its state.
func (a *App) open(mod storemodule.Store, s *StoreSettings) (*State, error) {
	written, err := s.written()
	if err != nil {
		return nil, err
	}
	repl := caddy.NewReplacer()
	sealer, err := s.openSealer(repl)
	if err != nil {
		return nil, err
	}
	mailer, err := s.Mail.notifier(repl, s.Issuer, s.Contact)
	if err != nil {
		return nil, err
	}
	every := time.Duration(s.SweepInterval)
	if every == 0 {
		every = time.Minute
	}
	if every < time.Second {
		return nil, fmt.Errorf("otpgate: sweep_interval %v: want a second or more", every)
	}
	key := mod.PoolKey()
	pooled, err := a.pool(key, mod)
	if err != nil {
		return nil, fmt.Errorf("otpgate: opening token store: %v", err)
	}
	st := &State{key: key, pooled: pooled, Store: pooled.store, Sealer: sealer, mailer: mailer, Contact: s.Contact,
		written: written, sweepEvery: every, logger: a.logger.With(zap.String("store", key))}
	st.retention = time.Duration(s.AuditRetention)
	if err := st.manage(s.tokenConfig(), time.Duration(s.ChallengeLifetime)); err != nil {
		if derr := a.release(key); derr != nil {
			a.logger.Error("closing store", zap.String("store", key), zap.Error(derr))
		}
		return nil, err
	}
	a.states[key] = st
	a.order = append(a.order, key)
	return st, nil
}

// Now is the clock of every lifecycle (tokens, held operations, sessions,
// audit upkeep); tests replace it.
var Now = time.Now

// defaultStore is the store of a configuration that names none.
func defaultStore(ctx caddy.Context) (storemodule.Store, error) {
	b := new(storemodule.BoltStore)
	return b, b.Provision(ctx)
}

// StoreSettings name a store and say how the gateway keeps its state in
// it: the keys, the token lifecycle and the mail. An otpgate handler
// accepts them too, as a shorthand for configuring its store in the app.
type StoreSettings struct {
	// StoreRaw is the store, a module of the otpgate.stores namespace
	// ("store bbolt { path … }"). Default: the bbolt file of Database.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=otpgate.stores inline_key=module"`

	// Database is the bbolt file holding tokens, sessions, paused
	// operations and the audit trail, created with mode 0600: the
	// shorthand of "store bbolt { path <file> }". A relative path is
	// relative to the working directory. Default: otpgate.db
	Database string `json:"database,omitempty"`

	// SecretKey seals TOTP secrets and held operations at rest
	// (AES-256-GCM) and signs CSRF tokens: 32 bytes as 64 hex digits or
	// base64. Use a placeholder such as {env.OTPGATE_SECRET_KEY}; never
	// write the key into the config file. Every node sharing a store needs
	// the same key. Required unless SecretKeyFile is set.
	SecretKey string `json:"secret_key,omitempty"`

	// SecretKeyFile is a file holding the key (as SecretKey), e.g. a
	// mounted secret. Used when SecretKey is empty.
	SecretKeyFile string `json:"secret_key_file,omitempty"`

	// RetiredKeys are earlier keys, kept while secrets sealed under them
	// are re-sealed ("otpgate token-rekey"). Same format as SecretKey.
	RetiredKeys []string `json:"retired_keys,omitempty"`

	// Issuer is the name the customer's token app shows, normally the
	// bank's name; it is also shown on the gateway pages. Default: otpgate
	Issuer string `json:"issuer,omitempty"`

	// Period of a code. The service being reproduced uses 60s (RFC 6238
	// suggests 30s; see the README). Default: 60s
	Period caddy.Duration `json:"period,omitempty"`

	// Digits of a code, 6 or 8. Default: 6
	Digits int `json:"digits,omitempty"`

	// Algorithm of the code's HMAC: SHA1, SHA256 or SHA512. Default: SHA1
	Algorithm string `json:"algorithm,omitempty"`

	// Skew is how many periods either side of the current one are accepted.
	// Default: 1
	Skew *uint `json:"skew,omitempty"`

	// MaxFailures consecutive wrong codes lock the customer (per user,
	// across sessions and restarts). Default: 5
	MaxFailures int `json:"max_failures,omitempty"`

	// LockDuration, if set, lifts a lock by itself after this long.
	// Default: 0, the lock stays until the bank unlocks it.
	LockDuration caddy.Duration `json:"lock_duration,omitempty"`

	// ChallengeLifetime is how long a paused operation waits for its code.
	// Default: 5m
	ChallengeLifetime caddy.Duration `json:"challenge_lifetime,omitempty"`

	// Validity of an activated or renewed token. Default: 365d
	Validity caddy.Duration `json:"validity,omitempty"`

	// RenewWindow: renewal opens this long before expiry (and a reminder
	// is mailed). Default: 30d
	RenewWindow caddy.Duration `json:"renew_window,omitempty"`

	// LinkLifetime of a mailed setup link. Default: 24h
	LinkLifetime caddy.Duration `json:"link_lifetime,omitempty"`

	// RequireOTP lists the service IDs whose users must all use OTP, or
	// "all". A service also requires OTP once one of its users activates a
	// token, or when the bank switches it on ("otpgate require-otp").
	// Operations of other services pass through unchanged, as before the
	// gateway, and are logged.
	RequireOTP []string `json:"require_otp,omitempty"`

	// EnrolAddress says where setup links may be mailed: "registered" (only
	// an address the bank registered for the customer, imported from its
	// customer file with "otpgate registered-import"), "domain" (any
	// address at one of EnrolDomains) or "any". Whatever the choice, the
	// addresses the bank registered for the customer and the company are
	// told of every issue. Default: registered, so that a phished password
	// alone cannot bind the phisher's phone.
	EnrolAddress string   `json:"enrol_address,omitempty"`
	EnrolDomains []string `json:"enrol_domains,omitempty"`

	// Contact is how customers reach the bank, shown on every gateway
	// page and in every mail ("0120-000-000（平日9:00～17:00）").
	// Default: none.
	Contact string `json:"contact,omitempty"`

	// SweepInterval is how often the store's background worker removes
	// what has expired (sessions, setup links, paused operations) and
	// queues renewal reminders. Default: 1m
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// AuditRetention is how long audit records are kept: the background
	// worker deletes older ones, in bounded batches between requests. At
	// least a day. Default: 0, every record is kept.
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`

	// Mail delivers setup links and security notices.
	Mail *MailConfig `json:"mail,omitempty"`
}

// storeModule loads the store s names: its store module, or the bbolt file
// of Database; nil if s names none.
func (s *StoreSettings) storeModule(ctx caddy.Context) (storemodule.Store, error) {
	switch {
	case s.StoreRaw != nil && s.Database != "":
		return nil, errors.New("otpgate: set either database or store, not both (database <file> is the shorthand of store bbolt { path <file> })")
	case s.StoreRaw != nil:
		v, err := ctx.LoadModule(s, "StoreRaw")
		if err != nil {
			return nil, fmt.Errorf("otpgate: loading store module: %v", err)
		}
		mod, ok := v.(storemodule.Store)
		if !ok {
			return nil, fmt.Errorf("otpgate: module %T is no otpgate store", v)
		}
		return mod, nil
	case s.Database != "":
		b := &storemodule.BoltStore{Path: s.Database}
		return b, b.Provision(ctx)
	}
	return nil, nil
}

// written is s's settings as configured, by option name, leaving out the
// store's name (store, database) and what is not set: what must be the
// same wherever the store is configured.
func (s *StoreSettings) written() (map[string]json.RawMessage, error) {
	c := *s
	c.StoreRaw, c.Database = nil, ""
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("otpgate: encoding store settings: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("otpgate: encoding store settings: %v", err)
	}
	return m, nil
}

// differences names the options whose settings a and b write differently.
// Settings are compared as written, so "period 60s" and no period differ
// although both mean 60 seconds: say it the same way in both places.
func differences(a, b map[string]json.RawMessage) []string {
	var diff []string
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			diff = append(diff, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diff = append(diff, k)
		}
	}
	slices.Sort(diff)
	return diff
}

// openSealer reads the keys.
func (s *StoreSettings) openSealer(repl *caddy.Replacer) (*seal.Sealer, error) {
	keyText := repl.ReplaceAll(s.SecretKey, "")
	if keyText == "" && s.SecretKeyFile != "" {
		b, err := os.ReadFile(repl.ReplaceAll(s.SecretKeyFile, ""))
		if err != nil {
			return nil, fmt.Errorf("otpgate: reading secret_key_file: %v", err)
		}
		keyText = string(b)
	}
	if keyText == "" {
		return nil, errors.New("otpgate: secret_key is empty: set it to a placeholder such as {env.OTPGATE_SECRET_KEY} holding 32 random bytes (head -c 32 /dev/urandom | base64), or set secret_key_file")
	}
	key, err := seal.ParseKey(keyText)
	if err != nil {
		return nil, fmt.Errorf("otpgate: secret_key: %v", err)
	}
	var retired [][]byte
	for i, k := range s.RetiredKeys {
		rk, err := seal.ParseKey(repl.ReplaceAll(k, ""))
		if err != nil {
			return nil, fmt.Errorf("otpgate: retired_keys[%d]: %v", i, err)
		}
		retired = append(retired, rk)
	}
	sealer, err := seal.New(key, retired...)
	if err != nil {
		return nil, fmt.Errorf("otpgate: %v", err)
	}
	return sealer, nil
}

// tokenConfig is the token lifecycle's part of the configuration.
func (c *StoreSettings) tokenConfig() token.Config {
	tc := token.Config{
		Issuer: c.Issuer, Period: time.Duration(c.Period), Digits: c.Digits, Algorithm: c.Algorithm, Skew: c.Skew,
		MaxFailures: c.MaxFailures, LockDuration: time.Duration(c.LockDuration), Validity: time.Duration(c.Validity),
		RenewWindow: time.Duration(c.RenewWindow), LinkLifetime: time.Duration(c.LinkLifetime),
		EnrolAddress: token.EnrolAddress{Mode: token.AddressMode(c.EnrolAddress), Domains: c.EnrolDomains},
	}
	for _, s := range c.RequireOTP {
		if isRequireAll(s) {
			tc.RequireAll = true
		} else {
			tc.RequireServices = append(tc.RequireServices, s)
		}
	}
	return tc
}

// State is one store as one configuration load uses it: the open store
// (shared across loads through storePool) and the managers and mailer made
// from this load's settings, which every handler on the store shares.
type State struct {
	// Store is the open store, timed and counted for the metrics.
	Store store.Store
	// Sealer seals TOTP secrets and held operations, and signs CSRF
	// tokens.
	Sealer *seal.Sealer
	// Tokens and Challenges are the token lifecycle and the held
	// operations over Store.
	Tokens     *token.Manager
	Challenges *challenge.Manager
	// Contact is how customers reach the bank, shown on every page as in
	// every mail.
	Contact string

	key        string
	pooled     *pooledStore
	mailer     mailNotifier
	written    map[string]json.RawMessage
	sweepEvery time.Duration
	retention  time.Duration
	logger     *zap.Logger
}

// Key names the store, as its module's pool key: the bbolt file's
// absolute path, or the etcd cluster and prefix.
func (st *State) Key() string { return st.key }

// MailFrom is the address the gateway's mail comes from, shown on the
// token page so that customers can expect it.
func (st *State) MailFrom() string { return st.mailer.from }

// Locks are the store's per-session locks (gate.SessionLocks), shared by
// every handler on the store and across reloads; nil while a configuration
// is only checked.
func (st *State) Locks() *gate.SessionLocks {
	if st.pooled == nil {
		return nil
	}
	return st.pooled.locks
}

// manage makes the state's managers.
func (st *State) manage(tc token.Config, lifetime time.Duration) error {
	var err error
	if st.Tokens, err = token.New(st.Store, st.Sealer, st.mailer, tc); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}
	if st.Challenges, err = challenge.New(st.Store, st.Sealer, st.Tokens, challenge.Config{Lifetime: lifetime}); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}
	clock := func() time.Time { return Now() }
	st.Tokens.Now, st.Challenges.Now = clock, clock
	st.Tokens.Kick = st.pooled.sender.Kick
	return nil
}

// Sweep is one round of the store's timed work: it removes paused
// operations an earlier version stored unsealed and what has expired in the
// store (sessions, setup links), and queues renewal reminders.
func (st *State) Sweep(ctx context.Context) {
	if _, err := st.Challenges.DropUnsealed(ctx); err != nil {
		st.logger.Warn("deleting paused operations an earlier version stored unsealed", zap.Error(err))
	}
	if err := sweepStore(ctx, st.Store); err != nil {
		st.logger.Warn("sweeping expired keys", zap.Error(err))
	}
	if n, err := st.Tokens.Sweep(ctx); err != nil {
		st.logger.Warn("sweeping tokens", zap.Error(err))
	} else if n > 0 {
		st.logger.Info("renewal reminders queued", zap.Int("count", n))
	}
	if n, err := st.Challenges.AuditExpired(ctx); err != nil {
		st.logger.Warn("auditing expired held operations", zap.Error(err))
	} else if n > 0 {
		st.logger.Info("expired held operations audited", zap.Int("count", n))
	}
	st.auditUpkeep(ctx)
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
