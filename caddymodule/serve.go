package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

// confirmMarker is the path parameter of a confirmation posted at the
// operation's own URL: the bank's response to the released request then
// lands at that URL, where its relative links resolve as they would have.
const confirmMarker = ";otpgate="

// maxPath is the longest request path the gateway reads.
const maxPath = 8 << 10

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Before anything reads the path: every later decision (the confirm
	// marker, the gateway's pages, the rules, the login path) assumes the
	// bank splits and decodes it exactly as the gateway does.
	if escaped := r.URL.EscapedPath(); !g.exempt.Covers(escaped) {
		if err := policy.CheckPath(escaped); err != nil {
			return g.refuseAmbiguous(w, r, err)
		}
	}
	// Checked on the decoded path too: a lenient bank strips ;otpgate=… as
	// a path parameter and would execute the operation itself.
	if i := strings.Index(r.URL.Path, confirmMarker); i >= 0 {
		id := r.URL.Path[i+len(confirmMarker):]
		if j := strings.IndexAny(id, "/;"); j >= 0 {
			id = id[:j]
		}
		return g.serveConfirm(w, r, next, id)
	}
	if strings.HasPrefix(r.URL.Path, g.BasePath+"/") {
		return g.serveGateway(w, r, next)
	}
	// Reading a path the way lenient backends do costs time linear in its
	// length; no banking page needs a path this long.
	if len(r.URL.Path) > maxPath || len(r.URL.RawPath) > maxPath {
		return g.refuse(w, r, http.StatusRequestURITooLong, "bad_request", "request path over 8 KiB")
	}
	view := policyRequest(r)
	if !g.policy.Watches(view) {
		if handled, err := g.watchSession(w, r, next, view); handled {
			return err
		}
		return next.ServeHTTP(w, r)
	}
	body, err := g.readBody(r)
	if err != nil {
		return g.refuseBody(w, r, err)
	}
	m := g.policy.Classify(view, body)
	if m == nil {
		if handled, err := g.watchSession(w, r, next, view); handled {
			return err
		}
		return next.ServeHTTP(w, r)
	}
	return g.protect(w, r, next, m, body)
}

// refuseAmbiguous answers a request whose path backends could read in
// different ways: 400, saying what was ambiguous and what to send instead.
func (g *Gateway) refuseAmbiguous(w http.ResponseWriter, r *http.Request, err error) error {
	if ce := g.logger.Check(zap.InfoLevel, "ambiguous request path refused"); ce != nil {
		ce.Write(zap.String("method", r.Method), zap.String("reason", err.Error()), zap.String("client_ip", clientIP(r)))
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusBadRequest, map[string]any{"error": "ambiguous_path", "message": "otpgate: " + err.Error()})
	}
	return g.render(w, http.StatusBadRequest, pages.MessagePage{Common: g.common(w, r, ""), Status: http.StatusBadRequest,
		Title: "title_error", Body: "ambiguous_path", Args: []any{err.Error()}, Links: []pages.Link{{Href: g.Home, Text: "back_to_menu"}}})
}

func policyRequest(r *http.Request) *policy.Request {
	return &policy.Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Header: r.Header, NoBody: r.ContentLength == 0}
}

// formValue reads one field of an urlencoded body.
func formValue(body []byte, name string) string {
	q, _ := url.ParseQuery(string(body))
	return q.Get(name)
}

func isJSONBody(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/json"
}

