package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/bodybuf"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/policy"
)

// maxPath is the longest request path the gateway reads.
const maxPath = 8 << 10

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Every audit record written for the request names its client.
	r = r.WithContext(app.WithClient(r.Context(), clientIP(r), r.UserAgent()))
	// Before anything reads the path: every later decision (the confirm
	// marker, the gateway's pages, the rules, the login path) assumes the
	// bank splits and decodes it exactly as the gateway does.
	if escaped := r.URL.EscapedPath(); !g.exempt.Covers(escaped) {
		if err := policy.CheckPath(escaped); err != nil {
			return g.refuse(w, r, gate.RefuseSaying(gate.AmbiguousPath, "otpgate: "+err.Error(), err))
		}
	}
	// Checked on the decoded path too: a lenient bank strips ;otpgate=… as
	// a path parameter and would execute the operation itself.
	if id, ok := gate.MarkedChallenge(r.URL.Path); ok {
		return g.serveConfirm(w, r, next, id)
	}
	// Reading a path the way lenient backends do costs time linear in its
	// length; no banking page needs a path this long.
	if len(r.URL.Path) > maxPath || len(r.URL.RawPath) > maxPath {
		return g.refuse(w, r, gate.Refuse(gate.PathTooLong, nil))
	}
	// Whatever letter case or trailing slash it is written with, the
	// revocation's path is the gateway's alone: never passed to the bank,
	// never held without the checks of its form.
	if g.revokePath.Matches(r.URL.EscapedPath()) {
		return g.revoke(w, r)
	}
	if strings.HasPrefix(r.URL.Path, g.BasePath+"/") {
		return g.serveGateway(w, r, next)
	}
	p := &policy.Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Header: r.Header, NoBody: r.ContentLength == 0}
	if !g.policy.Watches(p) {
		return g.pass(w, r, next)
	}
	body, done, ref := g.readBody(r)
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	defer done()
	m := g.policy.Classify(p, body)
	if m == nil {
		return g.pass(w, r, next)
	}
	d, op, ref := g.flow.Hold(r.Context(), func() (*gate.Customer, error) { return g.identify(r) }, m, g.view(r, body))
	switch d {
	case gate.Held:
		return g.held(w, r, op)
	case gate.PassThrough:
		r.Body = io.NopCloser(bytes.NewReader(body))
		return next.ServeHTTP(w, r)
	}
	return g.refuse(w, r, ref)
}

// view is what the flow reads of r; body is r's body if it was read.
func (g *Gateway) view(r *http.Request, body []byte) gate.Request {
	return gate.Request{Method: r.Method, URI: r.URL.RequestURI(), Host: r.Host, Header: r.Header, Body: body,
		HasBody: r.ContentLength != 0, ClientIP: clientIP(r)}
}

// errBodyTooLarge: a watched request's body is over MaxBody.
var errBodyTooLarge = errors.New("request body over the limit on a protected path")

// readBody buffers the body of a watched request, up to MaxBody, and puts
// it back so the request can still be passed on. Its memory counts
// against MaxBuffered until done is called, once the request has been
// answered.
func (g *Gateway) readBody(r *http.Request) (body []byte, done func(), ref *gate.Refusal) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, func() {}, nil
	}
	if r.ContentLength > g.MaxBody {
		return nil, nil, gate.Refuse(gate.BodyTooLarge, errBodyTooLarge)
	}
	most := g.MaxBody
	if r.ContentLength >= 0 {
		most = r.ContentLength
	}
	body, done, err := g.buffered.Read(r.Body, most)
	switch {
	case errors.Is(err, bodybuf.ErrBusy):
		if g.buffered.Warn(10 * time.Second) {
			g.logger.Warn("protected operations refused with 503: the request bodies being read fill max_buffered; raise max_buffered, or set the server's read_body timeout so that stalled uploads end",
				zap.Int64("buffered", g.buffered.Used()), zap.Int64("max_buffered", g.buffered.Limit()))
		}
		return nil, nil, gate.Refuse(gate.Busy, err)
	case errors.Is(err, bodybuf.ErrTooLarge):
		return nil, nil, gate.Refuse(gate.BodyTooLarge, errBodyTooLarge)
	case err != nil:
		return nil, nil, gate.Refuse(gate.BadRequest, fmt.Errorf("reading request body: %w", err))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, done, nil
}

// revoke holds the customer's revocation of their token, the gateway's own
// token_management operation: confirmed with a code like any transfer.
// Only a JSON content type exempts its form from the CSRF token (input): a
// cross-site page cannot send one without a CORS preflight.
func (g *Gateway) revoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodGet {
		// The address bar after the revocation's form: the token page.
		return redirect(w, g.BasePath+"/token")
	}
	if r.Method != http.MethodPost {
		return g.refuse(w, r, gate.Refuse(gate.NotFound, nil))
	}
	who, ref := g.customer(r)
	if ref == nil {
		_, ref = g.input(r, who.Session)
	}
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	op, ref := g.flow.HoldRevoke(r.Context(), who, g.view(r, nil))
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	return g.held(w, r, op)
}
