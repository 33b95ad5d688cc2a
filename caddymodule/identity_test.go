package caddymodule

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/otpgate/otpgate/internal/caddyconf"
)

// identityRequest is what a request carries for a header identity: its
// headers and TLS state, and what handlers before the gateway left in its
// vars and replacer.
type identityRequest struct {
	header map[string]string
	tls    *tls.ConnectionState
	vars   map[string]any
	repl   map[string]any
}

// identifyAs runs identify for id on a request prepared as Caddy prepares
// every request (caddyhttp.PrepareRequest).
func identifyAs(t *testing.T, id *Identity, in identityRequest) (service, user string, known bool) {
	t.Helper()
	if err := id.provision(); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Identity: id}
	r := httptest.NewRequest(http.MethodPost, "/transfer/execute", nil)
	for k, v := range in.header {
		r.Header.Set(k, v)
	}
	r.TLS = in.tls
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), nil)
	for k, v := range in.vars {
		caddyhttp.SetVar(r.Context(), k, v)
	}
	for k, v := range in.repl {
		repl.Set(k, v)
	}
	w, err := g.identify(r)
	if err != nil {
		t.Fatal(err)
	}
	if w == nil {
		return "", "", false
	}
	if w.Session == "" {
		t.Fatalf("identify = %+v without a session handle", w)
	}
	return w.Service, w.User, true
}

// A request header names a customer only when the configuration says who
// set it, and only on a request that shows it: from a trusted proxy, or
// answered 2xx by forward_auth (SECURITY.md 18, 32). A client that sends
// the same headers itself is nobody.
func TestHeaderIdentityTrustedSource(t *testing.T) {
	t.Parallel()
	headers := func(trusted string) *Identity {
		return &Identity{Source: "header", Service: "{http.request.header.X-Service-Id}", User: "{http.request.header.X-User-Id}", Trusted: trusted}
	}
	for _, tc := range []struct {
		name      string
		trusted   string
		fromProxy bool
		authCode  any // http.reverse_proxy.status_code, as forward_auth leaves it; nil: forward_auth did not run
		service   string
		user      string
		known     bool
	}{
		{"proxy: from a trusted proxy", caddyconf.TrustedProxy, true, nil, "S001", "U001", true},
		{"proxy: client-supplied", caddyconf.TrustedProxy, false, nil, "S001", "U001", false},
		{"proxy: forward_auth answered but the client is no proxy", caddyconf.TrustedProxy, false, 200, "S001", "U001", false},
		{"proxy: user missing", caddyconf.TrustedProxy, true, nil, "S001", "", false},
		{"proxy: value with a brace", caddyconf.TrustedProxy, true, nil, "{x}", "U001", false},
		{"forward_auth: answered 200", caddyconf.TrustedForwardAuth, false, 200, "S001", "U001", true},
		{"forward_auth: answered 204", caddyconf.TrustedForwardAuth, false, 204, "S001", "U001", true},
		{"forward_auth: did not run (matcher skipped it)", caddyconf.TrustedForwardAuth, true, nil, "S001", "U001", false},
		{"forward_auth: status 302 (not an approval)", caddyconf.TrustedForwardAuth, false, 302, "S001", "U001", false},
		{"forward_auth: status as text", caddyconf.TrustedForwardAuth, false, "200", "S001", "U001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := identityRequest{header: map[string]string{"X-Service-Id": tc.service}, vars: map[string]any{caddyhttp.TrustedProxyVarKey: tc.fromProxy}}
			if tc.user != "" {
				in.header["X-User-Id"] = tc.user
			}
			if tc.authCode != nil {
				in.repl = map[string]any{"http.reverse_proxy.status_code": tc.authCode}
			}
			svc, usr, known := identifyAs(t, headers(tc.trusted), in)
			if known != tc.known || (known && (svc != "S001" || usr != "U001")) {
				t.Fatalf("identify = %q/%q known=%v; want known=%v", svc, usr, known, tc.known)
			}
		})
	}
}

// Placeholders Caddy itself sets need no trusted source: vars and an
// authentication handler's user.
func TestHeaderIdentityFromCaddyPlaceholder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		id   *Identity
		in   identityRequest
	}{
		{"vars", &Identity{Source: "header", Service: "{http.vars.cert_org}", User: "{http.vars.cert_cn}"},
			identityRequest{vars: map[string]any{"cert_org": "S002", "cert_cn": "U101"}}},
		{"basic_auth", &Identity{Source: "header", Service: "S002", User: "{http.auth.user.id}"},
			identityRequest{repl: map[string]any{"http.auth.user.id": "U101"}}},
		{"prefix and placeholder", &Identity{Source: "header", Service: "S{http.vars.n}", User: "{http.auth.user.id}"},
			identityRequest{vars: map[string]any{"n": "002"}, repl: map[string]any{"http.auth.user.id": "U101"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc, usr, known := identifyAs(t, tc.id, tc.in)
			if !known || svc != "S002" || usr != "U101" {
				t.Fatalf("identify = %q/%q known=%v; want S002/U101", svc, usr, known)
			}
		})
	}
	// No authentication handler ran: the placeholder stays unknown, and
	// the request names nobody.
	if _, _, known := identifyAs(t, &Identity{Source: "header", Service: "S002", User: "{http.auth.user.id}"}, identityRequest{}); known {
		t.Fatal("identify named a customer without an authenticated user")
	}
}

