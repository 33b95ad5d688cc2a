package caddymodule

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/token"
)

// serveGateway answers the gateway's own pages under BasePath.
func (g *Gateway) serveGateway(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest := strings.TrimPrefix(r.URL.Path, g.BasePath+"/")
	switch {
	case strings.HasPrefix(rest, "assets/"):
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "public, max-age=86400")
		http.StripPrefix(g.BasePath+"/assets/", pages.Assets()).ServeHTTP(w, r)
		return nil
	case strings.HasPrefix(rest, "confirm/"):
		id, action, _ := strings.Cut(strings.TrimPrefix(rest, "confirm/"), "/")
		switch {
		case action == "" && r.Method == http.MethodGet:
			return g.confirmPage(w, r, id, "", 0, http.StatusOK)
		case action == "" && r.Method == http.MethodPost:
			return g.serveConfirm(w, r, next, id)
		case action == "cancel" && r.Method == http.MethodPost:
			return g.cancel(w, r, id)
		}
	case rest == "token" && r.Method == http.MethodGet:
		return g.tokenPage(w, r, http.StatusOK, "", "")
	case rest == "token/revoke" && r.Method == http.MethodPost:
		return g.revoke(w, r, next)
	case strings.HasPrefix(rest, "token/") && r.Method == http.MethodPost:
		return g.tokenAction(w, r, strings.TrimPrefix(rest, "token/"))
	case strings.HasPrefix(rest, "setup/") && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		return g.setup(w, r, strings.TrimPrefix(rest, "setup/"))
	}
	return g.refuse(w, r, http.StatusNotFound, "not_found", "no such gateway page")
}

// serveConfirm checks a code for challenge id and, if it is right,
// releases the paused operation.
func (g *Gateway) serveConfirm(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, id string) error {
	if r.Method != http.MethodPost {
		// A reload of the page the bank answered at: the operation is done,
		// show its challenge (which will say so) rather than the bank's URL.
		return redirect(w, g.BasePath+"/confirm/"+id)
	}
	who, ok, err := g.customer(w, r, "confirmation")
	if !ok {
		return err
	}
	in, err := g.input(r, who.Session)
	if err != nil {
		return g.inputError(w, r, err)
	}
	code, ok := g.otpInput(in)
	if !ok {
		if wantsJSON(r) {
			return writeJSON(w, http.StatusBadRequest, map[string]any{"error": "otp_format", "message": errOTPFormat.Error()})
		}
		return g.confirmPage(w, r, id, "otp_format", 0, http.StatusBadRequest)
	}
	res, err := g.challenges.Confirm(r.Context(), id, who.Session, code, clientIP(r))
	log := g.logger.With(zap.String("challenge", id), zap.String("service", who.Service), zap.String("user", who.User))
	switch {
	case errors.Is(err, challenge.ErrGone):
		return g.refuse(w, r, http.StatusGone, "challenge_gone", "confirmation of an unknown, expired or finished challenge")
	case err != nil:
		log.Error("confirming operation", zap.Error(err))
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "store unavailable")
	}
	switch res.Check.Outcome {
	case token.CodeOK:
		log.Info("right code: releasing operation", zap.String("digest", res.Op.Digest))
		return g.release(w, r, next, res.Op)
	case token.CodeInvalid:
		log.Info("wrong code", zap.Int("attempts_left", res.Check.AttemptsLeft))
		if wantsJSON(r) {
			return writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_otp", "attempts_left": res.Check.AttemptsLeft})
		}
		return g.confirmPage(w, r, id, "invalid_otp", res.Check.AttemptsLeft, http.StatusOK)
	case token.CodeReused:
		log.Info("code of a spent time step")
		return g.refuse(w, r, http.StatusConflict, "otp_reused", "code of a spent time step")
	case token.CodeLocked:
		log.Warn("customer locked; paused operation discarded")
		return g.refuse(w, r, http.StatusLocked, "locked", "customer locked after too many wrong codes")
	default:
		log.Info("no active token at confirmation; paused operation discarded")
		return g.toTokenPage(w, r, "enrollment_required")
	}
}

// customer identifies the customer of a gateway page. When it cannot, it
// has already answered (503, or 403 login_required) and ok is false; err is
// then what the page handler returns. what names the page for the log.
func (g *Gateway) customer(w http.ResponseWriter, r *http.Request, what string) (who, bool, error) {
	id, ok, err := g.identify(r)
	if err != nil {
		return who{}, false, g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "identifying customer: "+err.Error())
	}
	if !ok {
		return who{}, false, g.refuse(w, r, http.StatusForbidden, "login_required", what+" without a known customer session")
	}
	return id, true, nil
}

