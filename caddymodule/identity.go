package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/otpgate/otpgate/internal/gate"
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

// identify tells who sends r: nil when the customer is unknown or the
// request is ambiguous about its session; callers refuse protected
// operations then. A header identity is believed only when the client
// could not have set it: a request header only from a trusted proxy.
func (g *Gateway) identify(r *http.Request) (*gate.Customer, error) {
	id := g.Identity
	if id.Source != "header" {
		view := g.view(r, nil)
		return g.flow.LoginCustomer(r.Context(), &view)
	}
	if id.headerBased {
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
			return nil, nil
		}
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return nil, nil
	}
	svc, usr := repl.ReplaceKnown(id.Service, ""), repl.ReplaceKnown(id.User, "")
	if svc == "" || usr == "" || strings.Contains(svc, "{") || strings.Contains(usr, "{") {
		return nil, nil
	}
	return gate.HeaderCustomer(svc, usr), nil
}

// pass hands r, which no rule protects, to next, watching the bank's
// answer for what it does to the login bindings (gate.WatchLogin).
func (g *Gateway) pass(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	view := g.view(r, nil)
	lw, ref := g.flow.WatchLogin(&view, func() ([]byte, error) {
		if r.Body == nil {
			return nil, nil
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, session.MaxLoginBody+1))
		r.Body = io.NopCloser(bytes.NewReader(body))
		return body, err
	})
	switch {
	case ref != nil:
		return g.refuse(w, r, ref)
	case lw == nil:
		return next.ServeHTTP(w, r)
	}
	ww := &headerWatcher{ResponseWriter: w, onHeader: func(status int, h http.Header) { lw.Answered(r.Context(), status, h) }}
	err := next.ServeHTTP(ww, r)
	if !ww.done {
		// No answer: the bank may still have logged someone in.
		lw.Answered(r.Context(), 0, nil)
	}
	return err
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
