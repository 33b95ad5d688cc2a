package token

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// ErrInvalidUser: a service ID or user ID is empty, too long or holds
// control characters. Refused because the two are joined with a control
// character into one store key, and such IDs could name another user's record.
var ErrInvalidUser = errors.New("otpgate: service ID or user ID is not valid")

// ErrNoMailer: issuing needs a Notifier to mail the setup link.
var ErrNoMailer = errors.New("otpgate: no mailer is configured, so the setup link cannot be sent")

// maxIDLen bounds service and user IDs; bank IDs are short, and a mail
// address used as a user ID fits.
const maxIDLen = 256

// valid reports whether u can be used as a store key.
func (u User) valid() bool {
	for _, s := range []string{u.Service, u.ID} {
		if s == "" || len(s) > maxIDLen || !utf8.ValidString(s) {
			return false
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f {
				return false
			}
		}
	}
	return true
}

// Audit actors.
const (
	actorCustomer = "customer"
	actorSystem   = "system"
	// actorAdmin prefixes the bank administrator's name ("admin:yamada").
	// Every administrator operation takes the bare name and adds it.
	actorAdmin = "admin:"
)

func auditRecord(now time.Time, ev audit.Event, u User, clientIP, actor, detail string) audit.Record {
	return audit.Record{Time: now, Event: ev, Service: u.Service, User: u.ID, ClientIP: clientIP, Actor: actor, Detail: detail}
}

