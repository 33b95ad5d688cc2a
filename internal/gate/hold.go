package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

// Decision is what becomes of a protected request.
type Decision int

// Decisions of Hold. The zero value refuses.
const (
	// Refused: the request is answered with the Refusal, and goes no further.
	Refused Decision = iota
	// Held: the request is stored, waiting for a code.
	Held
	// PassThrough: the customer's service does not require OTP and the
	// customer has no token: the request goes to the bank unchanged, as
	// before the gateway, and the audit trail says so.
	PassThrough
)

// RevokeRule names the built-in revocation in the audit trail and the log.
// No configured rule may take it, nor any name that starts with "otpgate"
// (CheckRules).
const RevokeRule = "otpgate_revoke"

// hopHeaders are connection-level and never stored with an operation; the
// cookies are the confirming request's at release.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Cookie"}

// Hold decides what becomes of r, a request that m, a rule of the bank's,
// protects. identify tells who sent it (nil when the customer is unknown);
// it is called only for a request the gateway can read as the bank does,
// since one it cannot is refused before anything is looked up or stored.
// One with conflicting values is held showing none. The decision and what
// follows from it — the held operation, or the audit record of a
// pass-through or a refusal — are written in one transaction.
//
// For Held, op is the stored operation; for PassThrough, the request as it
// passes (its digest is in the audit record).
func (g *Gate) Hold(ctx context.Context, identify func() (*Customer, error), m *policy.Match, r Request) (Decision, *challenge.Operation, *Refusal) {
	log := g.log.With(zap.String("rule", m.Rule.Name), zap.String("kind", string(m.Kind)), zap.String("method", r.Method),
		zap.String("path", challenge.RedactSessionIDs(r.Path(), g.cookieName())))
	switch m.Verdict {
	case policy.Exact:
	case policy.Refused:
		log.Warn("protected operation refused: its request cannot be read as the bank reads it", zap.Error(m.Err))
		g.obs.Decided(string(m.Kind), OutcomeRefused)
		return Refused, nil, RefuseSaying(UnshowableRequest, m.Err.Error(), m.Err)
	default:
		log.Warn("protected operation held with a doubt", zap.String("doubt", string(m.Verdict)), zap.Error(m.Err))
	}
	who, err := identify()
	if err != nil {
		log.Error("identifying the customer", zap.Error(err))
		g.obs.Decided(string(m.Kind), OutcomeRefused)
		return Refused, nil, Refuse(StoreUnavailable, err)
	}
	op := snapshot(r, g.cookieName())
	op.Rule, op.Kind, op.Action, op.Doubt = m.Rule.Name, string(m.Kind), string(Forward), string(m.Verdict)
	// The page is built from what is held alone: the rule's wording and
	// file display go with the operation.
	op.Title, op.TitleEn, op.ShowFile = m.Rule.Title, m.Rule.TitleEn, m.Rule.ShowFile
	// With conflicting values the bank may act on any of them: none is
	// shown, and the audit records no displayed field.
	if m.Verdict != policy.Conflicting {
		for _, f := range m.Fields {
			op.Fields = append(op.Fields, challenge.Field{Name: f.Name, Label: f.Label, LabelEn: f.LabelEn, Value: f.Value, Format: f.Format})
		}
	}
	d, ref := g.hold(ctx, who, op, log)
	g.obs.Decided(op.Kind, outcomeOf(d))
	if d == Refused {
		return Refused, nil, ref
	}
	return d, op, nil
}

// HoldRevoke holds the customer's revocation of their own token, the
// gateway's built-in token_management operation: it needs a code like any
// transfer, and never reaches the bank. A customer without a token to
// revoke is refused, whether or not their service requires OTP.
func (g *Gate) HoldRevoke(ctx context.Context, who *Customer, r Request) (*challenge.Operation, *Refusal) {
	op := snapshot(r, g.cookieName())
	op.Rule, op.Kind, op.Action = RevokeRule, string(policy.TokenManagement), string(Revoke)
	log := g.log.With(zap.String("rule", RevokeRule), zap.String("kind", op.Kind))
	d, ref := g.hold(ctx, who, op, log)
	g.obs.Decided(op.Kind, outcomeOf(d))
	if d != Held {
		return nil, ref
	}
	return op, nil
}

// snapshot is what a held operation keeps of r: method, URI, host and body
// as received, and the headers without the hop-by-hop ones and cookies.
func snapshot(r Request, cookie string) *challenge.Operation {
	header := r.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	for _, h := range hopHeaders {
		header.Del(h)
	}
	for _, h := range strings.Split(r.Header.Get("Connection"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			header.Del(h)
		}
	}
	return &challenge.Operation{ClientIP: r.ClientIP, Method: r.Method, RequestURI: r.URI, Host: r.Host, Header: header, Body: r.Body,
		SessionCookie: cookie}
}

