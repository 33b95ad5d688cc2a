package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

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

	loginPath, logoutPath string
	headerBased           bool
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
		// Compared the way the bank reads paths, so /LOGIN;x=1 is still the login.
		id.loginPath = policy.NormalisePath(id.LoginPath)
		id.logoutPath = policy.NormalisePath(id.LogoutPath)
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
// cookie: a successful login binds it, a rotation moves the binding, a
// logout or a deleted cookie drops it. It returns whether it handled r.
func (g *Gateway) watchSession(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, p *policy.Request) (bool, error) {
	id := g.Identity
	if id.Source != "login_form" {
		return false, nil
	}
	old, hasOld := g.sessionCookie(r)
	isLogin := r.Method == http.MethodPost && policy.NormalisePath(p.Path) == id.loginPath
	if !isLogin && !hasOld {
		return false, nil
	}
	var service, user string
	if isLogin {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
		if err != nil {
			return true, caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading login form: %w", err))
		}
		if len(body) > 64<<10 {
			return true, caddyhttp.Error(http.StatusRequestEntityTooLarge, fmt.Errorf("login form over 64 KiB"))
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		service, user = firstValues(r, body, id.ServiceField, id.UserField)
	}
	ctx := context.WithoutCancel(r.Context())
	clientIP := clientIP(r)
	ww := &headerWatcher{ResponseWriter: w, onHeader: func(status int, h http.Header) {
		set, deleted := responseCookie(h, id.Cookie)
		switch {
		case isLogin && set != "" && service != "" && user != "" && g.loginSucceeded(status, h):
			if hasOld {
				g.logErr(g.sessions.Drop(ctx, old), "dropping replaced session binding")
			}
			if err := g.sessions.Bind(ctx, set, service, user, clientIP); err != nil {
				g.logger.Error("binding login session; the customer's protected operations will be refused", zap.String("service", service), zap.String("user", user), zap.Error(err))
			}
		case hasOld && deleted:
			g.logErr(g.sessions.Drop(ctx, old), "dropping deleted session binding")
		case hasOld && set != "" && set != old:
			g.logErr(g.sessions.Rotate(ctx, old, set), "following session rotation")
		}
	}}
	err := next.ServeHTTP(ww, r)
	if hasOld && policy.NormalisePath(p.Path) == id.logoutPath {
		g.logErr(g.sessions.Drop(ctx, old), "dropping session binding at logout")
	}
	return true, err
}

func (g *Gateway) loginSucceeded(status int, h http.Header) bool {
	ok := false
	for _, s := range g.Identity.SuccessStatus {
		ok = ok || s == status
	}
	if ok && g.Identity.SuccessLocation != "" {
		loc, err := url.Parse(h.Get("Location"))
		ok = err == nil && strings.HasPrefix(loc.Path, g.Identity.SuccessLocation)
	}
	return ok
}

func (g *Gateway) logErr(err error, what string) {
	if err != nil {
		g.logger.Error(what, zap.Error(err))
	}
}

// responseCookie finds the session cookie in a response: the value it is set
// to, or whether it is deleted.
func responseCookie(h http.Header, name string) (set string, deleted bool) {
	if len(h.Values("Set-Cookie")) == 0 {
		return "", false
	}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name != name {
			continue
		}
		if c.Value == "" || c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())) {
			set, deleted = "", true
		} else {
			set, deleted = c.Value, false
		}
	}
	return set, deleted
}

// firstValues reads login fields as the bank does: query first, then the
// form body, first value wins.
func firstValues(r *http.Request, body []byte, names ...string) (string, string) {
	vals := r.URL.Query()
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case ct == "multipart/form-data":
		if mr := multipart.NewReader(bytes.NewReader(body), params["boundary"]); params["boundary"] != "" {
			if form, err := mr.ReadForm(64 << 10); err == nil {
				for k, v := range form.Value {
					vals[k] = append(vals[k], v...)
				}
				form.RemoveAll()
			}
		}
	default:
		if q, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range q {
				vals[k] = append(vals[k], v...)
			}
		}
	}
	return strings.TrimSpace(vals.Get(names[0])), strings.TrimSpace(vals.Get(names[1]))
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
