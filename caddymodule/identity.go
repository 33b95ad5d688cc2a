package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/otpgate/otpgate/internal/caddyconf"
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

	// Service is the service ID (header source): text with at least one
	// placeholder, and only placeholders the client cannot set (see
	// caddyconf.CheckHeaderIdentity): {http.request.tls.client.*} of a verified
	// client certificate, {http.auth.user.*} from an authentication
	// handler, {http.vars.*}, or {http.request.header.*} with Trusted.
	// Anything else, such as {http.request.cookie.*}, a query value or
	// {http.request.host}, is refused at load.
	Service string `json:"service,omitempty"`
	// User is the user ID (header source), written as Service.
	User string `json:"user,omitempty"`
	// Trusted says who set the request headers that Service or User read
	// ({http.request.header.*}); a client can send any header, so the
	// operator must say. "forward_auth": forward_auth's copy_headers, which
	// deletes the client's copies and sets them from the auth server's
	// answer (list every header read here in copy_headers); a request
	// forward_auth did not answer with 2xx names nobody. "proxy": a proxy
	// in the server's trusted_proxies; a request from any other address
	// names nobody. Required when a request header is read, refused
	// otherwise.
	Trusted string `json:"trusted,omitempty"`

	login *session.LoginForm
	// What identify checks for the placeholders Service and User read.
	needs caddyconf.HeaderTrust
}

// validate checks the identity configuration; provision fills defaults.
func (id *Identity) validate() error {
	switch id.Source {
	case "login_form":
		if id.Service != "" || id.User != "" || id.Trusted != "" {
			return errors.New("otpgate: identity login_form: service, user and trusted belong to identity header")
		}
		for _, s := range id.SuccessStatus {
			if s < 100 || s > 599 {
				return fmt.Errorf("otpgate: identity login_form success_status %d: want an HTTP status code such as 302", s)
			}
		}
		return nil
	case "header":
		_, err := caddyconf.CheckHeaderIdentity(id.Service, id.User, id.Trusted)
		return err
	default:
		return fmt.Errorf("otpgate: identity source %q: want login_form or header", id.Source)
	}
}

// provision fills defaults and builds what identify uses.
func (id *Identity) provision() error {
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
		var err error
		if id.needs, err = caddyconf.CheckHeaderIdentity(id.Service, id.User, id.Trusted); err != nil {
			return err
		}
	default:
		return fmt.Errorf("otpgate: identity source %q: want login_form or header", id.Source)
	}
	return nil
}

// identify tells who sends r: nil when the customer is unknown or the
// request is ambiguous about its session; callers refuse protected
// operations then. A header identity is believed only when the client
// could not have set it (SECURITY.md 18, 32): a certificate only once
// verified, a request header only when forward_auth answered this request
// or it came from a trusted proxy, as the configuration says.
func (g *Gateway) identify(r *http.Request) (*gate.Customer, error) {
	id := g.Identity
	if id.Source != "header" {
		view := g.view(r, nil)
		return g.flow.LoginCustomer(r.Context(), &view)
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return nil, nil
	}
	if id.needs.VerifiedCert && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		return nil, nil
	}
	switch id.needs.Header {
	case caddyconf.TrustedProxy:
		if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
			return nil, nil
		}
	case caddyconf.TrustedForwardAuth:
		// forward_auth runs the rest of the route, this gateway included,
		// inside its handling of a 2xx answer, after copy_headers replaced
		// the client's headers; its proxy's status is then in the replacer.
		// Without it forward_auth did not run for this request (a matcher
		// skipped it), and the headers are the client's own.
		if status, _ := repl.Get("http.reverse_proxy.status_code"); !is2xx(status) {
			return nil, nil
		}
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
	w = g.watchClock(w)
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
	ww := &headerWatcher{ResponseWriter: w, onHeader: func(status int, h http.Header) {
		d := lw.Answered(r.Context(), status, h)
		// A customer who must start (or renew) a token first is shown the
		// token page rather than the menu; a 302 or 303 is followed with a
		// GET, so the login form is not posted there again.
		if (status == http.StatusFound || status == http.StatusSeeOther) && h.Get("Location") != "" &&
			(g.EnrolAtLogin == nil || *g.EnrolAtLogin) && g.flow.TokenFirst(r.Context(), d) {
			h.Set("Location", g.BasePath+"/token?from=login")
		}
	}}
	defer lw.Done() // also if Forwarding panics after locking
	if ref := lw.Forwarding(r.Context()); ref != nil {
		return g.refuse(w, r, ref)
	}
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

func is2xx(status any) bool {
	code, ok := status.(int)
	return ok && code >= 200 && code <= 299
}

func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		return ip
	}
	return r.RemoteAddr
}