// linkRecord is what store.SetupLinks holds under the hash of a setup link.
type linkRecord struct {
	Service string    `json:"service"`
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

// newLink returns a setup link token: 256 random bits, URL-safe.
func newLink() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random link: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashLink is the only form in which a link is stored, so a copy of the
// database does not hand out working links.
func hashLink(link string) string {
	h := sha256.Sum256([]byte(link))
	return hex.EncodeToString(h[:])
}

// validEmail accepts a bare address only: a display name or angle brackets
// would end up in a mail header of their own.
func validEmail(addr string) bool {
	if addr == "" || len(addr) > 254 {
		return false
	}
	a, err := mail.ParseAddress(addr)
	return err == nil && a.Name == "" && a.Address == addr
}

// MaskEmail shows enough of an address for the customer to recognise it
// on a page that someone else may see: "taro.yamada@example.jp" becomes
// "ta***@example.jp". No address (no token issued) masks to "", so pages
// show no address rather than a mask of one.
func MaskEmail(addr string) string {
	if addr == "" {
		return ""
	}
	local, domain, ok := strings.Cut(addr, "@")
	if !ok {
		return "***"
	}
	keep := 0
	for i := range local {
		if keep == 2 {
			local = local[:i]
			break
		}
		keep++
	}
	return local + "***@" + domain
}

// IssueResult is what the issue page shows.
type IssueResult struct {
	MaskedEmail string
	LinkExpires time.Time
}

// ErrReissueNeedsToken: a new token by password alone for a user who has
// had one that was neither revoked with a code nor reset by the bank.
var ErrReissueNeedsToken = errors.New("otpgate: a new token cannot be issued with the login password alone; renew the current token with a code from it, or ask the bank to reset it")

// ErrIssueChanged: the token changed (another issue) while the mails of
// this issue were being sent; nothing was changed.
var ErrIssueChanged = errors.New("otpgate: the token changed while this issue was being sent; nothing was changed; reload the page and issue again")

// canIssue decides whether a token may be issued now. Issue proves nothing
// but the customer's bank session, i.e. the password, so binding a new phone
// is allowed only where no token stands in the way or where the bank or the
// token itself has vouched for it (NIST SP 800-63B §6.1.2.1: a new
// authenticator is bound with an existing one or through recovery). Every
// state is named; any other fails closed.
func (m *Manager) canIssue(r *Record, now time.Time) error {
	// Nobody escapes a lock by starting over: only the bank unlocks.
	if r.Locked && !m.lockExpired(r, now) {
		return ErrLocked
	}
	switch m.effective(r, now) {
	case None:
		// Never had a token, or the bank reset it (Reset writes None): the
		// password is all there is, or the bank did the recovery.
		return nil
	case Revoked:
		// Only the customer revokes (Reset writes None), and the gateway
		// calls Revoke only when the token_management operation was
		// confirmed with a right code from the active token. A revoked token
		// is therefore proof that its holder let it go, as the service's
		// "revoke before changing phones, then issue for the new one" needs.
		return nil
	case Issued, Initialised:
		// An issue not yet activated, which only an allowed issue creates
		// (from None, Revoked or another pending one). Refusing a second one
		// would let whoever issued first keep the enrolment; instead the
		// replacement is allowed and Issue tells the pending address.
		return nil
	case Active:
		return ErrActiveToken
	case Expired:
		// The attack this exists for: with the password alone, enrol one's
		// own phone over an expired token. The customer renews with a code
		// from the token (renewal works after expiry) or asks for a reset.
		return ErrReissueNeedsToken
	}
	// A state this version does not know (damaged or newer record).
	return ErrReissueNeedsToken
}

// auditIssueRefused records an issue refused because of the token's state:
// someone with the customer's session tried to bind a new phone, which the
// bank wants to see even though nothing changed.
func auditIssueRefused(tx store.Tx, u User, state State, refusal error, clientIP string, now time.Time) error {
	return audit.Append(tx, auditRecord(now, audit.Refused, u, clientIP, actorCustomer,
		"token issue, state "+string(state)+"; "+refusal.Error()))
}

// refuseIssue audits a refusal found by the read-only check in Issue and
// returns it; err is a store failure.
func (m *Manager) refuseIssue(ctx context.Context, u User, state State, refusal error, clientIP string, now time.Time) error {
	err := m.store.Update(ctx, func(tx store.Tx) error {
		return auditIssueRefused(tx, u, state, refusal, clientIP, now)
	})
	if err != nil {
		return err
	}
	return refusal
}

// Issue is STEP 1: it mails a setup link to email and records the activation
// PIN (as an argon2id hash) that the phone must present with it. linkBase is
// the absolute URL the link token is appended to. A token that is issued or
// initialised but not activated is replaced, and its link stops working.
// canIssue says when a token may be issued; a refusal is audited.
//
// When the user had another address registered (an earlier token, a pending
// issue, or the one kept by a bank reset), that address is told of the issue
// too: whoever issues with a stolen password is announced to the customer.
// The addresses the bank registered for the customer and their company are
// told as well; email must be one Config.EnrolAddress allows, and the PIN
// not one a phisher guesses first (registered.go).
//
// The mails are sent before anything is written: if either fails, Issue
// returns an error wrapping ErrMail and the token is as it was.
func (m *Manager) Issue(ctx context.Context, u User, email, pin, linkBase, clientIP string) (IssueResult, error) {
	if !u.valid() {
		return IssueResult{}, ErrInvalidUser
	}
	if !validEmail(email) {
		return IssueResult{}, ErrEmailFormat
	}
	if !validPIN(pin) {
		return IssueResult{}, ErrPINFormat
	}
	if err := trivialPIN(pin, u); err != nil {
		return IssueResult{}, err
	}
	if m.notifier == nil {
		return IssueResult{}, ErrNoMailer
	}
	now := m.Now()
	// Checked before mailing so a refused issue sends no mail; checked again
	// in the Update because the state may change meanwhile.
	var prev string // the address registered before this issue
	var state State
	var refusal error
	var registered []string // the bank's addresses to tell (registered.go)
	err := m.store.View(ctx, func(tx store.Tx) error {
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		prev, state, refusal = r.Email, m.effective(r, now), m.canIssue(r, now)
		var badAddress error
		if registered, badAddress, err = m.enrolAddresses(tx, u, email, prev); refusal == nil {
			refusal = badAddress
		}
		return err
	})
	if err != nil {
		return IssueResult{}, err
	}
	if refusal != nil {
		return IssueResult{}, m.refuseIssue(ctx, u, state, refusal, clientIP, now)
	}
	pinHash, err := hashPIN(pin)
	if err != nil {
		return IssueResult{}, err
	}
	link, err := newLink()
	if err != nil {
		return IssueResult{}, err
	}
	lh := hashLink(link)
	expires := now.Add(m.cfg.LinkLifetime)
	n := Notice{Event: "setup", User: u, Email: email, Link: linkBase + link, LinkExpires: expires, At: now}
	if err := m.notifier.Notify(ctx, n); err != nil {
		return IssueResult{}, fmt.Errorf("%w: %w", ErrMail, err)
	}
	// The notice to the previous address is not best effort: an issue it
	// cannot announce is not made. It goes after the setup mail, so a failed
	// setup mail never announces an issue that did not happen. The same
	// address needs no notice: the setup mail itself reaches it.
	detail := "setup link mailed to " + MaskEmail(email)
	if prev != "" && prev != email {
		if err := m.notifier.Notify(ctx, Notice{Event: "issued", User: u, Email: prev, At: now}); err != nil {
			return IssueResult{}, fmt.Errorf("%w: notice to the previously registered address: %w", ErrMail, err)
		}
		detail += "; issue notice mailed to the previous address " + MaskEmail(prev)
	}
	told, err := m.notifyRegistered(ctx, u, registered, now)
	if err != nil {
		return IssueResult{}, err
	}
	detail += told
	if state == Issued || state == Initialised {
		detail += "; replaces the unfinished issue (" + string(state) + ")"
	}
	// If this Update fails after the mails went out, the mailed link is
	// unknown to the store and answers ErrLinkGone: nothing is half-done.
	var outcome error
	err = m.store.Update(ctx, func(tx store.Tx) error {
		outcome = nil
		r, err := load(tx, u)
		if err != nil {
			return err
		}
		if outcome = m.canIssue(r, now); outcome != nil {
			return auditIssueRefused(tx, u, m.effective(r, now), outcome, clientIP, now)
		}
		// Another issue got in since the check: the address warned above
		// may not be the one this issue replaces.
		if r.Email != prev {
			return ErrIssueChanged
		}
		if r.LinkHash != "" {
			if err := tx.Delete(store.SetupLinks, r.LinkHash); err != nil {
				return err
			}
		}
		// A new token starts afresh; LastStep and Failures stay, because
		// they belong to the user, not to one token.
		r.State = Issued
		r.Email = email
		r.PINHash = pinHash
		r.LinkHash = lh
		r.LinkExpires = expires
		r.SetupTries = 0
		r.Secret = nil
		r.IssuedAt = now
		r.ActivatedAt, r.Expires, r.Reminded = time.Time{}, time.Time{}, time.Time{}
		if r.Locked { // an expired lock (LockDuration)
			r.Locked, r.Failures, r.LockedAt = false, 0, time.Time{}
		}
		lb, err := json.Marshal(linkRecord{Service: u.Service, User: u.ID, Expires: expires})
		if err != nil {
			return err
		}
		// The link expires in the store too, so one nobody uses is removed
		// without a sweep; linkOwner still checks Expires by the
		// manager's clock, the one that counts.
		if err := store.PutTTL(tx, store.SetupLinks, lh, lb, m.cfg.LinkLifetime); err != nil {
			return err
		}
		if err := save(tx, r); err != nil {
			return err
		}
		return audit.Append(tx, auditRecord(now, audit.Issued, u, clientIP, actorCustomer, detail))
	})
	if err != nil {
		return IssueResult{}, err
	}
	if outcome != nil {
		return IssueResult{}, outcome
	}
	return IssueResult{MaskedEmail: MaskEmail(email), LinkExpires: expires}, nil
}

// SetupResult is what the phone is shown once: the secret, as a QR code and
// as text for apps that cannot scan.
type SetupResult struct {
	Secret  string // base32 without padding
	URI     string // otpauth://totp/...
	QRPNG   []byte // the URI as a QR code
	Account string // the account name the app shows under the issuer
}

// linkOwner finds the record a setup link belongs to, if the link still works.
func linkOwner(tx store.Tx, lh string, now time.Time) (*Record, error) {
	v, err := tx.Get(store.SetupLinks, lh)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrLinkGone
	}
	if err != nil {
		return nil, err
	}
	var l linkRecord
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, fmt.Errorf("decoding setup link: %w", err)
	}
	if !now.Before(l.Expires) {
		return nil, ErrLinkGone
	}
	u := User{l.Service, l.User}
	r, err := load(tx, u)
	if err != nil {
		return nil, err
	}
	// A link left behind by a re-issue or a reset is dead even before the
	// sweep deletes it.
	if r.State != Issued || r.LinkHash != lh {
		return nil, ErrLinkGone
	}
	return r, nil
}

