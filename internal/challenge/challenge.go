// Package challenge holds paused operations: the whole request a customer
// sent, kept until they confirm it with a code, cancel it, or it expires.
// A held request is sealed at rest (held.go): its headers and body carry
// transaction passwords and Authorization values, and nothing of it is
// readable in the database.
//
// Confirm is the heart of the gateway: in one store transaction it finds the
// operation, checks it belongs to the confirming session, checks the code
// (spending its time step or counting a failure), and consumes the
// operation. An operation is therefore released at most once, whatever
// double submits, reloads, concurrent requests or crashes happen.
package challenge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

// Field is one value the customer is shown and confirms.
type Field struct {
	Name    string `json:"name"`
	Label   string `json:"label,omitempty"`
	LabelEn string `json:"label_en,omitempty"`
	Value   string `json:"value"`
	// Format is how the confirm page shows Value (policy.Field.Format).
	Format string `json:"format,omitempty"`
}

// Operation is a paused request.
//
// Doubt, when set, says why Fields are not the request's values as sent, as
// a policy.Verdict code: "conflicting_values" (a shown field has several
// values the bank may choose among, so no field is kept) or
// "escaped_characters" (values holding characters that display misleadingly
// are kept escaped). The confirm page and its JSON view say so.
type Operation struct {
	ID       string  `json:"id"`
	Service  string  `json:"service"`
	User     string  `json:"user"`
	Session  string  `json:"session"` // the session handle of the customer who held it (gate.Customer.Session: a login's ID)
	ClientIP string  `json:"client_ip,omitempty"`
	Rule     string  `json:"rule"`
	Kind     string  `json:"kind"`
	Action   string  `json:"action,omitempty"` // what confirming it does (gate.Action)
	Fields   []Field `json:"fields,omitempty"`
	Doubt    string  `json:"doubt,omitempty"` // see Operation
	// Title and TitleEn name the operation in the bank's own wording
	// (policy.Rule.Title), and ShowFile says how its transfer file is
	// summarised: kept with the operation, so that its confirm page comes
	// from what was held, whatever the rules are by then.
	Title    string              `json:"title,omitempty"`
	TitleEn  string              `json:"title_en,omitempty"`
	ShowFile *policy.FileDisplay `json:"show_file,omitempty"`
	Created  time.Time           `json:"created"`
	Expires  time.Time           `json:"expires"`

	// The request as received, to be released byte for byte.
	Method     string      `json:"method"`
	RequestURI string      `json:"request_uri"` // escaped path and query as received
	Host       string      `json:"host"`
	Header     http.Header `json:"header"` // without hop-by-hop headers and cookies
	Body       []byte      `json:"body,omitempty"`
	Digest     string      `json:"digest"` // see Digest
	// SessionCookie is the bank's session cookie name: session IDs in path
	// parameters named after it are redacted from what is logged.
	SessionCookie string `json:"session_cookie,omitempty"`
}

