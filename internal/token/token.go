// Package token is the software-token lifecycle of the service otpgate
// reproduces — issue, set up on the phone, confirm, verify, renew, revoke,
// reset, lock — as plain Go over a store.Store, so it is tested without HTTP
// and moves onto another store unchanged.
//
// Every state change is one store transaction that also writes its audit
// record and queues the notice that tells the customer (package outbox),
// so neither can miss a change nor announce one that did not happen; the
// mails an issue depends on go out at once instead (see Notifier). Code
// checks happen inside the caller's transaction (CheckInTx) so that
// spending a time step, counting a failure and consuming the paused
// operation commit together or not at all.
package token

import (
	"context"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/outbox"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
)

// State is where a user's token is in its life.
type State string

// Token states. Expired is derived from the expiry date of an active token;
// locked is orthogonal (Record.Locked).
const (
	None        State = "none"        // never issued, or reset by the bank
	Issued      State = "issued"      // setup mail sent, link not yet used
	Initialised State = "initialised" // secret delivered to the phone, first code pending
	Active      State = "active"
	Expired     State = "expired"
	Revoked     State = "revoked"
)

// User identifies a customer: a service (company) ID and a user ID within it.
type User struct {
	Service string
	ID      string
}

func (u User) key() string { return u.Service + "\x1f" + u.ID }

