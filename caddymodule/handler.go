// Package caddymodule is otpgate's Caddy glue: the http.handlers.otpgate
// module and its configuration, the Caddyfile directive, the gateway pages,
// the admin API and the CLI subcommands. Business rules live elsewhere:
// policy decides which request is which operation, internal/gate runs the
// request flow (hold, confirm, cancel, release, login watching) and says
// what every refusal is, internal/token runs the token lifecycle,
// internal/challenge keeps held operations.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
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

	// Database is the bbolt file holding tokens, sessions, paused operations
	// and the audit trail, created with mode 0600. A relative path is
	// relative to the working directory. Default: otpgate.db
	Database string `json:"database,omitempty"`

	// SecretKey seals TOTP secrets at rest (AES-256-GCM) and signs CSRF
	// tokens: 32 bytes as 64 hex digits or base64. Use a placeholder such as
	// {env.OTPGATE_SECRET_KEY}; never write the key into the config file.
	// Every node sharing a store needs the same key. Required unless
	// SecretKeyFile is set.
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

	// Validity of an activated or renewed token. Default: 365d
	Validity caddy.Duration `json:"validity,omitempty"`

	// RenewWindow: renewal opens this long before expiry (and a reminder
	// is mailed). Default: 30d
	RenewWindow caddy.Duration `json:"renew_window,omitempty"`

	// LinkLifetime of a mailed setup link. Default: 24h
	LinkLifetime caddy.Duration `json:"link_lifetime,omitempty"`

	// RequireOTP lists the service IDs whose users must all use OTP, or
	// "all". A service also requires OTP once one of its users activates a
	// token, or when the bank switches it on ("otpgate require").
	// Operations of other services pass through unchanged, as before the
	// gateway, and are logged.
	RequireOTP []string `json:"require_otp,omitempty"`

	// PublicURL is the scheme and host customers reach the gateway at, used
	// in mailed setup links (https://ib.example-bank.jp). Default: taken
	// from the request that issues the token.
	PublicURL string `json:"public_url,omitempty"`

	// Home is where "back" links on gateway pages lead. Default: /
	Home string `json:"home,omitempty"`

	// EnrolAddress says where setup links may be mailed: "registered" (only
	// an address the bank registered for the customer, imported from its
	// customer file with "otpgate registered-import"), "domain" (any
	// address at one of EnrolDomains) or "any". Whatever the choice, the
	// addresses the bank registered for the customer and the company are
	// told of every issue. Default: registered, so that a phished password
	// alone cannot bind the phisher's phone.
	EnrolAddress string   `json:"enrol_address,omitempty"`
	EnrolDomains []string `json:"enrol_domains,omitempty"`

	// BankTable is a CSV file naming 金融機関コード and 支店コード
	// (bank_code,branch_code,bank_name,branch_name; UTF-8 or Shift_JIS),
	// for fields shown with the format bank or branch. Default: none, and
	// such codes are shown as sent, with a note.
	BankTable string `json:"bank_table,omitempty"`

	// Contact is how customers reach the bank, shown on every gateway
	// page and in every mail ("0120-000-000（平日9:00～17:00）").
	// Default: none.
	Contact string `json:"contact,omitempty"`

	// Identity says how the gateway knows who sends a request.
	Identity *Identity `json:"identity,omitempty"`

	// Mail delivers setup links and security notices.
	Mail *MailConfig `json:"mail,omitempty"`

	// Rules are the protected operations.
	Rules []policy.Rule `json:"rules,omitempty"`

	policy     *policy.Policy
	exempt     *policy.Exemptions
	revokePath *policy.FixedPath
	sealer     *seal.Sealer
	store      store.Store
	dbKey      string
	tokens     *token.Manager
	challenges *challenge.Manager
	sessions   *session.Manager
	flow       *gate.Gate
	banks      *display.BankTable
	mailer     mailNotifier
	logger     *zap.Logger
	stop       context.CancelFunc
}

// CaddyModule returns the Caddy module information.
func (Gateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otpgate",
		New: func() caddy.Module { return new(Gateway) },
	}
}

// now is the clock of every lifecycle; tests replace it.
var now = time.Now

