package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/app"
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

// errBusy: reading a watched request's body would take the handler over
// MaxBuffered.
var errBusy = errors.New("request bodies being read are at max_buffered")

// readBody buffers the body of a watched request, up to MaxBody, and puts
// it back so the request can still be passed on. The memory it takes
// counts against MaxBuffered from before it is allocated until done is
// called, once the request has been answered.
func (g *Gateway) readBody(r *http.Request) (body []byte, done func(), ref *gate.Refusal) {
	done = func() {}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, done, nil
	}
	if r.ContentLength > g.MaxBody {
		return nil, done, gate.Refuse(gate.BodyTooLarge, errBodyTooLarge)
	}
	most := g.MaxBody
	if r.ContentLength >= 0 {
		most = r.ContentLength
	}
	held := &heldBody{budget: g.buffered}
	defer func() {
		// Also on a panic: counted bytes never given back would refuse
		// every later protected operation.
		if ref == nil && body != nil {
			return
		}
		held.giveBack()
	}()
	body, err := held.read(r.Body, most)
	switch {
	case errors.Is(err, errBusy):
		return nil, done, gate.Refuse(gate.Busy, err)
	case errors.Is(err, errBodyTooLarge):
		return nil, done, gate.Refuse(gate.BodyTooLarge, err)
	case err != nil:
		return nil, done, gate.Refuse(gate.BadRequest, fmt.Errorf("reading request body: %w", err))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, held.giveBack, nil
}

// bodyChunk is the most memory a body being read takes ahead of the bytes
// its client has sent: a client that declares a large body and sends it
// slowly holds no more of the budget than it has sent, plus one chunk.
const bodyChunk = 64 << 10

// bodyBudget counts the memory of the bodies a handler holds, up to limit.
type bodyBudget struct {
	used   atomic.Int64
	limit  int64
	warned atomic.Int64 // when the last warning was logged, Unix nanoseconds
}

// warn tells the operator, at most every 10 seconds, that requests are
// refused for want of room.
func (b *bodyBudget) warn(logger *zap.Logger) {
	now, last := time.Now().UnixNano(), b.warned.Load()
	if now-last < int64(10*time.Second) || !b.warned.CompareAndSwap(last, now) {
		return
	}
	logger.Warn("protected operations refused with 503: the request bodies being read fill max_buffered; raise max_buffered, or set the server's read_body timeout so that stalled uploads end",
		zap.Int64("buffered", b.used.Load()), zap.Int64("max_buffered", b.limit))
}

// take counts n more bytes, unless that would go over the limit.
func (b *bodyBudget) take(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

// heldBody is one body's memory, counted against a budget.
type heldBody struct {
	budget *bodyBudget
	taken  int64
}

// alloc counts n bytes, then allocates them.
func (h *heldBody) alloc(n int64) ([]byte, error) {
	if !h.budget.take(n) {
		return nil, errBusy
	}
	h.taken += n
	return make([]byte, n), nil
}

// free gives back the count of n bytes that are no longer used.
func (h *heldBody) free(n int64) {
	h.budget.used.Add(-n)
	h.taken -= n
}

// giveBack gives back everything counted.
func (h *heldBody) giveBack() { h.free(h.taken) }

// read reads r, a body of at most most bytes, a chunk at a time, each
// counted before it is allocated, and joins the chunks into one body
// (never nil). A body longer than most is errBodyTooLarge, found without
// counting: the byte beyond is read into no chunk.
func (h *heldBody) read(r io.Reader, most int64) ([]byte, error) {
	var chunks [][]byte
	var size int64
	for size < most {
		c, err := h.alloc(min(bodyChunk, most-size))
		if err != nil {
			return nil, err
		}
		n, err := fill(r, c)
		chunks, size = append(chunks, c[:n]), size+int64(n)
		if err == io.EOF {
			return h.join(chunks, size)
		}
		if err != nil {
			return nil, err
		}
	}
	var beyond [1]byte
	switch n, err := fill(r, beyond[:]); {
	case n > 0:
		return nil, errBodyTooLarge
	case err != io.EOF:
		return nil, err
	}
	return h.join(chunks, size)
}

// fill reads into b until it is full (nil) or the body ends (io.EOF, with
// the bytes read before it); any other error, such as a body cut short of
// its Content-Length (io.ErrUnexpectedEOF), is returned as it is.
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// join makes one body of the chunks, counted before it is allocated, and
// gives back the chunks' count.
func (h *heldBody) join(chunks [][]byte, size int64) ([]byte, error) {
	switch len(chunks) {
	case 0:
		return []byte{}, nil
	case 1:
		return chunks[0], nil
	}
	body, err := h.alloc(size)
	if err != nil {
		return nil, err
	}
	body = body[:0]
	var chunked int64
	for _, c := range chunks {
		body = append(body, c...)
		chunked += int64(cap(c))
	}
	h.free(chunked)
	return body, nil
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