// Setup is STEP 2, on the phone and without a login: the link, service ID,
// user ID and activation PIN must all match. A wrong try returns
// ErrSetupFailed, never saying which was wrong; the LinkTries-th wrong try
// kills the link. On success the token gets a new secret and the link stops
// working.
func (m *Manager) Setup(ctx context.Context, link, serviceID, userID, pin, clientIP string) (SetupResult, error) {
	lh := hashLink(link)
	now := m.Now()
	var owner User
	var pinHash string
	// argon2id is slow and bbolt has one writer: the PIN is checked between
	// a View and an Update, never inside a write transaction.
	err := m.store.View(ctx, func(tx store.Tx) error {
		r, err := linkOwner(tx, lh, now)
		if err != nil {
			return err
		}
		owner, pinHash = User{r.Service, r.User}, r.PINHash
		return nil
	})
	if err != nil {
		return SetupResult{}, err
	}
	// All three checks run every time and are combined without a branch,
	// so timing does not tell which one failed.
	ok := equalFixed(serviceID, owner.Service) & equalFixed(userID, owner.ID) & verifyPIN(pinHash, pin)

	var res SetupResult
	var sealed []byte
	if ok == 1 {
		secret := make([]byte, 20) // 160 bits: RFC 4226 R6
		if _, err := rand.Read(secret); err != nil {
			return SetupResult{}, fmt.Errorf("reading random secret: %w", err)
		}
		if sealed, err = m.sealer.Seal(secret, []byte(owner.key())); err != nil {
			return SetupResult{}, fmt.Errorf("sealing token secret: %w", err)
		}
		// Built before the link is spent, so a failure here leaves the
		// customer a link to try again with.
		if res, err = m.setupResult(owner, secret); err != nil {
			return SetupResult{}, err
		}
	}

	var outcome error
	err = m.store.Update(ctx, func(tx store.Tx) error {
		outcome = nil
		r, err := linkOwner(tx, lh, now)
		if err != nil {
			return err
		}
		// Same link means same issue, hence the same PIN hash that was
		// checked; a re-issue in between would have changed LinkHash.
		if r.Service != owner.Service || r.User != owner.ID || r.PINHash != pinHash {
			return ErrLinkGone
		}
		if ok != 1 {
			r.SetupTries++
			detail := fmt.Sprintf("wrong try %d of %d", r.SetupTries, m.cfg.LinkTries)
			if r.SetupTries >= m.cfg.LinkTries {
				if err := tx.Delete(store.SetupLinks, lh); err != nil {
					return err
				}
				r.LinkHash, r.LinkExpires, r.PINHash = "", time.Time{}, ""
				detail += "; setup link killed"
			}
			if err := save(tx, r); err != nil {
				return err
			}
			outcome = ErrSetupFailed
			return audit.Append(tx, auditRecord(now, audit.SetupFailed, owner, clientIP, actorCustomer, detail))
		}
		if err := tx.Delete(store.SetupLinks, lh); err != nil {
			return err
		}
		r.State = Initialised
		r.Secret = sealed
		// The PIN has done its job; a hash of a short PIN is only a liability.
		r.LinkHash, r.LinkExpires, r.PINHash, r.SetupTries = "", time.Time{}, "", 0
		if err := save(tx, r); err != nil {
			return err
		}
		return audit.Append(tx, auditRecord(now, audit.SetupDone, owner, clientIP, actorCustomer, ""))
	})
	if err != nil {
		return SetupResult{}, err
	}
	if outcome != nil {
		return SetupResult{}, outcome
	}
	return res, nil
}