// readBody buffers the body of a watched request, up to MaxBody, and puts
// it back so the request can still be passed on.
func (g *Gateway) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > g.MaxBody {
		return nil, caddyhttp.Error(http.StatusRequestEntityTooLarge, errors.New("body too large"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.MaxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > g.MaxBody {
		return nil, caddyhttp.Error(http.StatusRequestEntityTooLarge, errors.New("body too large"))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// refuseBody answers a readBody failure: 413 over the limit, else 400.
func (g *Gateway) refuseBody(w http.ResponseWriter, r *http.Request, err error) error {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode == http.StatusRequestEntityTooLarge {
		return g.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over the %d-byte limit on a protected path", g.MaxBody))
	}
	return g.refuse(w, r, http.StatusBadRequest, "bad_request", "reading request body: "+err.Error())
}

// hopHeaders are connection-level and never stored with an operation; the
// cookies are the confirming request's at release.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Cookie"}

// protect pauses a protected operation, or says what the customer must do
// first.
func (g *Gateway) protect(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, m *policy.Match, body []byte) error {
	log := g.logger.With(zap.String("rule", m.Rule.Name), zap.String("kind", string(m.Kind)), zap.String("method", r.Method), zap.String("path", challenge.RedactSessionIDs(r.URL.EscapedPath())))
	// What you see is what you confirm (policy/wysiwyc.go): a request that
	// cannot be read as the bank reads it is refused before anything is
	// looked up or stored; one with conflicting values is held showing none.
	switch m.Verdict {
	case policy.Exact:
	case policy.Refused:
		log.Warn("protected operation refused: its request cannot be read as the bank reads it", zap.Error(m.Err))
		return g.refuseUnshowable(w, r, m.Err)
	default:
		log.Warn("protected operation held with a doubt", zap.String("doubt", string(m.Verdict)), zap.Error(m.Err))
	}
	id, ok, err := g.identify(r)
	if err != nil {
		log.Error("identifying the customer", zap.Error(err))
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "store unavailable")
	}
	if !ok {
		log.Info("protected operation without a known customer session: refused")
		return g.refuse(w, r, http.StatusForbidden, "login_required", "protected operation without a known customer session")
	}
	header := r.Header.Clone()
	for _, h := range hopHeaders {
		header.Del(h)
	}
	for _, h := range strings.Split(r.Header.Get("Connection"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			header.Del(h)
		}
	}
	op := &challenge.Operation{
		Service: id.Service, User: id.User, Session: id.Session, ClientIP: clientIP(r),
		Rule: m.Rule.Name, Kind: string(m.Kind), Doubt: string(m.Verdict),
		Method: r.Method, RequestURI: r.URL.RequestURI(), Host: r.Host, Header: header, Body: body,
	}
	fields := m.Fields
	if m.Verdict == policy.Conflicting {
		// The bank may act on any of the values: none is shown, and the
		// audit records no displayed field.
		fields = nil
	}
	for _, f := range fields {
		op.Fields = append(op.Fields, challenge.Field{Name: f.Name, Label: f.Label, LabelEn: f.LabelEn, Value: f.Value})
	}
	log = log.With(zap.String("service", id.Service), zap.String("user", id.User))
	req, err := g.challenges.Pause(r.Context(), op)
	if err != nil {
		log.Error("pausing operation", zap.Error(err))
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "store unavailable")
	}
	switch req {
	case token.PassLegacy:
		log.Info("service does not require OTP: protected operation passed through unchanged")
		g.logErr(g.appendAudit(r, audit.Record{Event: audit.PassThrough, Service: id.Service, User: id.User, Kind: op.Kind, Rule: op.Rule,
			Request: op.LogRequest(), Digest: op.ComputeDigest(), Fields: op.FieldMap()}), "auditing legacy pass-through")
		r.Body = io.NopCloser(bytes.NewReader(body))
		return next.ServeHTTP(w, r)
	case token.NeedCode:
		log.Info("operation paused for a code", zap.String("challenge", op.ID))
		if wantsJSON(r) {
			return writeJSON(w, http.StatusUnauthorized, withDoubt(op, map[string]any{
				"error": "otp_required", "challenge": op.ID, "kind": op.Kind, "fields": op.Fields,
				"confirm_url": g.BasePath + "/confirm/" + op.ID, "expires": op.Expires,
			}))
		}
		return redirect(w, g.BasePath+"/confirm/"+op.ID)
	case token.NeedEnrolment:
		log.Info("OTP required but no active token: sent to enrolment")
		return g.toTokenPage(w, r, "enrollment_required")
	case token.NeedRenewal:
		log.Info("token expired: sent to renewal")
		return g.toTokenPage(w, r, "token_expired")
	default:
		log.Info("customer locked: operation refused")
		return g.refuse(w, r, http.StatusLocked, "locked", "customer locked after too many wrong codes")
	}
}

// refuseUnshowable answers a protected operation whose request cannot be
// read as the bank reads it: 400, with the policy's message saying what
// could not be read and what to send instead.
func (g *Gateway) refuseUnshowable(w http.ResponseWriter, r *http.Request, refusal error) error {
	if wantsJSON(r) {
		return writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unshowable_request", "message": refusal.Error()})
	}
	return g.render(w, http.StatusBadRequest, pages.MessagePage{Common: g.common(w, r, ""), Status: http.StatusBadRequest,
		Title: "title_error", Body: "unshowable_request", Args: []any{strings.TrimPrefix(refusal.Error(), "otpgate: ")},
		Links: []pages.Link{{Href: g.Home, Text: "back_to_menu"}}})
}

// withDoubt adds to a JSON view of op why its fields are not shown as sent,
// if they are not: "doubt" is the code, "doubt_message" the notice.
func withDoubt(op *challenge.Operation, v map[string]any) map[string]any {
	if op.Doubt != "" {
		v["doubt"], v["doubt_message"] = op.Doubt, pages.DoubtText(pages.English, op.Doubt)
	}
	return v
}

func (g *Gateway) toTokenPage(w http.ResponseWriter, r *http.Request, code string) error {
	if wantsJSON(r) {
		return writeJSON(w, http.StatusForbidden, map[string]any{"error": code, "token_url": g.BasePath + "/token"})
	}
	return redirect(w, g.BasePath+"/token")
}

func (g *Gateway) appendAudit(r *http.Request, rec audit.Record) error {
	rec.Time, rec.ClientIP, rec.Actor = g.tokens.Now(), clientIP(r), "customer"
	return g.store.Update(r.Context(), func(tx store.Tx) error { return audit.Append(tx, rec) })
}

func redirect(w http.ResponseWriter, to string) error {
	securityHeaders(w.Header())
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}
