package gate

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/token"
)

// ConfirmMarker is the path parameter of a confirmation posted at the
// operation's own URL: the bank's response to the released request then
// lands at that URL, where its relative links resolve as they would have.
const ConfirmMarker = ";otpgate="

// MarkedChallenge returns the challenge ID that path (decoded) confirms with
// ConfirmMarker, if it carries the marker anywhere: a lenient bank would
// strip ";otpgate=…" as a path parameter and execute the operation itself,
// so such a path is always a confirmation, never passed on.
func MarkedChallenge(path string) (string, bool) {
	i := strings.Index(path, ConfirmMarker)
	if i < 0 {
		return "", false
	}
	id := path[i+len(ConfirmMarker):]
	if j := strings.IndexAny(id, "/;"); j >= 0 {
		id = id[:j]
	}
	return id, true
}

// ConfirmAt is where the confirm form of op posts: the operation's own path
// with ConfirmMarker, so that the bank's answer lands at a URL where its
// relative links resolve. It is "" (the gateway's own confirm URL) for an
// operation that has no page at the bank (the built-in revocation) and for
// a path a browser would not read as a path on this origin ("//host/…",
// "/\host/…", a relative path).
func ConfirmAt(op *challenge.Operation) string {
	p, _, _ := strings.Cut(op.RequestURI, "?")
	if ActionOf(op) != Forward || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
		return ""
	}
	return p + ConfirmMarker + op.ID
}

// errOTPFormat refuses a code that is not the digits a token app shows.
var errOTPFormat = errors.New("otpgate: enter the digits the token app shows")

// Code reads raw, a code as the customer entered it, if it has the only
// form a token app shows: exactly the configured number of ASCII digits
// (spaces around them are dropped). Anything else, such as a wrong length
// or fullwidth or Arabic-Indic digits, is refused as a format error before
// it is checked, so it never counts towards the lock.
func (g *Gate) Code(raw string) (string, *Refusal) {
	code := strings.TrimSpace(raw)
	if len(code) != g.tokens.Config().Digits {
		return "", g.Refuse(OTPFormat, errOTPFormat)
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return "", g.Refuse(OTPFormat, errOTPFormat)
		}
	}
	return code, nil
}

// Operation is the held operation id of who's session, to show before it
// is confirmed.
func (g *Gate) Operation(ctx context.Context, who *Customer, id string) (*challenge.Operation, *Refusal) {
	op, err := g.challenges.Get(ctx, id, who.Session)
	if err != nil {
		return nil, g.RefusalFor(err)
	}
	return op, nil
}

// Confirm checks raw, the code who entered for the held operation id, and
// returns the operation to release when it is right. Checking the code and
// consuming the operation are one transaction (challenge.Confirm), so an
// operation is released at most once. A wrong code is refused with the
// attempts left (InvalidOTP, its cause a *token.CodeError); the failure
// that locks the customer discards the operation.
func (g *Gate) Confirm(ctx context.Context, who *Customer, id, raw, clientIP string) (*challenge.Operation, *Refusal) {
	code, ref := g.Code(raw)
	if ref != nil {
		return nil, ref
	}
	// A code received whole is checked whole, whether or not the customer
	// waits for the answer: hanging up must neither spare a wrong code the
	// count nor stop the lock (its notice is queued in the same
	// transaction). The answer itself is lost with the connection.
	ctx = context.WithoutCancel(ctx)
	log := g.log.With(zap.String("challenge", id), zap.String("service", who.Service), zap.String("user", who.User))
	res, err := g.challenges.Confirm(ctx, id, who.Session, code, clientIP)
	if err != nil {
		if !errors.Is(err, challenge.ErrGone) {
			log.Error("confirming operation", zap.Error(err))
		}
		return nil, g.RefusalFor(err)
	}
	if r, ok := CodeResults[res.Check.Outcome]; ok {
		g.obs.CodeChecked(r)
	}
	switch c := res.Check; c.Outcome {
	case token.CodeOK:
		if res.Op == nil {
			break
		}
		log.Info("right code: releasing operation", zap.String("digest", res.Op.Digest))
		return res.Op, nil
	case token.CodeInvalid:
		log.Info("wrong code", zap.Int("attempts_left", c.AttemptsLeft))
		return nil, g.Refuse(InvalidOTP, &token.CodeError{Outcome: token.CodeInvalid, AttemptsLeft: c.AttemptsLeft})
	case token.CodeReused:
		log.Info("code of a spent time step")
		return nil, g.Refuse(OTPReused, nil)
	case token.CodeLocked:
		log.Warn("customer locked; held operation discarded")
		return nil, g.Refuse(Locked, nil)
	case token.CodeNoToken:
		log.Info("no active token at confirmation; held operation discarded")
		return nil, g.Refuse(EnrollmentRequired, nil)
	}
	log.Error("code check without an outcome the gateway knows", zap.Int("outcome", int(res.Check.Outcome)))
	return nil, g.Refuse(StoreUnavailable, errors.New("code check without a known outcome"))
}

// Cancel discards the held operation id at who's request.
func (g *Gate) Cancel(ctx context.Context, who *Customer, id, clientIP string) *Refusal {
	if err := g.challenges.Cancel(ctx, id, who.Session, clientIP); err != nil {
		return g.RefusalFor(err)
	}
	return nil
}