// labelPart keeps a colon out of the otpauth label, where apps split
// issuer from account at the first one.
func labelPart(s string) string { return url.PathEscape(strings.ReplaceAll(s, ":", "-")) }

// queryEscape writes a space as %20: some token apps show a literal "+".
func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// setupResult builds the otpauth URI (Key URI Format) with the manager's
// period, digits and algorithm, so the app shows codes the gateway accepts.
func (m *Manager) setupResult(u User, secret []byte) (SetupResult, error) {
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	account := u.Service + "-" + u.ID
	uri := "otpauth://totp/" + labelPart(m.cfg.Issuer) + ":" + labelPart(account) +
		"?secret=" + b32 +
		"&issuer=" + queryEscape(m.cfg.Issuer) +
		"&algorithm=" + m.algo.String() +
		"&digits=" + strconv.Itoa(m.cfg.Digits) +
		"&period=" + strconv.Itoa(int(m.cfg.Period/time.Second))
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return SetupResult{}, fmt.Errorf("building otpauth URI: %w", err)
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return SetupResult{}, fmt.Errorf("drawing QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return SetupResult{}, fmt.Errorf("encoding QR code: %w", err)
	}
	return SetupResult{Secret: b32, URI: key.URL(), QRPNG: buf.Bytes(), Account: account}, nil
}

// CodeError is a refused code. errors.Is matches it against ErrInvalidCode,
// ErrReusedCode or ErrLocked according to its Outcome.
type CodeError struct {
	Outcome      Outcome
	AttemptsLeft int // after a wrong code
}

// Error says what the customer can do next, in plain English.
func (e *CodeError) Error() string {
	switch e.Outcome {
	case CodeInvalid:
		if e.AttemptsLeft == 1 {
			return ErrInvalidCode.Error() + "; 1 attempt left before the token is locked"
		}
		return fmt.Sprintf("%s; %d attempts left before the token is locked", ErrInvalidCode.Error(), e.AttemptsLeft)
	case CodeReused:
		return ErrReusedCode.Error()
	case CodeLocked:
		return ErrLocked.Error()
	}
	return "otpgate: one-time password refused"
}

