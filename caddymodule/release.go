package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/pages"
)

// releaseTimeout bounds a release. It runs detached from the customer's
// connection (SECURITY.md 30), so something else must end it if the bank
// hangs; a minute is longer than any legacy banking page takes to answer.
// A variable only so that tests can shorten it.
var releaseTimeout = 60 * time.Second

// Causes that end a release early. Both wrap context.Canceled, the one
// error on which reverse_proxy gives up at once: it neither retries
// (lb_retries, lb_try_duration) nor counts a failure against the bank, and
// answers 499, which the release's recorder keeps from the customer.
var (
	errSecondAttempt  = fmt.Errorf("otpgate: a layer below the gateway tried to send a released operation a second time; stopped before it was written: %w", context.Canceled)
	errReleaseTimeout = fmt.Errorf("otpgate: the bank did not answer a released operation in time: %w", context.Canceled)
)

// release hands the stored request to the next handler (the reverse proxy
// to the bank), once. The operation was consumed in the same transaction
// that accepted the code, so the gateway itself never sends it twice; the
// layers below it might (Go's transport re-sends a "replayable" request
// after a reused connection fails, reverse_proxy's lb_retries and
// lb_try_duration try again), so every connection obtained for it is
// counted and a second one is closed before the request is written on it.
// An upstream failure is reported to the customer and audited, never
// retried.
func (g *Gateway) release(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, op *challenge.Operation) error {
	if op.Rule == revokeRule {
		return g.releaseRevoke(w, r, op)
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	defer cancel(nil)
	ctx, stop := context.WithTimeoutCause(ctx, releaseTimeout, errReleaseTimeout)
	defer stop()
	u, err := url.ParseRequestURI(op.RequestURI)
	if err != nil {
		return g.releaseFailed(w, r, op, 0, fmt.Errorf("%w: stored request URI unparsable: %v", challenge.ErrNotSent, err))
	}
	guard := &onceGuard{cancel: cancel}
	rel := r.Clone(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: guard.gotConn}))
	rel.Method = op.Method
	rel.URL = u
	rel.RequestURI = op.RequestURI
	rel.Host = op.Host
	rel.Header = op.Header.Clone()
	// The confirming request's cookies: the same customer session as the
	// stored request's (the challenge is bound to it), but current, so a
	// bank that rotated the session ID meanwhile still accepts it.
	for _, line := range r.Header.Values("Cookie") {
		if kept := withoutCookie(line, csrfCookie); kept != "" {
			rel.Header.Add("Cookie", kept)
		}
	}
	rel.Body = io.NopCloser(bytes.NewReader(op.Body))
	rel.GetBody = nil
	rel.ContentLength = int64(len(op.Body))
	rel.TransferEncoding = nil
	rel.Form, rel.PostForm, rel.MultipartForm = nil, nil, nil

	rec := &statusRecorder{ResponseWriter: w, ctx: ctx}
	upErr := next.ServeHTTP(rec, rel)
	if upErr == nil && rec.swallowed {
		// reverse_proxy gave up on a cause of ours and answered 499.
		upErr = context.Cause(ctx)
	}
	if upErr == nil {
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		g.logErr(g.challenges.RecordRelease(context.WithoutCancel(r.Context()), op, clientIP(r), rec.status, nil), "auditing release")
		g.logger.Info("operation released", zap.String("challenge", op.ID), zap.String("digest", op.Digest), zap.Int("upstream_status", rec.status))
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(upErr, cause) {
		upErr = fmt.Errorf("%w (%w)", upErr, cause)
	}
	// Nothing was sent only if no connection was ever obtained and the
	// proxy says it could not dial: a transport that reports no
	// connections (one without httptrace) then still counts as "unknown".
	var dialErr reverseproxy.DialError
	if guard.conns.Load() == 0 && errors.As(upErr, &dialErr) {
		upErr = fmt.Errorf("%w: %w", challenge.ErrNotSent, upErr)
	}
	return g.releaseFailed(w, r, op, rec.status, upErr)
}

