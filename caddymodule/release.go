package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
)

// releaseTimeout bounds a release. It runs detached from the customer's
// connection (SECURITY.md 30), so something else must end it if the bank
// hangs; a minute is longer than any legacy banking page takes to answer.
// A variable only so that tests can shorten it.
var releaseTimeout = 60 * time.Second

// releaseMargin is what a confirmation's session lock must last beyond
// releaseTimeout when the release starts: the confirmation's own writes
// and the bank's answer being carried out.
const releaseMargin = 15 * time.Second

// unknownOutcomeHold is how long logins naming the sessions of a release
// whose outcome is unknown (the bank did not answer in time, or the answer
// was cut off) wait: the bank may still be working on it, and a
// login that switched the session meanwhile would have it booked to
// another customer (gate.SessionLocks). A variable only so that tests can
// shorten it.
var unknownOutcomeHold = 2 * time.Minute

// Causes that end a release early. Both wrap context.Canceled, the one
// error on which reverse_proxy gives up at once: it neither retries
// (lb_retries, lb_try_duration) nor counts a failure against the bank, and
// answers 499, which the release's recorder keeps from the customer.
var (
	errSecondAttempt  = fmt.Errorf("otpgate: a layer below the gateway tried to send a released operation a second time; stopped before it was written: %w", context.Canceled)
	errReleaseTimeout = fmt.Errorf("otpgate: the bank did not answer a released operation in time: %w", context.Canceled)
)

// release carries out op, just confirmed by r (gate.Release): the
// customer gets the bank's own answer, the token page after the built-in
// revocation, or what is known of a failure. unknown reports a release
// the bank may still be carrying out.
func (g *Gateway) release(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, op *challenge.Operation) (unknown bool, err error) {
	rel, ref := g.flow.Release(r.Context(), op, g.view(r, nil), g.sender(w, r, next))
	return ref != nil && ref.Code == gate.UpstreamFailed, g.released(w, r, rel, ref)
}

// released answers the customer after release.
func (g *Gateway) released(w http.ResponseWriter, r *http.Request, rel gate.Released, ref *gate.Refusal) error {
	switch {
	case ref != nil && rel.Status != 0:
		// The customer has part of the bank's answer already.
		return ref
	case ref != nil && rel.Action == gate.Revoke:
		return g.tokenError(w, r, ref)
	case ref != nil:
		return g.refuse(w, r, ref)
	case rel.Action != gate.Revoke:
		return nil
	case wantsJSON(r):
		return writeJSON(w, http.StatusOK, map[string]any{"status": "revoked"})
	}
	return g.tokenPage(w, r, http.StatusOK, nil, "revoked")
}

// sender hands a released request to next (the reverse proxy to the bank)
// as a clone of r, the confirming request, writing the bank's answer to w.
// The operation was consumed in the same transaction that accepted the
// code, so the gateway itself never sends it twice; the layers below it
// might (Go's transport re-sends a "replayable" request after a reused
// connection fails, reverse_proxy's lb_retries and lb_try_duration try
// again), so every connection obtained for it is counted and a second one
// is closed before the request is written on it.
func (g *Gateway) sender(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) gate.Send {
	return func(ctx context.Context, out gate.Outbound) (int, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		ctx, stop := context.WithTimeoutCause(ctx, releaseTimeout, errReleaseTimeout)
		defer stop()
		guard := &onceGuard{cancel: cancel}
		rel := r.Clone(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: guard.gotConn}))
		rel.Method, rel.URL, rel.RequestURI, rel.Host, rel.Header = out.Method, out.URL, out.RequestURI, out.Host, out.Header
		rel.Body = io.NopCloser(bytes.NewReader(out.Body))
		rel.GetBody = nil
		rel.ContentLength = int64(len(out.Body))
		rel.TransferEncoding = nil
		rel.Form, rel.PostForm, rel.MultipartForm = nil, nil, nil

		rec := &statusRecorder{ResponseWriter: w, ctx: ctx}
		err := next.ServeHTTP(rec, rel)
		if err == nil && rec.swallowed {
			// reverse_proxy gave up on a cause of ours and answered 499.
			err = context.Cause(ctx)
		}
		if err == nil {
			return rec.status, nil
		}
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		// Nothing was sent only if no connection was ever obtained and the
		// proxy says it could not dial: a transport that reports no
		// connections (one without httptrace) then still counts as
		// "unknown".
		var dialErr reverseproxy.DialError
		if guard.conns.Load() == 0 && errors.As(err, &dialErr) {
			err = fmt.Errorf("%w: %w", challenge.ErrNotSent, err)
		}
		return rec.status, err
	}
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