// A client certificate names a customer only once Caddy verified it
// against a CA: with client_auth mode "request" or "require" a client can
// present a self-signed certificate naming anyone.
func TestHeaderIdentityNeedsVerifiedCertificate(t *testing.T) {
	t.Parallel()
	cert := &x509.Certificate{Subject: pkix.Name{Organization: []string{"S003"}, CommonName: "U201"}}
	for _, tc := range []struct {
		name  string
		state *tls.ConnectionState
		known bool
	}{
		{"verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}, true},
		{"presented, not verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, false},
		{"plain HTTP", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := &Identity{Source: "header", Service: "S003", User: "{http.request.tls.client.subject}"}
			svc, usr, known := identifyAs(t, id, identityRequest{tls: tc.state})
			if known != tc.known || (known && (svc != "S003" || usr != "CN=U201,O=S003")) {
				t.Fatalf("identify = %q/%q known=%v; want known=%v", svc, usr, known, tc.known)
			}
		})
	}
}

// Identity configurations refused at load, with what the error must say;
// the same through Validate (JSON) and the Caddyfile parser.
func TestIdentityConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{Identity{Source: "cookie"}, `identity source "cookie": want login_form or header`},
		{Identity{Source: "header", Service: "{http.request.header.X-S}"}, "needs both service and user"},
		{Identity{Source: "header", Service: "{http.request.cookie.svc}", User: "{http.vars.u}"}, "service {http.request.cookie.svc}: the client can set this placeholder"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.request.uri.query.user}"}, "user {http.request.uri.query.user}: the client can set"},
		{Identity{Source: "header", Service: "{http.request.host}", User: "{http.vars.u}"}, "service {http.request.host}"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.request.uri}"}, "user {http.request.uri}"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.request.tls.server_name}"}, "user {http.request.tls.server_name}"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.request.tls.client.subject.cn}"}, "no such client certificate field"},
		{Identity{Source: "header", Service: "{env.SERVICE}", User: "{http.vars.u}"}, "service {env.SERVICE}"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.request.header.X-User}"}, "user {http.request.header.X-User}: a client can send any request header; say who sets it"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.request.header.X-User}", Trusted: "client"}, `trusted "client": want forward_auth or proxy`},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "{http.vars.u}", Trusted: "forward_auth"}, "trusted forward_auth: neither service nor user reads a request header"},
		{Identity{Source: "header", Service: "S001", User: "U001"}, `user "U001" has no placeholder`},
		{Identity{Source: "header", Service: "{http.vars.s}", User: "U{http.request.cookie.n}"}, "user {http.request.cookie.n}"},
		{Identity{Source: "header", Service: "{http.vars.s}", User: `\{http.vars.u}`}, "has no placeholder"},
		{Identity{Source: "header", Service: `{http.vars.s\}`, User: "{http.vars.u}", Trusted: "proxy"}, "neither service nor user reads a request header"},
		{Identity{Source: "header", Service: "{http.vars.}", User: "{http.vars.u}"}, "service {http.vars.}"},
		{Identity{Source: "login_form", User: "{http.vars.u}"}, "belong to identity header"},
		{Identity{Source: "login_form", SuccessStatus: []int{99}}, "success_status 99"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if err := tc.id.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%+v: %v; want an error containing %q", tc.id, err, tc.want)
			}
			g := validGateway()
			g.Identity = &tc.id
			if err := g.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v; want an error containing %q", err, tc.want)
			}
		})
	}
	for _, id := range []*Identity{
		{Source: "login_form", LoginPath: "login"},
		{Source: "login_form", LogoutPath: "/logout/**"},
	} {
		if err := id.provision(); err == nil {
			t.Errorf("%+v provisioned", id)
		}
	}
}

// The identity block of the Caddyfile reads trusted (its refusals are
// in TestUnmarshalCaddyfileRefusals).
func TestIdentityCaddyfile(t *testing.T) {
	t.Parallel()
	var g Gateway
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`otpgate {
		identity header {
			service {http.request.header.Remote-Service}
			user    {http.request.header.Remote-User}
			trusted forward_auth
		}
	}`))
	want := Identity{Source: "header", Service: "{http.request.header.Remote-Service}", User: "{http.request.header.Remote-User}", Trusted: "forward_auth"}
	if err != nil || g.Identity == nil || !reflect.DeepEqual(*g.Identity, want) {
		t.Fatalf("parsed %+v, %v; want %+v", g.Identity, err, want)
	}
}
