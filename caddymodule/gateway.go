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
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/internal/zengin"
	"github.com/otpgate/otpgate/policy"
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
			return g.confirmPage(w, r, id, nil, http.StatusOK)
		case action == "" && r.Method == http.MethodPost:
			return g.serveConfirm(w, r, next, id)
		case action == "cancel" && r.Method == http.MethodPost:
			return g.cancel(w, r, id)
		case action == "cancel" && r.Method == http.MethodGet:
			// The address bar after cancelling: the page says what became of it.
			return redirect(w, g.BasePath+"/confirm/"+id)
		case action == "file" && r.Method == http.MethodGet:
			return g.filePage(w, r, id)
		}
	case rest == "token" && r.Method == http.MethodGet:
		return g.tokenPage(w, r, http.StatusOK, nil, "")
	case strings.HasPrefix(rest, "token/") && r.Method == http.MethodPost:
		return g.tokenAction(w, r, strings.TrimPrefix(rest, "token/"))
	case strings.HasPrefix(rest, "token/") && r.Method == http.MethodGet && tokenActions[strings.TrimPrefix(rest, "token/")]:
		// A reload of a token form's answer, a bookmark, a restored tab:
		// the token page, never a bare 404.
		return redirect(w, g.BasePath+"/token")
	case strings.HasPrefix(rest, "setup/") && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		return g.setup(w, r, strings.TrimPrefix(rest, "setup/"))
	}
	return g.refuse(w, r, gate.Refuse(gate.NotFound, nil))
}

// held answers a request the flow holds for a code: the confirm page for
// browsers, 401 naming the challenge for API clients.
func (g *Gateway) held(w http.ResponseWriter, r *http.Request, op *challenge.Operation) error {
	if wantsJSON(r) {
		return writeJSON(w, http.StatusUnauthorized, g.withFile(r, op, withDoubt(jsonLang(r), op, map[string]any{
			"error": "otp_required", "challenge": op.ID, "kind": op.Kind, "fields": op.Fields,
			"confirm_url": g.BasePath + "/confirm/" + op.ID, "expires": op.Expires,
		})))
	}
	return redirect(w, g.BasePath+"/confirm/"+op.ID)
}

// withDoubt adds to a JSON view of op why its fields are not shown as sent,
// if they are not: "doubt" is the code, "doubt_message" the notice.
func withDoubt(lang pages.Lang, op *challenge.Operation, v map[string]any) map[string]any {
	if op.Doubt != "" {
		v["doubt"], v["doubt_message"] = op.Doubt, pages.DoubtText(lang, op.Doubt)
	}
	return v
}

// serveConfirm checks a code for challenge id and, if it is right,
// releases the held operation.
func (g *Gateway) serveConfirm(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, id string) error {
	if r.Method != http.MethodPost {
		// A reload of the page the bank answered at: the operation is done,
		// show its challenge (which will say so) rather than the bank's URL.
		return redirect(w, g.BasePath+"/confirm/"+id)
	}
	// No login may switch the bank session between the customer's
	// identification by it and the release's answer (gate.SessionLocks).
	view := g.view(r, nil)
	hold, ref := g.flow.LockSessions(r.Context(), &view)
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	defer hold.Unlock()
	who, ref := g.customer(r)
	var op *challenge.Operation
	if ref == nil {
		var in map[string]string
		if in, ref = g.input(r, who.Session); ref == nil {
			// On a store several gateways share, the hold must outlast
			// the release even if this gateway lost the store now: a
			// client that took its time sending the form, or a store
			// that stopped answering, leaves too little of it.
			if !hold.ValidFor(releaseTimeout + releaseMargin) {
				ref = g.flow.Refuse(gate.StoreUnavailable, errors.New("otpgate: the bank session's lock in the store would not outlast the release"))
			} else {
				op, ref = g.flow.Confirm(r.Context(), who, id, in["otp"], clientIP(r))
			}
		}
	}
	switch {
	case ref == nil:
		unknown, err := g.release(w, r, next, op)
		if unknown {
			hold.HoldOffLogins(unknownOutcomeHold)
		}
		return err
	case wantsJSON(r):
	case ref.Code == gate.OTPFormat:
		app.CountRefusal(ref)
		return g.confirmPage(w, r, id, ref, http.StatusBadRequest)
	case ref.Code == gate.OTPReused:
		// The operation waits on: the form again, and when the next code
		// appears.
		return g.confirmPage(w, r, id, ref, http.StatusConflict)
	case ref.Code == gate.InvalidOTP:
		// A wrong code is the confirm page again, with the attempts left.
		return g.confirmPage(w, r, id, ref, http.StatusOK)
	}
	return g.refuse(w, r, ref)
}

