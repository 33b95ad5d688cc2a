package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/session"
	"github.com/otpgate/otpgate/policy"
)

// Identity says how the gateway knows who sends a request.
type Identity struct {
	// Source is "login_form" (watch the bank's own login exchange) or
	// "header" (values set in front of the gateway, e.g. from a TLS client
	// certificate).
	Source string `json:"source"`

	// LoginPath is the path the bank's login form posts to (login_form).
	// Default: /login
	LoginPath string `json:"login_path,omitempty"`
	// ServiceField is the login form's service (company) ID field.
	// Default: service_id
	ServiceField string `json:"service_field,omitempty"`
	// UserField is the login form's user ID field. Default: user_id
	UserField string `json:"user_field,omitempty"`
	// Cookie is the bank's session cookie. Default: JSESSIONID
	Cookie string `json:"cookie,omitempty"`
	// SuccessStatus lists the response statuses of a successful login.
	// A login counts only if the response also sets the session cookie.
	// Default: [302, 303]
	SuccessStatus []int `json:"success_status,omitempty"`
	// SuccessLocation, if set, is the path a successful login redirects to
	// (the Location header must start with it), for banks that redirect
	// failed logins too.
	SuccessLocation string `json:"success_location,omitempty"`
	// LogoutPath ends the binding of the session it is called with.
	// Default: /logout
	LogoutPath string `json:"logout_path,omitempty"`
	// IdleTimeout drops a binding the gateway has not seen for this long.
	// Default: 1h
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// MaxAge drops a binding this long after the login, however active.
	// Default: 12h
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// Service is a placeholder giving the service ID (header source), e.g.
	// {http.request.tls.client.subject} parts or
	// {http.request.header.X-Service-Id}. A request header is trusted only
	// from a proxy listed in the server's trusted_proxies.
	Service string `json:"service,omitempty"`
	// User is a placeholder giving the user ID (header source).
	User string `json:"user,omitempty"`

	login       *session.LoginForm
	headerBased bool
}

func (id *Identity) provision(_ *caddy.Replacer) error {
	switch id.Source {
	case "login_form":
		if id.LoginPath == "" {
			id.LoginPath = "/login"
		}
		if id.LogoutPath == "" {
			id.LogoutPath = "/logout"
		}
		if id.ServiceField == "" {
			id.ServiceField = "service_id"
		}
		if id.UserField == "" {
			id.UserField = "user_id"
		}
		if id.Cookie == "" {
			id.Cookie = "JSESSIONID"
		}
		if len(id.SuccessStatus) == 0 {
			id.SuccessStatus = []int{http.StatusFound, http.StatusSeeOther}
		}
		// Compared under every reading of a request path, so /LOGIN;x=1
		// and /%6cogin are the login too.
		login, err := policy.CompileFixedPath(id.LoginPath)
		if err != nil {
			return fmt.Errorf("identity login_form path: %w", err)
		}
		logout, err := policy.CompileFixedPath(id.LogoutPath)
		if err != nil {
			return fmt.Errorf("identity login_form logout_path: %w", err)
		}
		id.login = &session.LoginForm{
			Path: login, Logout: logout, ServiceField: id.ServiceField, UserField: id.UserField,
			Cookie: id.Cookie, SuccessStatus: id.SuccessStatus, SuccessLocation: id.SuccessLocation,
		}
	case "header":
		if id.Service == "" || id.User == "" {
			return fmt.Errorf("otpgate: identity header needs both service and user placeholders, e.g. service {http.request.header.X-Service-Id}")
		}
		id.headerBased = strings.Contains(id.Service, "{http.request.header.") || strings.Contains(id.User, "{http.request.header.")
	default:
		return fmt.Errorf("otpgate: identity source %q: want login_form or header", id.Source)
	}
	return nil
}

// who is a known customer and the session they act in.
type who struct {
	Service, User string
	// Session is the handle a paused operation is bound to.
	Session string
}

// identify tells who sends r. ok is false when the customer is unknown or
// the request is ambiguous about its session; callers refuse protected
// operations then.
func (g *Gateway) identify(r *http.Request) (w who, ok bool, err error) {
	id := g.Identity
	if id.Source == "header" {
		if id.headerBased {
			trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
			if !trusted {
				return who{}, false, nil
			}
		}
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl == nil {
			return who{}, false, nil
		}
		svc, usr := repl.ReplaceKnown(id.Service, ""), repl.ReplaceKnown(id.User, "")
		if svc == "" || usr == "" || strings.Contains(svc, "{") || strings.Contains(usr, "{") {
			return who{}, false, nil
		}
		return who{Service: svc, User: usr, Session: session.Hash("header\x00" + svc + "\x00" + usr)}, true, nil
	}
	value, ok := g.sessionCookie(r)
	if !ok {
		return who{}, false, nil
	}
	b, found, err := g.sessions.Lookup(r.Context(), value)
	if err != nil || !found {
		return who{}, false, err
	}
	return who{Service: b.Service, User: b.User, Session: b.ID}, true, nil
}

