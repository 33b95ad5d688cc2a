// Package caddymodule is otpgate's HTTP handler, http.handlers.otpgate: its
// configuration and Caddyfile directive, the adaptation of requests to the
// request flow and of its answers to HTTP, and the gateway's pages. It is
// the package a Caddy build imports (xcaddy --with
// github.com/otpgate/otpgate/caddymodule), and it brings the rest: the
// otpgate app that owns each store's shared state and serves the admin API
// (internal/app), the store modules (internal/storemodule). Business rules
// live elsewhere: policy decides which request is which operation,
// internal/gate runs the request flow (hold, confirm, cancel, release,
// login watching) and says what every refusal is, internal/token runs the
// token lifecycle, internal/challenge keeps held operations.
package caddymodule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/bodybuf"
	"github.com/otpgate/otpgate/internal/caddyconf"
	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/policy"
)

func init() {
	caddy.RegisterModule(Gateway{})
}

// Gateway is an HTTP handler that pauses the operations that move money or
// change security settings, and releases each, once, after the customer
// enters a one-time password from their token app. Place it in front of
// reverse_proxy to the legacy banking site.
type Gateway struct {
	// BasePath is where the gateway's own pages live. Default: /.otpgate
	BasePath string `json:"base_path,omitempty"`

	// StoreSettings name the store (database, or store) and may carry its
	// settings (keys, token lifecycle, mail): a shorthand for configuring
	// the store in the otpgate app, which every handler naming the store
	// shares. Default: the app's only store, or otpgate.db.
	app.StoreSettings

	// AllowAmbiguousPaths exempts path prefixes, written "/static/**", from
	// the refusal of ambiguous request paths (400 for an encoded '/', '\',
	// ';' or '.', '%25', a control character, a dot or empty segment, invalid
	// UTF-8 and the rest listed in the README). Only legacy content whose
	// names need such paths belongs here; a prefix that covers a protected
	// path, the login or logout path or the gateway's own pages is refused at
	// load, and an exempted path that any reading could lead out of its
	// prefix is still refused. Default: none
	AllowAmbiguousPaths []string `json:"allow_ambiguous_paths,omitempty"`

	// MaxBody is the largest request body, in bytes, the gateway holds for a
	// watched path; a larger one is refused with 413. Default: 10 MiB
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxBuffered is the most request-body bytes the handler holds in
	// memory at once, over every request it is reading for a watched path
	// (each up to MaxBody). A request that would go over it is answered 503
	// and not executed, so that a flood of large bodies — sent before any
	// login is checked — cannot exhaust the gateway's memory. A large body
	// is read in chunks and joined, so at least twice MaxBody. The bound is
	// the handler's: each otpgate handler (site block) has its own, and
	// during a reload the old configuration's handler still has its.
	// Default: 256 MiB
	MaxBuffered int64 `json:"max_buffered,omitempty"`

	// PublicURL is the scheme and host customers reach the gateway at, used
	// in mailed setup links: https://ib.example-bank.jp (http:// is
	// accepted for a demo). Default: taken from the request that issues
	// the token.
	PublicURL string `json:"public_url,omitempty"`

	// Home is where "back" links on gateway pages lead. Default: /
	Home string `json:"home,omitempty"`

	// EnrolAtLogin answers the successful login (a 302 or 303) of a
	// customer who must use OTP and has no active token with the token
	// page (STEP 1, or renewal) instead of the bank's redirect, with a
	// link on to Home, as the service being reproduced does at the first
	// login. false keeps the bank's answer, and enrolment starts only when
	// a protected operation is tried. Default: true
	EnrolAtLogin *bool `json:"enrol_at_login,omitempty"`

	// BankTable is a CSV file naming 金融機関コード and 支店コード
	// (bank_code,branch_code,bank_name,branch_name; UTF-8 or Shift_JIS),
	// for fields shown with the format bank or branch. Default: none, and
	// such codes are shown as sent, with a note.
	BankTable string `json:"bank_table,omitempty"`

	// Identity says how the gateway knows who sends a request.
	Identity *Identity `json:"identity,omitempty"`

	// Rules are the protected operations.
	Rules []policy.Rule `json:"rules,omitempty"`

	// shared is the otpgate app's state of the handler's store, shared
	// with every handler on it: the store, sealer, token and
	// held-operation managers.
	shared *app.State

	policy     *policy.Policy
	exempt     *policy.Exemptions
	revokePath *policy.FixedPath
	sessions   *session.Manager
	flow       *gate.Gate
	banks      *display.BankTable
	logger     *zap.Logger
	clock      *clockCheck
	buffered   *bodybuf.Budget
}

// CaddyModule returns the Caddy module information.
func (Gateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otpgate",
		New: func() caddy.Module { return new(Gateway) },
	}
}