// customer is the customer of a request to the gateway's pages; a refusal
// (login_required, or 503) when they are not known.
func (g *Gateway) customer(r *http.Request) (*gate.Customer, *gate.Refusal) {
	who, err := g.identify(r)
	switch {
	case err != nil:
		return nil, gate.RefusalFor(err)
	case who == nil:
		return nil, gate.Refuse(gate.LoginRequired, nil)
	}
	return who, nil
}

// confirmPage shows a held operation, read from the store: what the
// customer sees is what they confirm. shown, if set, is the refusal of the
// code just entered.
func (g *Gateway) confirmPage(w http.ResponseWriter, r *http.Request, id string, shown *gate.Refusal, status int) error {
	who, ref := g.customer(r)
	var op *challenge.Operation
	if ref == nil {
		op, ref = g.flow.Operation(r.Context(), who, id)
	}
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, g.withFile(r, op, withDoubt(jsonLang(r), op, map[string]any{"challenge": op.ID, "kind": op.Kind, "fields": op.Fields,
			"method": op.Method, "path": pathOf(op.RequestURI), "expires": op.Expires})))
	}
	st, err := g.shared.Tokens.Status(r.Context(), tokenUser(who))
	if err != nil {
		return g.refuse(w, r, gate.RefusalFor(err))
	}
	p := pages.ConfirmPage{
		Common: g.common(w, r, who.Session), ChallengeID: op.ID, Kind: op.Kind, Expires: op.Expires,
		RenewOpen: st.RenewOpen, RenewDaysLeft: st.DaysLeft, Action: gate.ConfirmAt(op), Doubt: op.Doubt,
		Revoke: gate.ActionOf(op) == gate.Revoke, Title: op.Title, TitleEn: op.TitleEn, Banks: g.banks,
	}
	if shown != nil {
		p.Error, p.AttemptsLeft = shown.Code, shown.AttemptsLeft()
		if shown.Code == gate.OTPReused {
			p.NextCode = g.nextCode()
		}
	}
	for _, f := range op.Fields {
		p.Fields = append(p.Fields, pages.Field{Label: f.Label, LabelEn: f.LabelEn, Value: f.Value, Format: f.Format})
	}
	if op.ShowFile != nil {
		p.File, p.FileUnreadable = g.heldFile(op)
		p.FileList = g.BasePath + "/confirm/" + op.ID + "/file"
	}
	return g.render(w, status, p)
}

// nextCode is when the token app shows its next code: the start of the
// next time step.
func (g *Gateway) nextCode() time.Time {
	period := int64(g.shared.Tokens.Config().Period / time.Second)
	if period <= 0 {
		return time.Time{}
	}
	return time.Unix((app.Now().Unix()/period+1)*period, 0)
}

// heldFile summarises the transfer file held with op, whose rule shows
// one: from the held request alone, read as the policy reads it (so the
// file the bank will read). unreadable says none could be found or read.
func (g *Gateway) heldFile(op *challenge.Operation) (s *zengin.Summary, unreadable bool) {
	s, err := policy.SummariseFile(*op.ShowFile, op.Header.Get("Content-Type"), op.Body)
	if err != nil {
		g.logger.Info("held transfer file cannot be summarised", zap.String("challenge", op.ID), zap.Error(err))
		return nil, true
	}
	return s, false
}