// sessionCookie returns the session cookie's value when it is the only
// session the request names. Two session cookies, or a cookie together
// with a ;jsessionid= in the URL, could let the gateway identify one
// customer while the bank acts for another, so they count as no session.
func (g *Gateway) sessionCookie(r *http.Request) (string, bool) {
	var value string
	n := 0
	for _, c := range r.CookiesNamed(g.Identity.Cookie) {
		value = c.Value
		n++
	}
	if n != 1 || value == "" {
		return "", false
	}
	if pathNamesSession(r.URL.EscapedPath()) {
		return "", false
	}
	return value, true
}

// pathNamesSession reports whether a jsessionid appears in the path at any
// depth of percent-encoding: a lenient bank decodes "%253Bjsessionid%253D"
// until it reads ";jsessionid=" and, when the cookie's session has ended
// there, acts for the session named in the path.
func pathNamesSession(escaped string) bool {
	return strings.Contains(strings.ToLower(policy.Unescape(escaped)), "jsessionid")
}

// watchSession passes r on and watches the bank's answer for the session
// cookie (session.LoginForm decides): a login the gateway read
// unambiguously binds the new session; any other request that may be a
// login drops the bindings of the sessions it names when the bank answers
// with a new cookie, or whatever it answers if it carries login fields; a
// rotation is followed only for a request that cannot be a login; a logout
// or a deleted cookie drops the binding. A login body the gateway cannot
// read as the bank does is refused. It returns whether it handled r.
func (g *Gateway) watchSession(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, p *policy.Request) (bool, error) {
	id := g.Identity
	if id.Source != "login_form" {
		return false, nil
	}
	view := &session.Request{Path: p.Path, RawQuery: p.RawQuery, Header: r.Header, HasBody: !p.NoBody}
	view.Session, _ = g.sessionCookie(r)
	for _, c := range r.CookiesNamed(id.Cookie) {
		if c.Value != "" {
			view.Sessions = append(view.Sessions, c.Value)
		}
	}
	view.Sessions = append(view.Sessions, session.PathSessions(p.Path)...)
	if len(view.Sessions) == 0 && !id.login.Path.Matches(p.Path) {
		// Nothing to bind, drop or move.
		return false, nil
	}
	watch, err := id.login.Inspect(view, func() ([]byte, error) {
		if r.Body == nil {
			return nil, nil
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, session.MaxLoginBody+1))
		r.Body = io.NopCloser(bytes.NewReader(body))
		return body, err
	})
	if ue := (*session.UnreadableError)(nil); errors.As(err, &ue) {
		g.logger.Info("login refused: its body could not be read as the bank reads it", zap.String("reason", ue.Reason), zap.String("method", r.Method), zap.String("path", challenge.RedactSessionIDs(p.Path)))
		return true, g.refuse(w, r, http.StatusBadRequest, "login_unreadable", ue.Reason)
	}
	if err != nil {
		return true, g.refuseBody(w, r, err)
	}
	ctx := context.WithoutCancel(r.Context())
	ip := clientIP(r)
	ww := &headerWatcher{ResponseWriter: w, onHeader: func(status int, h http.Header) {
		g.applySession(ctx, id.login.Decide(watch, session.Response{Status: status, Header: h}), ip)
	}}
	err = next.ServeHTTP(ww, r)
	if !ww.done {
		// No answer: the bank may still have logged someone in.
		g.applySession(ctx, id.login.Decide(watch, session.Response{}), ip)
	}
	return true, err
}

// applySession carries out a session decision. Cookie values and
// passwords are never logged.
func (g *Gateway) applySession(ctx context.Context, d session.Decision, clientIP string) {
	for _, v := range d.Drop {
		g.logErr(g.sessions.Drop(ctx, v), "dropping session binding")
	}
	switch d.Action {
	case session.Bind:
		if err := g.sessions.Bind(ctx, d.New, d.Service, d.User, clientIP); err != nil {
			g.logger.Error("binding login session; the customer's protected operations will be refused", zap.String("service", d.Service), zap.String("user", d.User), zap.Error(err))
		}
	case session.Rotate:
		g.logErr(g.sessions.Rotate(ctx, d.Old, d.New), "following session rotation")
	case session.Drop:
		g.logger.Info("session binding dropped", zap.String("reason", d.Reason))
	case session.Nothing:
		if d.Reason != "" {
			g.logger.Info("session not bound", zap.String("reason", d.Reason))
		}
	}
}

func (g *Gateway) logErr(err error, what string) {
	if err != nil {
		g.logger.Error(what, zap.Error(err))
	}
}

// headerWatcher calls onHeader once, just before the response header goes
// out, so a binding exists before the browser follows the login redirect.
type headerWatcher struct {
	http.ResponseWriter
	onHeader func(status int, h http.Header)
	done     bool
}

func (w *headerWatcher) WriteHeader(status int) {
	if !w.done && status >= 200 {
		w.done = true
		w.onHeader(status, w.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *headerWatcher) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *headerWatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		return ip
	}
	return r.RemoteAddr
}