// Is makes errors.Is(err, ErrInvalidCode) and friends work.
func (e *CodeError) Is(target error) bool {
	switch target {
	case ErrInvalidCode:
		return e.Outcome == CodeInvalid
	case ErrReusedCode:
		return e.Outcome == CodeReused
	case ErrLocked:
		return e.Outcome == CodeLocked
	}
	return false
}

// codeChecked writes the audit records of a code check made for purpose
// (activation, renewal) and returns the refusal the customer gets, nil for a
// right code, or noToken when the token was in no state to check; err is a
// store failure.
func codeChecked(tx store.Tx, c Check, u User, clientIP, purpose string, now time.Time, noToken error) (refusal, err error) {
	rec := func(ev audit.Event, detail string) audit.Record {
		return auditRecord(now, ev, u, clientIP, actorCustomer, detail)
	}
	switch c.Outcome {
	case CodeOK:
		return nil, audit.Append(tx, rec(audit.CodeOK, purpose))
	case CodeInvalid:
		return &CodeError{Outcome: CodeInvalid, AttemptsLeft: c.AttemptsLeft},
			audit.Append(tx, rec(audit.CodeInvalid, fmt.Sprintf("%s; %d attempts left", purpose, c.AttemptsLeft)))
	case CodeReused:
		return &CodeError{Outcome: CodeReused}, audit.Append(tx, rec(audit.CodeReused, purpose))
	case CodeLocked:
		if !c.JustLocked {
			return &CodeError{Outcome: CodeLocked}, audit.Append(tx, rec(audit.Refused, purpose+"; locked"))
		}
		if err := audit.Append(tx, rec(audit.CodeInvalid, purpose+"; 0 attempts left")); err != nil {
			return nil, err
		}
		return &CodeError{Outcome: CodeLocked}, audit.Append(tx, auditRecord(now, audit.Locked, u, clientIP, actorSystem, purpose))
	}
	return noToken, audit.Append(tx, rec(audit.Refused, purpose+"; "+noToken.Error()))
}

// spendCode checks code within tx for p (activation or renewal) and
// carries out what the check decided: its audit records, and the lock
// notice when a wrong code locked the customer (locked). It returns the
// token's record for a right code, or nil and the refusal the customer
// gets; noToken is the refusal for a token in no state to check.
func (m *Manager) spendCode(tx store.Tx, u User, code string, p Purpose, clientIP string, now time.Time, noToken error) (r *Record, refusal error, locked bool, err error) {
	purpose := map[Purpose]string{ForActivation: "activation", ForRenewal: "renewal"}[p]
	c, err := m.CheckInTx(tx, u, code, p, now)
	if err != nil {
		return nil, nil, false, err
	}
	if refusal, err = codeChecked(tx, c, u, clientIP, purpose, now, noToken); err != nil {
		return nil, nil, false, err
	}
	switch {
	case c.JustLocked:
		return nil, refusal, true, EnqueueLocked(tx, c.Record)
	case c.Outcome != CodeOK:
		return nil, refusal, false, nil
	}
	return c.Record, nil, false, nil
}

// Activate is STEP 3: the first right code from the phone makes the token
// active for Validity, and from then on the user's service requires OTP for
// all its users. The code's time step is spent. A wrong, reused or locked
// code returns a *CodeError; a token not set up yet, ErrNotInitialised.
func (m *Manager) Activate(ctx context.Context, u User, code, clientIP string) error {
	if !u.valid() {
		return ErrInvalidUser
	}
	now := m.Now()
	var outcome error
	var queued bool
	err := m.store.Update(ctx, func(tx store.Tx) error {
		r, refusal, locked, err := m.spendCode(tx, u, code, ForActivation, clientIP, now, ErrNotInitialised)
		outcome, queued = refusal, locked
		if err != nil || r == nil {
			return err
		}
		r.State, r.ActivatedAt, r.Expires, r.Reminded = Active, now, now.Add(m.cfg.Validity), time.Time{}
		if err := save(tx, r); err != nil {
			return err
		}
		if err := requireInTx(tx, u.Service, "customer:"+u.ID, now); err != nil {
			return err
		}
		if err := audit.Append(tx, auditRecord(now, audit.Activated, u, clientIP, actorCustomer, "expires "+r.Expires.Format(time.DateOnly))); err != nil {
			return err
		}
		queued = true
		return enqueue(tx, Notice{Event: "activated", User: u, Email: r.Email, Expires: r.Expires, At: now})
	})
	if err != nil {
		return err
	}
	if queued {
		m.kick()
	}
	return outcome
}