// Record is a user's token as stored.
type Record struct {
	Service     string    `json:"service"`
	User        string    `json:"user"`
	State       State     `json:"state"`
	Email       string    `json:"email,omitempty"`
	PINHash     string    `json:"pin_hash,omitempty"`
	LinkHash    string    `json:"link_hash,omitempty"`
	LinkExpires time.Time `json:"link_expires,omitzero"`
	SetupTries  int       `json:"setup_tries,omitempty"`
	Secret      []byte    `json:"secret,omitempty"` // sealed; see package seal
	IssuedAt    time.Time `json:"issued_at,omitzero"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	Expires     time.Time `json:"expires,omitzero"`
	Reminded    time.Time `json:"reminded,omitzero"` // the expiry date whose renewal reminder was mailed
	LastStep    int64     `json:"last_step,omitempty"`
	Failures    int       `json:"failures,omitempty"`
	Locked      bool      `json:"locked,omitempty"`
	LockedAt    time.Time `json:"locked_at,omitzero"`
}

// Config holds the lifecycle's settings. Zero values take the defaults
// documented on each field.
type Config struct {
	// Issuer is the name the token app shows (the bank's name). Default: "otpgate".
	Issuer string
	// Period of a code. Default: 60s, as the service being reproduced uses.
	Period time.Duration
	// Digits of a code: 6 or 8. Default: 6.
	Digits int
	// Algorithm: "SHA1", "SHA256" or "SHA512". Default: SHA1, which every token app supports.
	Algorithm string
	// Skew is how many periods either side of the current one are accepted. Default: 1.
	Skew *uint
	// MaxFailures is the number of consecutive wrong codes that locks the user. Default: 5.
	MaxFailures int
	// LockDuration, if set, unlocks a locked user after it; zero keeps the
	// lock until the bank unlocks it (the service being reproduced). Default: 0.
	LockDuration time.Duration
	// Validity of an activated or renewed token. Default: 365 days.
	Validity time.Duration
	// RenewWindow is how long before expiry renewal opens. Default: 30 days.
	RenewWindow time.Duration
	// LinkLifetime of a mailed setup link. Default: 24h.
	LinkLifetime time.Duration
	// LinkTries is how many wrong setups kill a link. Default: 5.
	LinkTries int
	// RequireAll makes every service require OTP.
	RequireAll bool
	// RequireServices lists services that require OTP (besides those the
	// bank switched on, and those where a user has activated a token).
	RequireServices []string
	// EnrolAddress says where setup links may be mailed (registered.go).
	// Default: only to an address the bank registered for the customer.
	EnrolAddress EnrolAddress
}

// Check reports what New would refuse in c, without changing c: for a
// configuration check at load, before any store is opened.
func (c Config) Check() error {
	return c.defaults()
}

func (c *Config) defaults() error {
	if c.Issuer == "" {
		c.Issuer = "otpgate"
	}
	if c.Period == 0 {
		c.Period = 60 * time.Second
	}
	if c.Period < time.Second || c.Period%time.Second != 0 {
		return fmt.Errorf("period %s must be a whole number of seconds", c.Period)
	}
	if c.Digits == 0 {
		c.Digits = 6
	}
	if c.Digits != 6 && c.Digits != 8 {
		return fmt.Errorf("digits %d must be 6 or 8", c.Digits)
	}
	if c.Algorithm == "" {
		c.Algorithm = "SHA1"
	}
	if _, err := algorithm(c.Algorithm); err != nil {
		return err
	}
	if c.Skew == nil {
		one := uint(1)
		c.Skew = &one
	}
	if *c.Skew > 3 {
		return fmt.Errorf("skew %d is more than 3 periods either side", *c.Skew)
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 5
	}
	if c.MaxFailures < 1 || c.MaxFailures > 10 {
		return fmt.Errorf("max_failures %d must be between 1 and 10", c.MaxFailures)
	}
	if c.Validity == 0 {
		c.Validity = 365 * 24 * time.Hour
	}
	if c.RenewWindow == 0 {
		c.RenewWindow = 30 * 24 * time.Hour
	}
	if c.RenewWindow >= c.Validity {
		return fmt.Errorf("renew_window %s must be shorter than validity %s", c.RenewWindow, c.Validity)
	}
	if c.LinkLifetime == 0 {
		c.LinkLifetime = 24 * time.Hour
	}
	if c.LinkTries == 0 {
		c.LinkTries = 5
	}
	return c.EnrolAddress.check()
}

func algorithm(name string) (otp.Algorithm, error) {
	switch name {
	case "SHA1", "sha1":
		return otp.AlgorithmSHA1, nil
	case "SHA256", "sha256":
		return otp.AlgorithmSHA256, nil
	case "SHA512", "sha512":
		return otp.AlgorithmSHA512, nil
	}
	return 0, fmt.Errorf("algorithm %q must be SHA1, SHA256 or SHA512", name)
}

// Notice tells the customer about a change of their token (by mail).
type Notice struct {
	Event       string // a mail event name: setup, issued, activated, renewed, revoked, reset, locked, unlocked, renew_reminder
	User        User
	Email       string
	Link        string    // setup only
	LinkExpires time.Time // setup only
	Expires     time.Time
	At          time.Time
}

// Notifier delivers the notices an issue depends on, at once: the setup
// mail, and the issued notice to the previously registered address. Issue
// fails if either fails. Every other notice is queued in the outbox with
// the change it announces (see enqueue).
type Notifier interface {
	Notify(ctx context.Context, n Notice) error
}

// Manager runs the lifecycle.
type Manager struct {
	store    store.Store
	sealer   *seal.Sealer
	notifier Notifier
	cfg      Config
	algo     otp.Algorithm
	required map[string]bool
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Kick, if set, is called after a transaction that queued a notice in
	// the outbox has committed, to send it at once (outbox.Sender.Kick).
	Kick func()
}

// New returns a Manager. cfg's zero fields take their defaults.
func New(s store.Store, sealer *seal.Sealer, n Notifier, cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	algo, _ := algorithm(cfg.Algorithm)
	req := make(map[string]bool, len(cfg.RequireServices))
	for _, s := range cfg.RequireServices {
		req[s] = true
	}
	return &Manager{store: s, sealer: sealer, notifier: n, cfg: cfg, algo: algo, required: req, Now: time.Now}, nil
}

// Config returns the effective configuration (defaults filled in).
func (m *Manager) Config() Config { return m.cfg }

// Errors returned by lifecycle operations. Each says what the customer can do.
var (
	// ErrActiveToken: issuing while a token is active; revoke it first.
	ErrActiveToken = errors.New("otpgate: a token is active; revoke it before issuing a new one")
	// ErrPINFormat: the activation PIN is not 4-8 digits.
	ErrPINFormat = errors.New("otpgate: activation PIN must be 4-8 digits")
	// ErrEmailFormat: the mail address is not a plain address.
	ErrEmailFormat = errors.New("otpgate: mail address is not valid")
	// ErrMail: the setup mail could not be sent; nothing was changed.
	ErrMail = errors.New("otpgate: the setup mail could not be sent; nothing was changed")
	// ErrSetupFailed: service ID, user ID or PIN wrong (deliberately not saying which).
	ErrSetupFailed = errors.New("otpgate: service ID, user ID or activation PIN is wrong")
	// ErrLinkGone: the setup link is unknown, used, expired or killed by wrong tries.
	ErrLinkGone = errors.New("otpgate: setup link is invalid, used or expired; issue a new token")
	// ErrNotInitialised: confirming a token that was not set up on the phone.
	ErrNotInitialised = errors.New("otpgate: the token has not been set up on the phone yet")
	// ErrNoToken: no active token for the operation.
	ErrNoToken = errors.New("otpgate: no active token")
	// ErrRenewTooEarly: renewal before the renewal window opens.
	ErrRenewTooEarly = errors.New("otpgate: renewal is not open yet")
	// ErrLocked: the user is locked after too many wrong codes.
	ErrLocked = errors.New("otpgate: locked after too many wrong codes; the bank must unlock it")
	// ErrInvalidCode, ErrReusedCode: see Check.
	ErrInvalidCode = errors.New("otpgate: wrong one-time password")
	ErrReusedCode  = errors.New("otpgate: this one-time password was already used; wait for the next one")
)

// load reads u's record; a missing record is a fresh one in state None.
func load(tx store.Tx, u User) (*Record, error) {
	if !u.valid() {
		return nil, ErrInvalidUser
	}
	v, err := tx.Get(store.Tokens, u.key())
	if errors.Is(err, store.ErrNotFound) {
		return &Record{Service: u.Service, User: u.ID, State: None}, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding token record: %w", err)
	}
	return &r, nil
}

func save(tx store.Tx, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding token record: %w", err)
	}
	return tx.Put(store.Tokens, User{r.Service, r.User}.key(), b)
}

// effective returns the state as the customer sees it at now.
func (m *Manager) effective(r *Record, now time.Time) State {
	if r.State == Active && !r.Expires.IsZero() && !now.Before(r.Expires) {
		return Expired
	}
	return r.State
}

// lockExpired applies a configured lock duration.
func (m *Manager) lockExpired(r *Record, now time.Time) bool {
	return r.Locked && m.cfg.LockDuration > 0 && !now.Before(r.LockedAt.Add(m.cfg.LockDuration))
}

// Status is what the token page shows.
type Status struct {
	State     State
	Locked    bool
	Email     string
	Expires   time.Time
	DaysLeft  int  // whole days until expiry (negative after it)
	RenewOpen bool // renewal is allowed now
	RenewFrom time.Time
}

// Status returns u's token status.
func (m *Manager) Status(ctx context.Context, u User) (Status, error) {
	var st Status
	err := m.store.View(ctx, func(tx store.Tx) error {
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		st = m.status(r, m.Now())
		return nil
	})
	return st, err
}

// StatusOf is the status of a record read elsewhere (admin listings).
func (m *Manager) StatusOf(r *Record) Status { return m.status(r, m.Now()) }

func (m *Manager) status(r *Record, now time.Time) Status {
	st := Status{State: m.effective(r, now), Locked: r.Locked && !m.lockExpired(r, now), Email: r.Email, Expires: r.Expires}
	if !r.Expires.IsZero() {
		st.DaysLeft = int(r.Expires.Sub(now).Hours() / 24)
		st.RenewFrom = r.Expires.Add(-m.cfg.RenewWindow)
		st.RenewOpen = (st.State == Active || st.State == Expired) && !now.Before(st.RenewFrom)
	}
	return st
}

// Requirement is what a protected operation needs from a user.
type Requirement int

// Requirements. The zero value decides nothing, so a Requirement left unset
// (an early return, a forgotten assignment) refuses rather than lets through.
const (
	// RequirementUnknown: no decision was made; callers refuse the operation.
	RequirementUnknown Requirement = iota
	// PassLegacy: the service does not require OTP and the user has no token;
	// the operation passes unchanged, as before the gateway.
	PassLegacy
	// NeedCode: pause the operation and ask for a code.
	NeedCode
	// NeedEnrolment: OTP is required but the user has no active token.
	NeedEnrolment
	// NeedRenewal: the token expired; it must be renewed first.
	NeedRenewal
	// IsLocked: too many wrong codes; the bank must unlock.
	IsLocked
)

// RequirementInTx decides, within tx, what a protected operation of u needs.
func (m *Manager) RequirementInTx(tx store.Tx, u User, now time.Time) (Requirement, error) {
	r, err := load(tx, u)
	if err != nil {
		return RequirementUnknown, err
	}
	if r.Locked && !m.lockExpired(r, now) {
		return IsLocked, nil
	}
	switch m.effective(r, now) {
	case Active:
		return NeedCode, nil
	case Expired:
		return NeedRenewal, nil
	}
	required, err := m.requiredInTx(tx, u.Service)
	if err != nil {
		return RequirementUnknown, err
	}
	if required {
		return NeedEnrolment, nil
	}
	return PassLegacy, nil
}

// serviceRecord is the bank's switch for one service.
type serviceRecord struct {
	RequireOTP bool      `json:"require_otp"`
	Since      time.Time `json:"since"`
	By         string    `json:"by"`
}

func (m *Manager) requiredInTx(tx store.Tx, service string) (bool, error) {
	if m.cfg.RequireAll || m.required[service] {
		return true, nil
	}
	v, err := tx.Get(store.Services, service)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var s serviceRecord
	if err := json.Unmarshal(v, &s); err != nil {
		return false, fmt.Errorf("decoding service record: %w", err)
	}
	return s.RequireOTP, nil
}

// requireInTx switches OTP on for a service: once a company uses OTP, all
// of its users must (the service being reproduced).
func requireInTx(tx store.Tx, service, by string, now time.Time) error {
	v, err := tx.Get(store.Services, service)
	if err == nil {
		var s serviceRecord
		if json.Unmarshal(v, &s) == nil && s.RequireOTP {
			return nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	b, _ := json.Marshal(serviceRecord{RequireOTP: true, Since: now, By: by})
	if err := tx.Put(store.Services, service, b); err != nil {
		return err
	}
	return audit.Append(tx, audit.Record{Time: now, Event: audit.RequireOTP, Service: service, Actor: by})
}

// ServiceRequiresOTP reports whether a service requires OTP now.
func (m *Manager) ServiceRequiresOTP(ctx context.Context, service string) (bool, error) {
	var req bool
	err := m.store.View(ctx, func(tx store.Tx) error {
		var err error
		req, err = m.requiredInTx(tx, service)
		return err
	})
	return req, err
}

// RequireOTP makes a service require OTP (the bank's switch). by names the
// administrator for the audit trail.
func (m *Manager) RequireOTP(ctx context.Context, service, by string) error {
	if service == "" {
		return errors.New("otpgate: service ID is empty")
	}
	return m.store.Update(ctx, func(tx store.Tx) error {
		return requireInTx(tx, service, actorAdmin+by, m.Now())
	})
}

// Outcome of a code check.
type Outcome int

// Outcomes of CheckInTx. The zero value accepts nothing, so a Check left
// unset never releases an operation.
const (
	OutcomeUnknown Outcome = iota // no check was made; callers refuse
	CodeOK
	CodeInvalid
	CodeReused
	CodeLocked  // the user is (now) locked
	CodeNoToken // no token in a state that accepts this check
)

// Purpose says which token states a check accepts.
type Purpose int

// Purposes of a code check.
const (
	// ForOperation: an active, unexpired token releases an operation.
	ForOperation Purpose = iota
	// ForActivation: the first code of an initialised token.
	ForActivation
	// ForRenewal: an active or expired token (renewal works after expiry).
	ForRenewal
)

// Check is the result of a code check.
type Check struct {
	Outcome      Outcome
	AttemptsLeft int
	JustLocked   bool  // this check locked the user: queue their notice (EnqueueLocked)
	Step         int64 // the accepted time step
	Record       *Record
}

// CheckInTx checks code for u within tx and records the result: a right code
// spends its time step and resets the failure count; a wrong one counts a
// failure and locks at MaxFailures. It does not write an audit record; the
// caller does, with the operation it was for.
func (m *Manager) CheckInTx(tx store.Tx, u User, code string, p Purpose, now time.Time) (Check, error) {
	r, err := load(tx, u)
	if err != nil {
		return Check{}, err
	}
	if m.lockExpired(r, now) {
		r.Locked, r.Failures = false, 0
	}
	if r.Locked {
		m.fakeCheck(code, now)
		return Check{Outcome: CodeLocked, Record: r}, nil
	}
	st := m.effective(r, now)
	ok := (p == ForOperation && st == Active) || (p == ForActivation && st == Initialised) ||
		(p == ForRenewal && (st == Active || st == Expired))
	if !ok {
		// Same work as a real check, so timing does not tell whether the
		// user has a token.
		m.fakeCheck(code, now)
		return Check{Outcome: CodeNoToken, Record: r}, nil
	}
	secret, err := m.sealer.Open(r.Secret, []byte(u.key()))
	if err != nil {
		return Check{}, fmt.Errorf("opening token secret: %w", err)
	}
	step, matched := m.match(secret, code, now)
	switch {
	case matched && step <= r.LastStep:
		return Check{Outcome: CodeReused, AttemptsLeft: m.cfg.MaxFailures - r.Failures, Record: r}, nil
	case matched:
		r.LastStep, r.Failures = step, 0
		return Check{Outcome: CodeOK, Step: step, AttemptsLeft: m.cfg.MaxFailures, Record: r}, save(tx, r)
	}
	r.Failures++
	c := Check{Outcome: CodeInvalid, AttemptsLeft: m.cfg.MaxFailures - r.Failures, Record: r}
	if r.Failures >= m.cfg.MaxFailures {
		r.Locked, r.LockedAt = true, now
		c.Outcome, c.JustLocked, c.AttemptsLeft = CodeLocked, true, 0
	}
	return c, save(tx, r)
}

// match compares code against every step in the window, in constant time
// and without stopping at the first hit, and returns the newest matching step.
func (m *Manager) match(secret []byte, code string, now time.Time) (int64, bool) {
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	opts := hotp.ValidateOpts{Digits: otp.Digits(m.cfg.Digits), Algorithm: m.algo}
	cur := now.Unix() / int64(m.cfg.Period/time.Second)
	skew := int64(*m.cfg.Skew)
	var step int64
	found := 0
	for s := cur - skew; s <= cur+skew; s++ {
		if s < 0 {
			continue
		}
		want, err := hotp.GenerateCodeCustom(b32, uint64(s), opts)
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, found = s, 1
		}
	}
	return step, found == 1
}

// fakeSecret is used for checks that cannot succeed, so they cost the same.
var fakeSecret = make([]byte, 20)

func (m *Manager) fakeCheck(code string, now time.Time) { m.match(fakeSecret, code, now) }

// enqueue queues n in the outbox within tx, so that it is mailed exactly
// when the change it announces commits, whether or not the customer's
// connection stays open. A token without an address has no one to tell.
func enqueue(tx store.Tx, n Notice) error {
	if n.Email == "" {
		return nil
	}
	return outbox.Enqueue(tx, outbox.Notice{Event: n.Event, Service: n.User.Service, User: n.User.ID, To: n.Email,
		Expires: n.Expires, At: n.At})
}

func (m *Manager) kick() {
	if m.Kick != nil {
		m.Kick()
	}
}

// EnqueueLocked queues the lock notice for the record a code check just
// locked (Check.JustLocked), within the transaction that locked it; call
// Kick after it commits.
func EnqueueLocked(tx store.Tx, r *Record) error {
	return enqueue(tx, lockedNotice(r))
}

func lockedNotice(r *Record) Notice {
	return Notice{Event: "locked", User: User{r.Service, r.User}, Email: r.Email, At: r.LockedAt}
}