// releaseFailed audits a release the bank did not answer normally and tells
// the customer what is known: not executed, or an unknown outcome to check
// in the transaction history before trying again. status is the bank's
// answer if it had begun (the customer has it already).
func (g *Gateway) releaseFailed(w http.ResponseWriter, r *http.Request, op *challenge.Operation, status int, upErr error) error {
	ctx := context.WithoutCancel(r.Context())
	g.logErr(g.challenges.RecordRelease(ctx, op, clientIP(r), status, upErr), "auditing release")
	notSent := errors.Is(upErr, challenge.ErrNotSent)
	log := g.logger.With(zap.String("challenge", op.ID), zap.String("digest", op.Digest), zap.Error(upErr))
	switch {
	case status != 0:
		log.Error("bank's answer to a released operation cut off; not retried", zap.Int("upstream_status", status))
		return upErr
	case notSent:
		log.Error("released operation not sent: the bank could not be reached; not retried")
	default:
		log.Error("bank gave no answer to a released operation: outcome unknown; not retried")
	}
	code, outcome := "upstream_failed", "unknown"
	if notSent {
		code, outcome = "upstream_not_sent", "not_executed"
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusBadGateway, map[string]any{"error": code, "outcome": outcome, "message": "otpgate: " + pages.T(pages.English, code)})
	}
	return g.message(w, r, http.StatusBadGateway, "title_"+code, code, pages.Link{Href: g.Home, Text: "back_to_menu"})
}

// onceGuard counts the connections obtained for one release. The first
// carries the request; on any later one the request would be sent again,
// so the guard closes that connection before anything is written on it
// and cancels the release. GotConn runs after a connection is obtained and
// before the request is written: for HTTP/1 in Transport.getConn, for
// HTTP/2 in RoundTripOpt before each attempt. Closing an HTTP/2 connection
// also ends other requests on it; this happens only when a layer below
// tries to send a released operation twice.
type onceGuard struct {
	conns  atomic.Int32
	cancel context.CancelCauseFunc
}

func (o *onceGuard) gotConn(info httptrace.GotConnInfo) {
	if o.conns.Add(1) > 1 {
		info.Conn.Close()
		o.cancel(errSecondAttempt)
	}
}

// releaseRevoke carries out the gateway's own token_management operation.
func (g *Gateway) releaseRevoke(w http.ResponseWriter, r *http.Request, op *challenge.Operation) error {
	ctx := context.WithoutCancel(r.Context())
	u := tokenUser(who{Service: op.Service, User: op.User})
	if err := g.tokens.Revoke(ctx, u, clientIP(r)); err != nil {
		g.logErr(g.challenges.RecordRelease(ctx, op, clientIP(r), 0, fmt.Errorf("%w: revoking the token: %w", challenge.ErrNotSent, err)), "auditing release")
		return g.tokenError(w, r, err)
	}
	g.logErr(g.challenges.RecordRelease(ctx, op, clientIP(r), http.StatusOK, nil), "auditing release")
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, map[string]any{"status": "revoked"})
	}
	return g.tokenPage(w, r, http.StatusOK, "", "revoked")
}

// withoutCookie removes one cookie from a Cookie header line.
func withoutCookie(line, name string) string {
	parts := strings.Split(line, ";")
	kept := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(strings.TrimSpace(p), "=")
		if k != name {
			kept = append(kept, strings.TrimSpace(p))
		}
	}
	return strings.Join(kept, "; ")
}

// statusRecorder notes the status the bank answered with. It keeps from
// the customer the 499 that reverse_proxy writes when the release's own
// context ends (errSecondAttempt, errReleaseTimeout): that is no answer of
// the bank's, and the customer is told the outcome instead.
type statusRecorder struct {
	http.ResponseWriter
	ctx       context.Context
	status    int
	swallowed bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code == 499 && s.ctx.Err() != nil {
		s.swallowed = true
		return
	}
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