// ComputeDigest is the SHA-256 over the request's method, URI, host, headers
// (sorted) and body: what the audit trail records as "the request that was
// confirmed and released".
func (op *Operation) ComputeDigest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", op.Method, op.RequestURI, op.Host)
	names := make([]string, 0, len(op.Header))
	for k := range op.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range op.Header[k] {
			fmt.Fprintf(h, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintf(h, "\n%d\n", len(op.Body))
	h.Write(op.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// FieldMap is the shown fields by name, for audit records.
func (op *Operation) FieldMap() map[string]string {
	if len(op.Fields) == 0 {
		return nil
	}
	m := make(map[string]string, len(op.Fields))
	for _, f := range op.Fields {
		m[f.Name] = f.Value
	}
	return m
}

// Errors of Get, Confirm and Cancel.
var (
	// ErrGone: the challenge is unknown, expired, already confirmed or
	// cancelled, or belongs to another session. Only the session that held
	// it is told which (a *GoneError, see Fate): a stranger learns nothing
	// about other customers' challenges.
	ErrGone = errors.New("otpgate: the operation expired or was already done; start it again")
)

// Manager keeps paused operations.
type Manager struct {
	store  store.Store
	sealer *seal.Sealer
	tokens *token.Manager
	cfg    Config
	// Now is the clock; tests replace it.
	Now func() time.Time

	// unsealed is DropUnsealed's progress.
	unsealed struct {
		sync.Mutex
		after string
		done  bool
	}
	// expiring is AuditExpired's progress: the last index it read.
	expiring struct {
		sync.Mutex
		after string
	}
}

// New returns a Manager that keeps operations in s sealed by sealer (the
// sealer of the TOTP secrets) and decides with tokens.
func New(s store.Store, sealer *seal.Sealer, tokens *token.Manager, cfg Config) (*Manager, error) {
	if sealer == nil {
		return nil, errors.New("challenge: no sealer: held operations are never stored in the clear")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Manager{store: s, sealer: sealer, tokens: tokens, cfg: cfg, Now: time.Now}, nil
}

// Pause decides, for a protected operation, what the customer's token state
// requires and, if it is a code, stores op (filling ID, times and digest)
// sealed, making room under the customer's caps (Config) by discarding
// their oldest held operations. The decision and the write are one
// transaction, so a token revoked concurrently cannot leave a paused
// operation behind it.
//
// The decision is taken first in a read-only snapshot, so that an
// operation that needs no code is never written. The transaction that
// decides again then writes the sealed request, when it fits in one store
// value (every ordinary form), as one chunk (store.PutChunked): a hold is
// one durable write. A larger request (a payroll file) is staged in chunks
// first, each in a write of its own, and made visible by that transaction.
func (m *Manager) Pause(ctx context.Context, op *Operation) (token.Requirement, error) {
	id, err := newID()
	if err != nil {
		return token.RequirementUnknown, err
	}
	now := m.Now()
	op.ID, op.Created, op.Expires = id, now, now.Add(m.cfg.Lifetime)
	op.Digest = op.ComputeDigest()
	u := token.User{Service: op.Service, ID: op.User}
	req := token.RequirementUnknown
	err = m.store.View(ctx, func(tx store.Tx) error {
		var err error
		req, err = m.tokens.RequirementInTx(tx, u, now)
		return err
	})
	if err != nil || req != token.NeedCode {
		return req, err
	}
	sealed, err := m.seal(op)
	if err != nil {
		return token.RequirementUnknown, err
	}
	entry := heldEntry{ID: id, Expires: op.Expires, Size: len(sealed), Kind: op.Kind, Rule: op.Rule, Digest: op.Digest}
	staged := len(sealed) > store.MaxValueSize
	write := func(tx store.Tx) error { return store.PutChunked(tx, store.Pending, id, sealed, m.cfg.Lifetime) }
	if staged {
		if write, err = m.stage(ctx, id, sealed); err != nil {
			return token.RequirementUnknown, err
		}
	}
	req, err = m.commitHold(ctx, u, op, entry, now, write)
	if errors.Is(err, store.ErrTooLarge) && !staged {
		// The request fits in a value but not beside everything else the
		// hold writes (large shown fields in its audit record, discards):
		// nothing was written, so stage it, which leaves the transaction
		// only its header.
		if write, err = m.stage(ctx, id, sealed); err != nil {
			return token.RequirementUnknown, err
		}
		req, err = m.commitHold(ctx, u, op, entry, now, write)
	}
	if err != nil {
		return token.RequirementUnknown, err
	}
	return req, nil
}

// stage writes the sealed request id in chunks, each in a write of its
// own, and returns what makes it visible inside the hold's transaction.
func (m *Manager) stage(ctx context.Context, id string, sealed []byte) (func(store.Tx) error, error) {
	st, err := store.StageChunked(ctx, m.store, store.Pending, id, sealed, m.cfg.Lifetime)
	if err != nil {
		return nil, fmt.Errorf("storing the held operation: %w", err)
	}
	return st.Commit, nil
}

// commitHold decides again for op and, if a code is needed, holds it in
// one transaction: the customer's index (and the discards the caps ask
// for), the sealed request (write), its fate and its audit record.
func (m *Manager) commitHold(ctx context.Context, u token.User, op *Operation, entry heldEntry, now time.Time, write func(store.Tx) error) (token.Requirement, error) {
	req := token.RequirementUnknown
	err := m.store.Update(ctx, func(tx store.Tx) error {
		var err error
		req, err = m.tokens.RequirementInTx(tx, u, now)
		if err != nil || req != token.NeedCode {
			// Staged chunks, if any, are never committed and expire.
			return err
		}
		if err := m.hold(tx, op, entry, now); err != nil {
			return err
		}
		if err := write(tx); err != nil {
			return err
		}
		if err := m.setFate(tx, op, fateHeld, now); err != nil {
			return err
		}
		return audit.Append(tx, audit.Record{Time: now, Event: audit.Challenge, Service: op.Service, User: op.User,
			ClientIP: op.ClientIP, Actor: "customer", Kind: op.Kind, Rule: op.Rule, Request: op.LogRequest(),
			Digest: op.Digest, Fields: op.FieldMap()})
	})
	return req, err
}

func newID() (string, error) {
	b := make([]byte, idBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random challenge ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// idBytes is the randomness of a challenge ID, written as 24 characters of
// unpadded base64url.
const idBytes = 18

// validID reports whether id is written as newID writes IDs. Anything else
// is unknown without a lookup, and never reaches the store's other keys of
// the bucket (the customers' indexes).
func validID(id string) bool {
	if len(id) != base64.RawURLEncoding.EncodedLen(idBytes) {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// load reads and opens the operation id for session within tx.
func (m *Manager) load(tx store.Tx, id, session string, now time.Time) (*Operation, error) {
	if !validID(id) {
		return nil, ErrGone
	}
	v, err := store.GetChunked(tx, store.Pending, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, gone(tx, id, session, now)
	}
	if err != nil {
		return nil, err
	}
	op, err := m.open(id, v)
	if err != nil {
		return nil, err
	}
	if !now.Before(op.Expires) || op.Session != session {
		return nil, gone(tx, id, session, now)
	}
	return op, nil
}

// Get returns the paused operation id for the session that created it.
func (m *Manager) Get(ctx context.Context, id, session string) (*Operation, error) {
	var op *Operation
	err := m.store.View(ctx, func(tx store.Tx) error {
		var err error
		op, err = m.load(tx, id, session, m.Now())
		return err
	})
	return op, err
}

// Result of a confirmation.
type Result struct {
	Check token.Check
	// Op is the operation to release; set only when Check.Outcome is CodeOK.
	Op *Operation
}

// Confirm checks code for the challenge id in one transaction. On a right
// code the operation is consumed and returned for release; on a wrong one a
// failure is counted, and when that locks the user the operation is
// discarded (it must be submitted again) and the lock notice is queued in
// the same transaction. A reused code leaves both as they are.
func (m *Manager) Confirm(ctx context.Context, id, session, code, clientIP string) (Result, error) {
	now := m.Now()
	var res Result
	err := m.store.Update(ctx, func(tx store.Tx) error {
		res = Result{}
		op, err := m.load(tx, id, session, now)
		if err != nil {
			return err
		}
		c, err := m.tokens.CheckInTx(tx, token.User{Service: op.Service, ID: op.User}, code, token.ForOperation, now)
		if err != nil {
			return err
		}
		res.Check = c
		rec := audit.Record{Time: now, Service: op.Service, User: op.User, ClientIP: clientIP, Actor: "customer",
			Kind: op.Kind, Rule: op.Rule, Request: op.LogRequest(), Digest: op.Digest}
		switch c.Outcome {
		case token.CodeOK:
			rec.Event, rec.Fields = audit.CodeOK, op.FieldMap()
			res.Op = op
			if err := m.drop(tx, op); err != nil {
				return err
			}
			if err := m.setFate(tx, op, FateDone, now); err != nil {
				return err
			}
		case token.CodeReused:
			rec.Event = audit.CodeReused
		case token.CodeInvalid:
			rec.Event, rec.Detail = audit.CodeInvalid, fmt.Sprintf("attempts left %d", c.AttemptsLeft)
		case token.CodeLocked, token.CodeNoToken:
			rec.Event = audit.CodeInvalid
			if c.Outcome == token.CodeNoToken {
				rec.Detail = "no active token"
			}
			// A locked user's operation is discarded: after the failure
			// limit the customer must submit it again.
			if err := m.drop(tx, op); err != nil {
				return err
			}
		default:
			return fmt.Errorf("challenge: code check outcome %v", c.Outcome)
		}
		if err := audit.Append(tx, rec); err != nil {
			return err
		}
		if !c.JustLocked {
			return nil
		}
		if err := token.EnqueueLocked(tx, c.Record); err != nil {
			return err
		}
		return audit.Append(tx, audit.Record{Time: now, Event: audit.Locked, Service: op.Service, User: op.User,
			ClientIP: clientIP, Actor: "system", Detail: "too many wrong codes; pending operation discarded"})
	})
	if err == nil && res.Check.JustLocked && m.tokens.Kick != nil {
		m.tokens.Kick()
	}
	return res, err
}

// Cancel discards a paused operation at its customer's request.
func (m *Manager) Cancel(ctx context.Context, id, session, clientIP string) error {
	now := m.Now()
	return m.store.Update(ctx, func(tx store.Tx) error {
		op, err := m.load(tx, id, session, now)
		if err != nil {
			return err
		}
		if err := m.drop(tx, op); err != nil {
			return err
		}
		if err := m.setFate(tx, op, FateCancelled, now); err != nil {
			return err
		}
		return audit.Append(tx, audit.Record{Time: now, Event: audit.Cancelled, Service: op.Service, User: op.User,
			ClientIP: clientIP, Actor: "customer", Kind: op.Kind, Rule: op.Rule, Digest: op.Digest})
	})
}

// ErrNotSent marks a release of which nothing reached the bank (no
// connection to it could be made, or the operation is the gateway's own and
// failed): the operation was not executed.
var ErrNotSent = errors.New("nothing reached the bank")

// RecordRelease writes the outcome of handing a released operation to the
// bank: its digest and fields, and what the bank did as far as the gateway
// knows. status is the bank's own answer, 0 if it gave none; upstreamErr
// is the failure, if any. A failure without an answer is recorded as an
// unknown outcome (the bank may have executed it), unless it wraps
// ErrNotSent.
func (m *Manager) RecordRelease(ctx context.Context, op *Operation, clientIP string, status int, upstreamErr error) error {
	now := m.Now()
	rec := audit.Record{Time: now, Event: audit.Released, Service: op.Service, User: op.User, ClientIP: clientIP,
		Actor: "customer", Kind: op.Kind, Rule: op.Rule, Request: op.LogRequest(), Digest: op.Digest,
		Fields: op.FieldMap(), Detail: fmt.Sprintf("upstream status %d", status)}
	switch {
	case upstreamErr == nil:
	case errors.Is(upstreamErr, ErrNotSent):
		rec.Event, rec.Detail = audit.ReleaseError, "not executed: "+upstreamErr.Error()
	case status != 0:
		rec.Event, rec.Detail = audit.ReleaseError, fmt.Sprintf("upstream status %d, then failed; not retried: %v", status, upstreamErr)
	default:
		rec.Event, rec.Detail = audit.ReleaseError, "outcome unknown, not retried: "+upstreamErr.Error()
	}
	return m.store.Update(ctx, func(tx store.Tx) error {
		if errors.Is(upstreamErr, ErrNotSent) {
			if err := m.setFate(tx, op, FateNotSent, now); err != nil {
				return err
			}
		}
		return audit.Append(tx, rec)
	})
}