// confirmPage shows a paused operation, read from the store: what the
// customer sees is what they confirm.
func (g *Gateway) confirmPage(w http.ResponseWriter, r *http.Request, id, errID string, attemptsLeft, status int) error {
	who, ok, err := g.customer(w, r, "confirm page")
	if !ok {
		return err
	}
	op, err := g.challenges.Get(r.Context(), id, who.Session)
	if errors.Is(err, challenge.ErrGone) {
		return g.refuse(w, r, http.StatusGone, "challenge_gone", "confirm page of an unknown, expired or finished challenge")
	}
	if err != nil {
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "loading challenge: "+err.Error())
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, withDoubt(op, map[string]any{"challenge": op.ID, "kind": op.Kind, "fields": op.Fields,
			"method": op.Method, "path": pathOf(op.RequestURI), "expires": op.Expires}))
	}
	st, err := g.tokens.Status(r.Context(), tokenUser(who))
	if err != nil {
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "loading token: "+err.Error())
	}
	p := pages.ConfirmPage{
		Common: g.common(w, r, who.Session), ChallengeID: op.ID, Kind: op.Kind, Method: op.Method, Path: pathOf(op.RequestURI),
		Expires: op.Expires, AttemptsLeft: attemptsLeft, Error: errID, RenewOpen: st.RenewOpen, RenewDaysLeft: st.DaysLeft,
		Action: confirmAction(op), Doubt: op.Doubt,
	}
	for _, f := range op.Fields {
		p.Fields = append(p.Fields, pages.Field{Label: f.Label, LabelEn: f.LabelEn, Value: f.Value})
	}
	return g.render(w, status, p)
}

func (g *Gateway) cancel(w http.ResponseWriter, r *http.Request, id string) error {
	who, ok, err := g.customer(w, r, "cancel")
	if !ok {
		return err
	}
	if _, err := g.input(r, who.Session); err != nil {
		return g.inputError(w, r, err)
	}
	err = g.challenges.Cancel(r.Context(), id, who.Session, clientIP(r))
	switch {
	case errors.Is(err, challenge.ErrGone):
		return g.refuse(w, r, http.StatusGone, "challenge_gone", "cancel of an unknown, expired or finished challenge")
	case err != nil:
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "cancelling: "+err.Error())
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, map[string]any{"status": "cancelled"})
	}
	return g.message(w, r, http.StatusOK, "title_cancelled", "cancelled", pages.Link{Href: g.Home, Text: "back_to_menu"})
}

// errCSRF and errContentType are input refusals.
var (
	errCSRF        = errors.New("otpgate: the form's CSRF token is missing or wrong; reload the page and try again")
	errContentType = errors.New("otpgate: send a form (application/x-www-form-urlencoded) or JSON (application/json)")
)

// input reads a gateway form: JSON (Content-Type application/json, which
// a cross-site form cannot send) or a form carrying the CSRF token of
// session. Only JSON strings are read: a number or any other type is left
// out, so that each page refuses it as a missing or malformed field rather
// than reading a code or PIN whose leading zeros JSON has dropped.
func (g *Gateway) input(r *http.Request, session string) (map[string]string, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(nil, r.Body, 64<<10)
	switch ct {
	case "application/json":
		var raw map[string]any
		if err := json.NewDecoder(body).Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("otpgate: request body is not a JSON object: %v", err)
		}
		in := make(map[string]string, len(raw))
		for k, v := range raw {
			if v, ok := v.(string); ok {
				in[k] = v
			}
		}
		return in, nil
	case "application/x-www-form-urlencoded", "multipart/form-data":
		r.Body = body
		if err := r.ParseMultipartForm(64 << 10); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return nil, fmt.Errorf("otpgate: reading form: %v", err)
		}
		if !g.csrfOK(r, session, r.PostForm.Get("csrf")) {
			return nil, errCSRF
		}
		in := make(map[string]string, len(r.PostForm))
		for k := range r.PostForm {
			in[k] = r.PostForm.Get(k)
		}
		return in, nil
	}
	return nil, errContentType
}

func (g *Gateway) inputError(w http.ResponseWriter, r *http.Request, err error) error {
	switch {
	case errors.Is(err, errCSRF):
		return g.refuse(w, r, http.StatusForbidden, "csrf", err.Error())
	case errors.Is(err, errContentType):
		return g.refuse(w, r, http.StatusUnsupportedMediaType, "bad_request", err.Error())
	}
	return g.refuse(w, r, http.StatusBadRequest, "bad_request", err.Error())
}