// maxRounds bounds how often hold decides again when the customer's token
// changes between the challenge store's decision and its own: twice is a
// race already, a third time a customer (or an attacker with their session)
// toggling their token in a loop.
const maxRounds = 3

// hold decides for op, sent by who, and holds it or audits why not.
// challenge.Pause decides and stores in one transaction when a code is
// needed; otherwise nothing is written there, and hold decides again in a
// transaction of its own that writes the audit record of what it decided.
// Should that decision be "code needed" after all, the token changed in
// between and the round starts again.
func (g *Gate) hold(ctx context.Context, who *Customer, op *challenge.Operation, log *zap.Logger) (Decision, *Refusal) {
	if who == nil {
		log.Info("protected operation without a known customer session: refused")
		rec := g.record(op, audit.Refused, "no known customer session")
		if err := g.store.Update(ctx, func(tx store.Tx) error { return audit.Append(tx, rec) }); err != nil {
			log.Error("auditing a refusal", zap.Error(err))
		}
		return Refused, Refuse(LoginRequired, nil)
	}
	op.Service, op.User, op.Session = who.Service, who.User, who.Session
	log = log.With(zap.String("service", who.Service), zap.String("user", who.User))
	for range maxRounds {
		req, err := g.challenges.Pause(ctx, op)
		switch {
		case err != nil:
			log.Error("holding operation", zap.Error(err))
			return Refused, Refuse(StoreUnavailable, err)
		case req == token.NeedCode:
			log.Info("operation held for a code", zap.String("challenge", op.ID))
			return Held, nil
		}
		d, ref, err := g.decideAgain(ctx, who, op)
		switch {
		case err != nil:
			log.Error("auditing a protected operation", zap.Error(err))
			return Refused, Refuse(StoreUnavailable, err)
		case d == Held:
			continue
		case d == PassThrough:
			log.Info("service does not require OTP: protected operation passed through unchanged")
		default:
			log.Info("protected operation refused", zap.String("error", ref.Code))
		}
		return d, ref
	}
	log.Error("the customer's token kept changing while an operation was held")
	return Refused, Refuse(StoreUnavailable, errors.New("token state changed on every try"))
}

// decideAgain decides for op when challenge.Pause found no code needed,
// and writes the audit record of the decision in the same transaction.
// Held means a code is needed now after all: nothing is written, and the
// caller holds op.
func (g *Gate) decideAgain(ctx context.Context, who *Customer, op *challenge.Operation) (Decision, *Refusal, error) {
	var d Decision
	var ref *Refusal
	err := g.store.Update(ctx, func(tx store.Tx) error {
		req, err := g.tokens.RequirementInTx(tx, who.tokenUser(), g.tokens.Now())
		if err != nil {
			return err
		}
		var rec audit.Record
		d, ref, rec = g.decide(op, req)
		if d == Held {
			return nil
		}
		return audit.Append(tx, rec)
	})
	return d, ref, err
}

// decide maps what the customer's token requires to the decision for op,
// and the audit record that says so. Revoking needs a token to revoke, so
// the built-in revocation never passes through.
func (g *Gate) decide(op *challenge.Operation, req token.Requirement) (Decision, *Refusal, audit.Record) {
	refused := func(code, why string) (Decision, *Refusal, audit.Record) {
		return Refused, Refuse(code, nil), g.record(op, audit.Refused, why)
	}
	switch req {
	case token.NeedCode:
		return Held, nil, audit.Record{}
	case token.PassLegacy:
		if ActionOf(op) == Forward {
			return PassThrough, nil, g.record(op, audit.PassThrough, "")
		}
		return refused(EnrollmentRequired, "no token to revoke")
	case token.NeedEnrolment:
		return refused(EnrollmentRequired, "OTP required but no active token")
	case token.NeedRenewal:
		return refused(TokenExpired, "token expired")
	case token.IsLocked:
		return refused(Locked, "customer locked after too many wrong codes")
	}
	return refused(StoreUnavailable, fmt.Sprintf("no decision (requirement %d)", req))
}

// record is the audit record of op's decision.
func (g *Gate) record(op *challenge.Operation, ev audit.Event, detail string) audit.Record {
	rec := audit.Record{Time: g.tokens.Now(), Event: ev, Service: op.Service, User: op.User, ClientIP: op.ClientIP,
		Actor: "customer", Kind: op.Kind, Rule: op.Rule, Request: op.LogRequest(), Digest: op.ComputeDigest(), Detail: detail}
	if ev == audit.PassThrough {
		rec.Fields = op.FieldMap()
	}
	return rec
}