// withFile adds to a JSON view of op the summary of its transfer file, if
// its rule shows one.
func (g *Gateway) withFile(r *http.Request, op *challenge.Operation, v map[string]any) map[string]any {
	if op.ShowFile != nil {
		s, unreadable := g.heldFile(op)
		v["file"] = pages.FileJSON(jsonLang(r), s, unreadable)
	}
	return v
}

// filePage lists every transfer of the file held with challenge id,
// linked from its confirm page.
func (g *Gateway) filePage(w http.ResponseWriter, r *http.Request, id string) error {
	who, ref := g.customer(r)
	var op *challenge.Operation
	if ref == nil {
		op, ref = g.flow.Operation(r.Context(), who, id)
	}
	if ref == nil && op.ShowFile == nil {
		ref = gate.Refuse(gate.NotFound, nil)
	}
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, g.withFile(r, op, map[string]any{"challenge": op.ID}))
	}
	s, _ := g.heldFile(op)
	return g.render(w, http.StatusOK, pages.FilePage{Common: g.common(w, r, who.Session), File: s, Back: g.BasePath + "/confirm/" + op.ID})
}

// loadBankTable reads the bank_table file; "" is no table.
func loadBankTable(path string) (*display.BankTable, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("otpgate: bank_table: %v", err)
	}
	defer f.Close()
	t, err := display.LoadBankTable(f)
	if err != nil {
		return nil, fmt.Errorf("otpgate: bank_table %s: %v", path, err)
	}
	return t, nil
}

func (g *Gateway) cancel(w http.ResponseWriter, r *http.Request, id string) error {
	who, ref := g.customer(r)
	if ref == nil {
		if _, ref = g.input(r, who.Session); ref == nil {
			ref = g.flow.Cancel(r.Context(), who, id, clientIP(r))
		}
	}
	switch {
	case ref != nil:
		return g.refuse(w, r, ref)
	case wantsJSON(r):
		return writeJSON(w, http.StatusOK, map[string]any{"status": "cancelled"})
	}
	return g.message(w, r, http.StatusOK, "title_cancelled", "cancelled", pages.Link{Href: g.Home, Text: "back_to_menu"})
}

// input reads a gateway form: JSON (Content-Type application/json, which
// a cross-site form cannot send) or a form carrying the CSRF token of
// session. Only JSON strings are read: a number or any other type is left
// out, so that each page refuses it as a missing or malformed field rather
// than reading a code or PIN whose leading zeros JSON has dropped.
func (g *Gateway) input(r *http.Request, session string) (map[string]string, *gate.Refusal) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(nil, r.Body, 64<<10)
	switch ct {
	case "application/json":
		var raw map[string]any
		if err := json.NewDecoder(body).Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
			return nil, gate.Refuse(gate.BadRequest, fmt.Errorf("request body is not a JSON object: %w", err))
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
			return nil, gate.Refuse(gate.BadRequest, fmt.Errorf("reading form: %w", err))
		}
		if !g.csrfOK(r, session, r.PostForm.Get("csrf")) {
			return nil, gate.Refuse(gate.CSRF, nil)
		}
		in := make(map[string]string, len(r.PostForm))
		for k := range r.PostForm {
			in[k] = r.PostForm.Get(k)
		}
		return in, nil
	}
	return nil, gate.Refuse(gate.UnsupportedMediaType, nil)
}

// csrfToken returns the CSRF token of session for a form. gate.CSRFCookie
// holds a random value; the token is its MAC together with the customer's
// session (signed double submit), so it works only in the browser and
// login it was made for.
func (g *Gateway) csrfToken(w http.ResponseWriter, r *http.Request, session string) string {
	c, err := r.Cookie(gate.CSRFCookie)
	value := ""
	if err == nil && len(c.Value) >= 22 {
		value = c.Value
	} else {
		b := make([]byte, 16)
		rand.Read(b)
		value = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: gate.CSRFCookie, Value: value, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
		r.AddCookie(&http.Cookie{Name: gate.CSRFCookie, Value: value})
	}
	return base64.RawURLEncoding.EncodeToString(g.shared.Sealer.MAC("csrf", value, session))
}