// csrfCookie holds a random value; a form's token is its MAC together with
// the customer's session (signed double submit), so a token works only in
// the browser and login it was made for.
const csrfCookie = "otpgate_csrf"

func (g *Gateway) csrfToken(w http.ResponseWriter, r *http.Request, session string) string {
	c, err := r.Cookie(csrfCookie)
	value := ""
	if err == nil && len(c.Value) >= 22 {
		value = c.Value
	} else {
		b := make([]byte, 16)
		rand.Read(b)
		value = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
		r.AddCookie(&http.Cookie{Name: csrfCookie, Value: value})
	}
	return base64.RawURLEncoding.EncodeToString(g.sealer.MAC("csrf", value, session))
}

func (g *Gateway) csrfOK(r *http.Request, session, got string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || got == "" {
		return false
	}
	want := base64.RawURLEncoding.EncodeToString(g.sealer.MAC("csrf", c.Value, session))
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func (g *Gateway) common(w http.ResponseWriter, r *http.Request, session string) pages.Common {
	return pages.Common{Lang: pages.Negotiate(r.Header.Get("Accept-Language")), Base: g.BasePath, CSRF: g.csrfToken(w, r, session), Issuer: g.Issuer}
}

func (g *Gateway) render(w http.ResponseWriter, status int, p pages.Page) error {
	securityHeaders(w.Header())
	return pages.Render(w, status, p)
}

func (g *Gateway) message(w http.ResponseWriter, r *http.Request, status int, title, body string, links ...pages.Link) error {
	return g.render(w, status, pages.MessagePage{Common: g.common(w, r, ""), Status: status, Title: title, Body: body, Links: links})
}

// refuse answers a refusal: JSON {"error": code} to API clients, a page in
// the customer's language to browsers. logMsg is for the operator's log.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, status int, code, logMsg string) error {
	if ce := g.logger.Check(zap.DebugLevel, "refused"); ce != nil {
		ce.Write(zap.Int("status", status), zap.String("error", code), zap.String("reason", logMsg), zap.String("path", challenge.RedactSessionIDs(r.URL.EscapedPath())))
	}
	if wantsJSON(r) {
		return writeJSON(w, status, map[string]any{"error": code, "message": "otpgate: " + pages.T(pages.English, code)})
	}
	link := pages.Link{Href: g.Home, Text: "back_to_menu"}
	switch code {
	case "login_required", "login_unreadable":
		link.Text = "to_login"
		if g.Identity != nil && g.Identity.Source == "login_form" {
			link.Href = g.Identity.LoginPath
		}
	case "enrollment_required", "token_expired", "locked", "link_gone":
		link = pages.Link{Href: g.BasePath + "/token", Text: "to_token_page"}
	}
	return g.message(w, r, status, "title_error", code, link)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// securityHeaders are on every gateway answer: never framed, never cached,
// never leaking the URL (it may hold a challenge or setup link).
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pages.CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

// wantsJSON: API clients ask for JSON; browsers ask for HTML.
func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

// otpInput is the "otp" field of a gateway form, if it has the only form a
// token app shows: exactly the configured number of ASCII digits (spaces
// around them are dropped). Anything else, such as a wrong length or
// fullwidth or Arabic-Indic digits, is a format error rather than a wrong
// code, so it never counts towards the lock.
func (g *Gateway) otpInput(in map[string]string) (string, bool) {
	code := strings.TrimSpace(in["otp"])
	if len(code) != g.tokens.Config().Digits {
		return "", false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return "", false
		}
	}
	return code, true
}

func pathOf(requestURI string) string {
	p, _, _ := strings.Cut(requestURI, "?")
	return p
}

// confirmAction is where the confirm form posts: the operation's own path
// with the confirm marker, so that the bank's answer lands at a URL where
// its relative links resolve. The action must stay on this origin: a path
// that a browser would read as another host ("//host/…", "/\host/…") or
// that is not absolute falls back to the gateway's own confirm URL (the
// empty action), as does the gateway's own revocation, which has no bank
// page at all.
func confirmAction(op *challenge.Operation) string {
	p := pathOf(op.RequestURI)
	if op.Rule == revokeRule || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, `/\`) {
		return ""
	}
	return p + confirmMarker + op.ID
}

func tokenUser(w who) token.User { return token.User{Service: w.Service, ID: w.User} }
