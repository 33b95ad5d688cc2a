package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/token"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is the bank's side of the service, on Caddy's admin endpoint
// (the running process holds the bbolt lock, so a second process cannot
// open the file): token state, reset after a lost phone, unlock, requiring
// OTP for a service, and audit export. Every change is audited with the
// administrator named in "by".
//
//	GET  /otpgate/tokens?service=S001       token records (no secrets)
//	GET  /otpgate/token?service=S001&user=U001
//	POST /otpgate/reset    {"service","user","by"}
//	POST /otpgate/unlock   {"service","user","by"}
//	POST /otpgate/require  {"service","by"}
//	POST /otpgate/rekey    {"by"}   re-seal secrets under the current key
//	GET  /otpgate/audit?since=2026-01-02T00:00:00Z   JSON lines; also until=,
//	     service=, user=, event= (repeatable) to filter
//	POST /otpgate/registered?by=<administrator>   the customer file (registered.go)
//
// With several otpgate handlers on different databases, add ?db=<path>.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.otpgate",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes. The gateway is looked up on each request:
// admin modules are provisioned apart from the HTTP app and outlive reloads.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/otpgate/tokens", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.tokens))},
		{Pattern: "/otpgate/token", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.token))},
		{Pattern: "/otpgate/reset", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.change("reset")))},
		{Pattern: "/otpgate/unlock", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.change("unlock")))},
		{Pattern: "/otpgate/require", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.change("require")))},
		{Pattern: "/otpgate/rekey", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.rekey))},
		{Pattern: "/otpgate/audit", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.audit))},
		{Pattern: "/otpgate/registered", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.registered))},
	}
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func (adminAPI) handle(method string, fn func(http.ResponseWriter, *http.Request, *Gateway) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != method {
			return apiErr(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, method)
		}
		g, dbs := currentInstance(r.URL.Query().Get("db"))
		if g == nil {
			if len(dbs) == 0 {
				return apiErr(http.StatusNotFound, "no otpgate handler is running in this configuration")
			}
			return apiErr(http.StatusBadRequest, "several otpgate databases are open; add ?db= with one of: %s", strings.Join(dbs, ", "))
		}
		return fn(w, r, g)
	}
}

func (adminAPI) tokens(w http.ResponseWriter, r *http.Request, g *Gateway) error {
	recs, err := g.tokens.List(r.Context(), r.URL.Query().Get("service"))
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "listing tokens: %v", err)
	}
	out := make([]map[string]any, 0, len(recs))
	for i := range recs {
		out = append(out, g.tokenView(&recs[i]))
	}
	return writeAdminJSON(w, out)
}

func (adminAPI) token(w http.ResponseWriter, r *http.Request, g *Gateway) error {
	q := r.URL.Query()
	if q.Get("service") == "" || q.Get("user") == "" {
		return apiErr(http.StatusBadRequest, "service and user query parameters are required")
	}
	rec, err := g.tokens.Get(r.Context(), token.User{Service: q.Get("service"), ID: q.Get("user")})
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "loading token: %v", err)
	}
	required, err := g.tokens.ServiceRequiresOTP(r.Context(), q.Get("service"))
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "loading service: %v", err)
	}
	v := g.tokenView(rec)
	v["service_requires_otp"] = required
	return writeAdminJSON(w, v)
}

// tokenView is what an administrator sees of a record: state and dates,
// never the secret, PIN hash or link.
func (g *Gateway) tokenView(r *token.Record) map[string]any {
	st := g.tokens.StatusOf(r)
	return map[string]any{
		"service": r.Service, "user": r.User, "state": st.State, "locked": st.Locked, "failures": r.Failures,
		"email": token.MaskEmail(r.Email), "issued_at": r.IssuedAt, "activated_at": r.ActivatedAt, "expires": r.Expires,
		"locked_at": r.LockedAt,
	}
}

func (adminAPI) change(action string) func(http.ResponseWriter, *http.Request, *Gateway) error {
	return func(w http.ResponseWriter, r *http.Request, g *Gateway) error {
		var in struct{ Service, User, By string }
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
			return apiErr(http.StatusBadRequest, "request body must be JSON {\"service\",\"user\",\"by\"}: %v", err)
		}
		if in.Service == "" || (action != "require" && in.User == "") {
			return apiErr(http.StatusBadRequest, "service and user are required")
		}
		if in.By == "" {
			return apiErr(http.StatusBadRequest, "by is required: name the administrator for the audit trail")
		}
		u := token.User{Service: in.Service, ID: in.User}
		var err error
		switch action {
		case "reset":
			err = g.tokens.Reset(r.Context(), u, in.By, r.RemoteAddr)
		case "unlock":
			err = g.tokens.Unlock(r.Context(), u, in.By, r.RemoteAddr)
		case "require":
			err = g.tokens.RequireOTP(r.Context(), in.Service, "admin:"+in.By)
		}
		if err != nil {
			return apiErr(http.StatusServiceUnavailable, "%s: %v", action, err)
		}
		return writeAdminJSON(w, map[string]any{"status": "ok", "action": action, "service": in.Service, "user": in.User})
	}
}

func (adminAPI) rekey(w http.ResponseWriter, r *http.Request, g *Gateway) error {
	var in struct{ By string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.By == "" {
		return apiErr(http.StatusBadRequest, "request body must be JSON {\"by\"} naming the administrator")
	}
	n, err := g.tokens.Reseal(r.Context(), in.By)
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "re-sealing secrets: %v", err)
	}
	return writeAdminJSON(w, map[string]any{"status": "ok", "resealed": n})
}

func (adminAPI) audit(w http.ResponseWriter, r *http.Request, g *Gateway) error {
	q := r.URL.Query()
	f := audit.Filter{Service: q.Get("service"), User: q.Get("user")}
	for name, t := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if s := q.Get(name); s != "" {
			v, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return apiErr(http.StatusBadRequest, "%s %q: want an RFC 3339 time such as 2026-01-02T00:00:00+09:00", name, s)
			}
			*t = v
		}
	}
	for _, ev := range q["event"] {
		f.Events = append(f.Events, audit.Event(ev))
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	// Query reads the trail in pages and holds no read transaction while a
	// slow client takes the lines.
	err := audit.Query(r.Context(), g.store, f, func(rec audit.Record) error { return enc.Encode(rec) })
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "exporting audit trail: %v", err)
	}
	return nil
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return errors.New("encoding response: " + err.Error())
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
