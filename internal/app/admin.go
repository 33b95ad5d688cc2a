package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/store"
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
//	     service=, user=, event= (repeatable) to filter, format=csv|json,
//	     limit= and after= for pages (auditadmin.go)
//	GET  /otpgate/held?service=S001&user=U001      operations waiting for a code
//	GET  /otpgate/audit/verify                     the audit trail's chain checked
//	POST /otpgate/registered?by=<administrator>   the customer file (registered.go)
//
// With several otpgate stores, add ?db=<store>: a bbolt database's
// absolute path. A call that fails answers 400 for a bad request (an
// invalid ID), 404 for an unlock of a customer the gateway knows nothing
// of, 503 only when the store itself failed. A customer without a record
// shows in state none; resetting one is recorded all the same.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.otpgate",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/otpgate/tokens", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.tokens))},
		{Pattern: "/otpgate/token", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.token))},
		{Pattern: "/otpgate/reset", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.change("reset")))},
		{Pattern: "/otpgate/unlock", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.change("unlock")))},
		{Pattern: "/otpgate/require", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.change("require")))},
		{Pattern: "/otpgate/rekey", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.rekey))},
		{Pattern: "/otpgate/audit", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.audit))},
		{Pattern: "/otpgate/held", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.held))},
		{Pattern: "/otpgate/audit/verify", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodGet, a.auditVerify))},
		{Pattern: "/otpgate/registered", Handler: caddy.AdminHandlerFunc(a.handle(http.MethodPost, a.registered))},
	}
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// storeErr is the API error of a call into the token lifecycle that failed
// with err while doing what doing says: 503 only for the store's own
// failure (store.ErrUnavailable), the status of the refusal a customer
// would get for the same error where there is one (an invalid ID is 400),
// and 500 for the rest (a damaged record), which no retry cures.
func storeErr(doing string, err error) error {
	status := http.StatusInternalServerError
	switch ref := gate.RefusalFor(err); {
	case errors.Is(err, store.ErrUnavailable):
		status = http.StatusServiceUnavailable
	case ref.Code != gate.StoreUnavailable:
		status = ref.Status
	}
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf("%s: %w", doing, err)}
}

// handle finds the running configuration's store state for fn when it is
// called, not when the routes are made: the admin endpoint is provisioned
// before the apps of a configuration load, and a load that then fails
// leaves the endpoint provisioned in it while the previous configuration
// keeps running, so only the active context names the app in charge.
func (adminAPI) handle(method string, fn func(http.ResponseWriter, *http.Request, *State) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != method {
			return apiErr(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, method)
		}
		app, err := caddy.ActiveContext().AppIfConfigured("otpgate")
		if err != nil {
			return apiErr(http.StatusNotFound, "no otpgate app is running in this configuration: %v", err)
		}
		st, err := app.(*App).state(r.URL.Query().Get("db"))
		if err != nil {
			return apiErr(http.StatusBadRequest, "%v", err)
		}
		// Every audit record written for the call names the administrator's
		// address as customers' are named.
		r = r.WithContext(WithClient(r.Context(), adminClientIP(r), r.UserAgent()))
		return fn(w, r, st)
	}
}

func (adminAPI) tokens(w http.ResponseWriter, r *http.Request, st *State) error {
	recs, err := st.Tokens.List(r.Context(), r.URL.Query().Get("service"))
	if err != nil {
		return storeErr("listing tokens", err)
	}
	out := make([]map[string]any, 0, len(recs))
	for i := range recs {
		out = append(out, st.tokenView(&recs[i]))
	}
	return writeAdminJSON(w, out)
}

func (adminAPI) token(w http.ResponseWriter, r *http.Request, st *State) error {
	q := r.URL.Query()
	if q.Get("service") == "" || q.Get("user") == "" {
		return apiErr(http.StatusBadRequest, "service and user query parameters are required")
	}
	// A customer without a record is shown in state none: the helpdesk
	// learns they never enrolled, and whether their service requires OTP.
	rec, err := st.Tokens.Get(r.Context(), token.User{Service: q.Get("service"), ID: q.Get("user")})
	if err != nil {
		return storeErr("loading token", err)
	}
	required, err := st.Tokens.ServiceRequiresOTP(r.Context(), q.Get("service"))
	if err != nil {
		return storeErr("loading service", err)
	}
	v := st.tokenView(rec)
	v["service_requires_otp"] = required
	return writeAdminJSON(w, v)
}

// known answers 404 if the gateway knows nothing of u, for a change that
// needs a customer: for one without a record the token lifecycle returns a
// fresh record in state none, with nothing else in it.
func known(ctx context.Context, st *State, u token.User) error {
	rec, err := st.Tokens.Get(ctx, u)
	if err != nil {
		return storeErr("loading token", err)
	}
	if reflect.DeepEqual(rec, &token.Record{Service: u.Service, User: u.ID, State: token.None}) {
		return apiErr(http.StatusNotFound, "no token record for service %q user %q: nothing to unlock", u.Service, u.ID)
	}
	return nil
}

// tokenView is what an administrator sees of a record: state and dates,
// never the secret, PIN hash or link.
func (st *State) tokenView(r *token.Record) map[string]any {
	s := st.Tokens.StatusOf(r)
	return map[string]any{
		"service": r.Service, "user": r.User, "state": s.State, "locked": s.Locked, "failures": r.Failures,
		"email": token.MaskEmail(r.Email), "issued_at": r.IssuedAt, "activated_at": r.ActivatedAt, "expires": r.Expires,
		"locked_at": r.LockedAt,
	}
}

func (adminAPI) change(action string) func(http.ResponseWriter, *http.Request, *State) error {
	return func(w http.ResponseWriter, r *http.Request, st *State) error {
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
			// A reset of a customer the gateway knows nothing of is still
			// recorded: the bank's paper procedure happened.
			err = st.Tokens.Reset(r.Context(), u, in.By, adminClientIP(r))
		case "unlock":
			if err := known(r.Context(), st, u); err != nil {
				return err
			}
			err = st.Tokens.Unlock(r.Context(), u, in.By, adminClientIP(r))
		case "require":
			err = st.Tokens.RequireOTP(r.Context(), in.Service, in.By)
		}
		if err != nil {
			return storeErr(action, err)
		}
		return writeAdminJSON(w, map[string]any{"status": "ok", "action": action, "service": in.Service, "user": in.User})
	}
}

func (adminAPI) rekey(w http.ResponseWriter, r *http.Request, st *State) error {
	var in struct{ By string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.By == "" {
		return apiErr(http.StatusBadRequest, "request body must be JSON {\"by\"} naming the administrator")
	}
	n, err := st.Tokens.Reseal(r.Context(), in.By)
	if err != nil {
		return storeErr("re-sealing secrets", err)
	}
	return writeAdminJSON(w, map[string]any{"status": "ok", "resealed": n})
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