// Provision fills defaults, resolves placeholders and opens the store.
func (g *Gateway) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	if g.BasePath == "" {
		g.BasePath = "/.otpgate"
	}
	g.BasePath = "/" + strings.Trim(g.BasePath, "/")
	if g.Database == "" {
		g.Database = "otpgate.db"
	}
	if g.MaxBody == 0 {
		g.MaxBody = 10 << 20
	}
	if g.Home == "" {
		g.Home = "/"
	}
	if g.Identity == nil {
		return errors.New("otpgate: identity is required: say how the gateway knows the customer (login_form or header)")
	}
	if err := g.Identity.provision(); err != nil {
		return err
	}

	keyText := repl.ReplaceAll(g.SecretKey, "")
	if keyText == "" && g.SecretKeyFile != "" {
		b, err := os.ReadFile(repl.ReplaceAll(g.SecretKeyFile, ""))
		if err != nil {
			return fmt.Errorf("otpgate: reading secret_key_file: %v", err)
		}
		keyText = string(b)
	}
	if keyText == "" {
		return errors.New("otpgate: secret_key is empty: set it to a placeholder such as {env.OTPGATE_SECRET_KEY} holding 32 random bytes (head -c 32 /dev/urandom | base64), or set secret_key_file")
	}
	key, err := seal.ParseKey(keyText)
	if err != nil {
		return fmt.Errorf("otpgate: secret_key: %v", err)
	}
	var retired [][]byte
	for i, k := range g.RetiredKeys {
		rk, err := seal.ParseKey(repl.ReplaceAll(k, ""))
		if err != nil {
			return fmt.Errorf("otpgate: retired_keys[%d]: %v", i, err)
		}
		retired = append(retired, rk)
	}
	if g.sealer, err = seal.New(key, retired...); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}

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

	if g.mailer, err = g.Mail.notifier(repl, g.Issuer, g.Contact); err != nil {
		return err
	}
	if g.banks, err = loadBankTable(repl.ReplaceAll(g.BankTable, "")); err != nil {
		return err
	}

	dbPath, err := filepath.Abs(repl.ReplaceAll(g.Database, ""))
	if err != nil {
		return fmt.Errorf("otpgate: database path: %v", err)
	}
	pooled, err := openStore(dbPath)
	if err != nil {
		return fmt.Errorf("otpgate: opening token store: %v", err)
	}
	g.store, g.dbKey = pooled.db, dbPath

	tc := token.Config{
		Issuer: g.Issuer, Period: time.Duration(g.Period), Digits: g.Digits, Algorithm: g.Algorithm, Skew: g.Skew,
		MaxFailures: g.MaxFailures, LockDuration: time.Duration(g.LockDuration), Validity: time.Duration(g.Validity),
		RenewWindow: time.Duration(g.RenewWindow), LinkLifetime: time.Duration(g.LinkLifetime),
		EnrolAddress: token.EnrolAddress{Mode: token.AddressMode(g.EnrolAddress), Domains: g.EnrolDomains},
	}
	for _, s := range g.RequireOTP {
		if strings.EqualFold(s, "all") {
			tc.RequireAll = true
		} else {
			tc.RequireServices = append(tc.RequireServices, s)
		}
	}
	if g.tokens, err = token.New(g.store, g.sealer, g.mailer, tc); err != nil {
		g.Cleanup()
		return fmt.Errorf("otpgate: %v", err)
	}
	if g.challenges, err = challenge.New(g.store, g.sealer, g.tokens, challenge.Config{Lifetime: time.Duration(g.ChallengeLifetime)}); err != nil {
		g.Cleanup()
		return fmt.Errorf("otpgate: %v", err)
	}
	g.sessions = session.New(g.store, time.Duration(g.Identity.IdleTimeout), time.Duration(g.Identity.MaxAge))
	clock := func() time.Time { return now() }
	g.tokens.Now, g.challenges.Now, g.sessions.Now = clock, clock, clock
	g.tokens.Kick = pooled.sender.Kick
	g.flow = gate.New(g.store, g.tokens, g.challenges, g.sessions, g.Identity.login, g.logger)

	registerInstance(g)
	pooled.startSender()
	sweepCtx, cancel := context.WithCancel(ctx)
	g.stop = cancel
	go g.sweep(sweepCtx)
	return nil
}

// sweep removes expired paused operations and what has expired in the
// store (sessions, setup links), and queues renewal reminders.
func (g *Gateway) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := g.challenges.DropUnsealed(ctx); err != nil {
			g.logger.Warn("deleting paused operations an earlier version stored unsealed", zap.Error(err))
		}
		if err := sweepStore(ctx, g.store); err != nil {
			g.logger.Warn("sweeping expired keys", zap.Error(err))
		}
		if n, err := g.tokens.Sweep(ctx); err != nil {
			g.logger.Warn("sweeping tokens", zap.Error(err))
		} else if n > 0 {
			g.logger.Info("renewal reminders queued", zap.Int("count", n))
		}
	}
}

// Validate checks the configuration cheaply.
func (g *Gateway) Validate() error {
	if g.MaxBody < 0 {
		return fmt.Errorf("otpgate: max_body %d must be positive", g.MaxBody)
	}
	if len(g.Rules) == 0 {
		return errors.New("otpgate: no rules: add at least one rule naming a protected operation")
	}
	if err := gate.CheckRules(g.Rules); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}
	if g.PublicURL != "" && !strings.HasPrefix(g.PublicURL, "https://") && !strings.HasPrefix(g.PublicURL, "http://") {
		return fmt.Errorf("otpgate: public_url %q must start with https://", g.PublicURL)
	}
	return nil
}

// Cleanup undoes Provision.
func (g *Gateway) Cleanup() error {
	if g.stop != nil {
		g.stop()
	}
	unregisterInstance(g)
	if g.dbKey != "" {
		_, err := storePool.Delete(g.dbKey)
		g.dbKey = ""
		return err
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gateway)(nil)
	_ caddy.Validator             = (*Gateway)(nil)
	_ caddy.CleanerUpper          = (*Gateway)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gateway)(nil)
)
