package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A header identity is believed only from a trusted proxy; a client that
// sends the same header itself is nobody (SECURITY.md 18).
func TestHeaderIdentityTrustedOnlyFromTrustedProxy(t *testing.T) {
	id := &Identity{Source: "header", Service: "{http.request.header.X-Service-Id}", User: "{http.request.header.X-User-Id}"}
	if err := id.provision(caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Identity: id}
	for _, tc := range []struct {
		name    string
		trusted bool
		service string
		user    string
		known   bool
	}{
		{"trusted proxy", true, "S001", "U001", true},
		{"client-supplied", false, "S001", "U001", false},
		{"trusted proxy, user missing", true, "S001", "", false},
		{"trusted proxy, placeholder left unreplaced", true, "{x}", "U001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/transfer/execute", nil)
			r.Header.Set("X-Service-Id", tc.service)
			if tc.user != "" {
				r.Header.Set("X-User-Id", tc.user)
			}
			ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: tc.trusted})
			ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddyhttp.NewTestReplacer(r))
			w, err := g.identify(r.WithContext(ctx))
			if err != nil || (w != nil) != tc.known {
				t.Fatalf("identify = %+v, %v; want known=%v", w, err, tc.known)
			}
			if w != nil && (w.Service != "S001" || w.User != "U001" || w.Session == "") {
				t.Fatalf("identify = %+v", w)
			}
		})
	}
}

// A placeholder that is not a request header (a client certificate field)
// needs no trusted proxy: Caddy itself set it.
func TestHeaderIdentityFromCaddyPlaceholder(t *testing.T) {
	id := &Identity{Source: "header", Service: "{http.vars.cert_org}", User: "{http.vars.cert_cn}"}
	if err := id.provision(caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Identity: id}
	r := httptest.NewRequest(http.MethodPost, "/transfer/execute", nil)
	vars := map[string]any{caddyhttp.TrustedProxyVarKey: false, "cert_org": "S002", "cert_cn": "U101"}
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars)
	r = r.WithContext(ctx)
	ctx = context.WithValue(ctx, caddy.ReplacerCtxKey, caddyhttp.NewTestReplacer(r))
	w, err := g.identify(r.WithContext(ctx))
	if err != nil || w == nil || w.Service != "S002" || w.User != "U101" {
		t.Fatalf("identify = %+v, %v; want S002/U101", w, err)
	}
}

func TestIdentityConfigErrors(t *testing.T) {
	for _, id := range []*Identity{
		{Source: "cookie"},
		{Source: "header", Service: "{http.request.header.X-S}"},
		{Source: "login_form", LoginPath: "login"},
		{Source: "login_form", LogoutPath: "/logout/**"},
	} {
		if err := id.provision(caddy.NewReplacer()); err == nil {
			t.Errorf("%+v accepted", id)
		}
	}
}