func (g *Gateway) csrfOK(r *http.Request, session, got string) bool {
	c, err := r.Cookie(gate.CSRFCookie)
	if err != nil || got == "" {
		return false
	}
	want := base64.RawURLEncoding.EncodeToString(g.shared.Sealer.MAC("csrf", c.Value, session))
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func (g *Gateway) common(w http.ResponseWriter, r *http.Request, session string) pages.Common {
	cfg := g.shared.Tokens.Config()
	return pages.Common{Lang: pages.Negotiate(r.Header.Get("Accept-Language")), Base: g.BasePath, CSRF: g.csrfToken(w, r, session), Issuer: cfg.Issuer,
		Contact: g.shared.Contact, Period: cfg.Period, Digits: cfg.Digits}
}

func (g *Gateway) render(w http.ResponseWriter, status int, p pages.Page) error {
	securityHeaders(w.Header())
	return pages.Render(w, status, p)
}

func (g *Gateway) message(w http.ResponseWriter, r *http.Request, status int, title, body string, links ...pages.Link) error {
	return g.render(w, status, pages.MessagePage{Common: g.common(w, r, ""), Status: status, Title: title, Body: body, Links: links})
}

// refuse answers a refusal: JSON {"error": code, "message": …} with its
// details to API clients; to browsers a page in the customer's language,
// or the token page where the customer must act on their token.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, ref *gate.Refusal) error {
	app.CountRefusal(ref)
	if ce := g.logger.Check(zap.DebugLevel, "refused"); ce != nil {
		ce.Write(zap.Int("status", ref.Status), zap.String("error", ref.Code), zap.String("reason", ref.Message),
			zap.NamedError("cause", errors.Unwrap(ref)), zap.String("path", g.flow.RedactSessionIDs(r.URL.EscapedPath())))
	}
	if ref.Code == gate.Busy {
		w.Header().Set("Retry-After", "5")
	}
	if wantsJSON(r) {
		v := ref.JSON(jsonLang(r))
		if ref.Code == gate.EnrollmentRequired || ref.Code == gate.TokenExpired {
			v["token_url"] = g.BasePath + "/token"
		}
		return writeJSON(w, ref.Status, v)
	}
	title, link := "title_error", pages.Link{Href: g.Home, Text: "back_to_menu"}
	var args []any
	switch ref.Code {
	case gate.EnrollmentRequired, gate.TokenExpired:
		// The token page says the operation was not executed.
		return redirect(w, g.BasePath+"/token?from=operation")
	case gate.LoginRequired, gate.LoginUnreadable:
		link.Text = "to_login"
		if g.Identity != nil && g.Identity.Source == "login_form" {
			link.Href = g.Identity.LoginPath
		}
	case gate.Locked, gate.LinkGone:
		link = pages.Link{Href: g.BasePath + "/token", Text: "to_token_page"}
	case gate.UpstreamFailed, gate.UpstreamNotSent:
		title = "title_" + ref.Code
	case gate.ChallengeGone:
		title = "title_" + ref.TextID()
	case gate.AmbiguousPath, gate.UnshowableRequest:
		// Their message says what could not be read and what to send.
		args = []any{strings.TrimPrefix(ref.Message, "otpgate: ")}
	}
	return g.render(w, ref.Status, pages.MessagePage{Common: g.common(w, r, ""), Status: ref.Status, Title: title, Body: ref.TextID(), Args: args, Links: []pages.Link{link}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func redirect(w http.ResponseWriter, to string) error {
	securityHeaders(w.Header())
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusSeeOther)
	return nil
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

// jsonLang is the language of the texts in a JSON answer: the one
// Accept-Language asks for, English when it asks for none (an API client
// that does not say reads the messages it always has).
func jsonLang(r *http.Request) pages.Lang {
	if r.Header.Get("Accept-Language") == "" {
		return pages.English
	}
	return pages.Negotiate(r.Header.Get("Accept-Language"))
}

// wantsJSON: API clients ask for JSON; browsers ask for HTML.
func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

func pathOf(requestURI string) string {
	p, _, _ := strings.Cut(requestURI, "?")
	return p
}

func tokenUser(w *gate.Customer) token.User { return token.User{Service: w.Service, ID: w.User} }
