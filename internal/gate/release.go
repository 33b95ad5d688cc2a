package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/session"
)

// CSRFCookie holds the random value the gateway's forms are signed with
// (signed double submit). It is the gateway's own: a released request never
// carries it to the bank.
const CSRFCookie = "otpgate_csrf"

// Outbound is the request a released operation sends to the bank.
type Outbound struct {
	Method string
	// URL is parsed from RequestURI, the escaped path and query as the
	// customer sent them, byte for byte.
	URL        *url.URL
	RequestURI string
	Host       string
	Header     http.Header
	Body       []byte
}

// OutboundOf is what releasing op sends, confirmed by a request with the
// headers confirming: the stored method, URI, host, headers and body, byte
// for byte, with the confirming request's cookies. Those belong to the same
// customer session as the stored request's (the operation is bound to it)
// but are current, so a bank that rotated the session ID meanwhile still
// accepts them; the gateway's CSRF cookie is left out. Nothing else sent
// with the confirmation is added.
func OutboundOf(op *challenge.Operation, confirming http.Header) (Outbound, error) {
	u, err := url.ParseRequestURI(op.RequestURI)
	if err != nil {
		return Outbound{}, fmt.Errorf("%w: stored request URI unparsable: %v", challenge.ErrNotSent, err)
	}
	out := Outbound{Method: op.Method, URL: u, RequestURI: op.RequestURI, Host: op.Host, Header: op.Header.Clone(), Body: op.Body}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	// Rebuilt from the pairs every server reads alike: a quoted or
	// malformed pair that Go's parser skips could name another session to
	// the bank.
	if line := session.StrictCookieLine(confirming, CSRFCookie); line != "" {
		out.Header.Set("Cookie", line)
	}
	return out, nil
}

// Send hands out to the bank, once, and returns the bank's status (0 if it
// gave none) and what failed, if anything; an error wrapping
// challenge.ErrNotSent says nothing reached the bank. It never retries.
type Send func(ctx context.Context, out Outbound) (status int, err error)

// Released is what a release did.
type Released struct {
	Action Action
	// Status is the bank's answer to a forwarded operation, 0 if it gave
	// none. When a release is refused with a Status, the customer has
	// already been sent part of the bank's answer.
	Status int
}

// Release carries out op, just confirmed by r: it revokes the customer's
// token, or sends the stored request to the bank with send. It runs, and
// audits what the bank did as far as the gateway knows, whether or not the
// customer's connection stays open: the code was accepted and the
// operation consumed. A failure is refused with upstream_not_sent (the
// operation was not executed) or upstream_failed (the outcome is unknown:
// check the transaction history before trying again), never retried.
func (g *Gate) Release(ctx context.Context, op *challenge.Operation, r Request, send Send) (Released, *Refusal) {
	ctx = context.WithoutCancel(ctx)
	log := g.log.With(zap.String("challenge", op.ID), zap.String("digest", op.Digest))
	start := time.Now()
	audited := func(status int, err error) {
		g.obs.Released(op.Kind, ReleaseOutcome(status, err), time.Since(start))
		if aerr := g.challenges.RecordRelease(ctx, op, r.ClientIP, status, err); aerr != nil {
			log.Error("auditing release", zap.Error(aerr))
		}
	}
	switch ActionOf(op) {
	case Revoke:
		if err := g.tokens.Revoke(ctx, (&Customer{Service: op.Service, User: op.User}).tokenUser(), r.ClientIP); err != nil {
			audited(0, fmt.Errorf("%w: revoking the token: %w", challenge.ErrNotSent, err))
			return Released{Action: Revoke}, RefusalFor(err)
		}
		audited(http.StatusOK, nil)
		log.Info("token revoked")
		return Released{Action: Revoke}, nil
	case Forward:
	default:
		err := fmt.Errorf("%w: the operation has no action the gateway knows (%q)", challenge.ErrNotSent, op.Action)
		audited(0, err)
		log.Error("released operation not carried out", zap.Error(err))
		return Released{}, Refuse(ChallengeGone, err)
	}
	out, err := OutboundOf(op, r.Header)
	status := 0
	if err == nil {
		status, err = send(ctx, out)
	}
	if err == nil {
		if status == 0 {
			status = http.StatusOK
		}
		audited(status, nil)
		log.Info("operation released", zap.Int("upstream_status", status))
		return Released{Action: Forward, Status: status}, nil
	}
	audited(status, err)
	rel := Released{Action: Forward, Status: status}
	log = log.With(zap.Error(err))
	switch {
	case status != 0:
		log.Error("bank's answer to a released operation cut off; not retried", zap.Int("upstream_status", status))
		return rel, Refuse(UpstreamFailed, err)
	case errors.Is(err, challenge.ErrNotSent):
		log.Error("released operation not sent, so not executed; not retried")
		return rel, Refuse(UpstreamNotSent, err)
	}
	log.Error("bank gave no answer to a released operation: outcome unknown; not retried")
	return rel, Refuse(UpstreamFailed, err)
}