// Provision fills defaults, resolves placeholders and opens the store.
func (g *Gateway) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	g.clock = &clockCheck{}
	if err := g.prepare(); err != nil {
		return err
	}
	a, err := ctx.App("otpgate")
	if err != nil {
		return fmt.Errorf("otpgate: loading the otpgate app: %v", err)
	}
	st, err := a.(*app.App).StoreFor(ctx, &g.StoreSettings)
	if err != nil {
		return err
	}
	g.useStore(st)
	return nil
}

// prepare fills defaults and builds what needs no store: the identity,
// the rules, the gateway's own paths and the bank table.
func (g *Gateway) prepare() error {
	repl := caddy.NewReplacer()
	if g.BasePath == "" {
		g.BasePath = "/.otpgate"
	}
	g.BasePath = "/" + strings.Trim(g.BasePath, "/")
	if g.MaxBody == 0 {
		g.MaxBody = 10 << 20
	}
	if g.MaxBuffered == 0 {
		g.MaxBuffered = max(256<<20, 2*g.MaxBody)
	}
	g.buffered = bodybuf.NewBudget(g.MaxBuffered)
	if g.Home == "" {
		g.Home = "/"
	}
	if g.Identity == nil {
		return errors.New("otpgate: identity is required: say how the gateway knows the customer (login_form or header)")
	}
	if err := g.Identity.provision(); err != nil {
		return err
	}

	var err error
	if g.policy, err = policy.Compile(g.Rules); err != nil {
		return fmt.Errorf("otpgate: rules: %v", err)
	}
	// The built-in revocation is no rule: every reading of its path is
	// served by the gateway alone (ServeHTTP).
	if g.revokePath, err = policy.CompileFixedPath(gate.RevokePath(g.BasePath)); err != nil {
		return fmt.Errorf("otpgate: base_path: %v", err)
	}
	reserved := []string{g.BasePath + "/**"}
	if g.Identity != nil && g.Identity.Source == "login_form" {
		reserved = append(reserved, g.Identity.LoginPath, g.Identity.LogoutPath)
	}
	if g.exempt, err = policy.NewExemptions(g.AllowAmbiguousPaths, g.policy, reserved...); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}

	g.banks, err = loadBankTable(repl.ReplaceAll(g.BankTable, ""))
	return err
}

// useStore makes st the handler's store state and builds the request flow
// over it.
func (g *Gateway) useStore(st *app.State) {
	g.shared = st
	g.sessions = session.New(st.Store, time.Duration(g.Identity.IdleTimeout), time.Duration(g.Identity.MaxAge))
	g.sessions.Now = func() time.Time { return app.Now() }
	g.flow = gate.New(st.Store, st.Tokens, st.Challenges, g.sessions, g.Identity.login, g.logger)
	g.flow.Observe(app.FlowMetrics{})
	if locks := st.Locks(); locks != nil {
		g.flow.SerialiseSessions(locks)
	}
}

// Validate checks the configuration as Provision reads it, the same for a
// Caddyfile and a JSON configuration (the Caddyfile parser checks some of
// it again, to name the line). What it refuses would otherwise fail later:
// at the first mail, the first held operation or the first code.
func (g *Gateway) Validate() error {
	if g.Identity == nil {
		return errors.New("otpgate: identity is required: say how the gateway knows the customer (login_form or header)")
	}
	if err := g.Identity.validate(); err != nil {
		return err
	}
	if g.MaxBody < 0 || g.MaxBody > maxBodyLimit {
		return fmt.Errorf("otpgate: max_body %d: want a size from 1 byte to %d MiB, what a held operation can store with its headers", g.MaxBody, maxBodyLimit>>20)
	}
	if g.MaxBuffered < 0 || (g.MaxBuffered > 0 && g.MaxBuffered < 2*max(g.MaxBody, 1)) {
		return fmt.Errorf("otpgate: max_buffered %d: want at least twice max_body (%d bytes; a large body is read in chunks, then joined), or leave it out for 256 MiB", g.MaxBuffered, 2*g.MaxBody)
	}
	if err := caddyconf.CheckDurations(map[string]caddy.Duration{"identity idle_timeout": g.Identity.IdleTimeout, "identity max_age": g.Identity.MaxAge}); err != nil {
		return err
	}
	if len(g.Rules) == 0 {
		return errors.New("otpgate: no rules: add at least one rule naming a protected operation")
	}
	if err := gate.CheckRules(g.Rules); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}
	if err := checkPublicURL(g.PublicURL); err != nil {
		return err
	}
	return g.StoreSettings.ValidateIfWritten()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gateway)(nil)
	_ caddy.Validator             = (*Gateway)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gateway)(nil)
)
