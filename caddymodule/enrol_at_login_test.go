package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// loginAnswer logs c in at the bank through the gateway and returns where
// the answer sends the browser.
func loginAnswer(t *testing.T, c *customer) string {
	t.Helper()
	res, body := c.postForm("/login", url.Values{"service_id": {c.Service}, "user_id": {c.ID}, "password": {"demo"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %s/%s: %d\n%s", c.Service, c.ID, res.StatusCode, body)
	}
	return res.Header.Get("Location")
}

// Enrolment at first login, as the service being reproduced does it: a
// customer whose service requires OTP and who has no token is answered
// with STEP 1, logged in, with a link on to the menu; everyone else gets
// the bank's own answer.
func TestEnrolAtLogin(t *testing.T) {
	e := newEnv(t, envOptions{Extra: "require_otp S001"})
	c := e.customer("S001", "U001")
	if loc := loginAnswer(t, c); loc != "/.otpgate/token?from=login" {
		t.Fatalf("first login without a token: Location %q; want the token page", loc)
	}
	for lang, want := range map[string][]string{
		"ja": {"ログインしました", `action="/.otpgate/token/issue"`, `href="/menu">メニューへ進む`},
		"en": {"You are logged in", `href="/menu">Continue to the menu`},
	} {
		st, page := cpPage(c, "/.otpgate/token?from=login", lang)
		for _, w := range want {
			if st != http.StatusOK || !strings.Contains(page, w) {
				t.Errorf("token page after login (%s): %d, lacks %q\n%s", lang, st, w, page)
			}
		}
	}
	// The bank's session is the customer's: the link leads on to the menu.
	if res, body := c.get("/menu"); res.StatusCode != http.StatusOK || !strings.Contains(body, "ご利用になるお取引") {
		t.Fatalf("menu after the login: %d\n%s", res.StatusCode, body)
	}

	// Once the token is active, the login goes to the bank's menu.
	c.json = true
	c.enrol()
	if loc := loginAnswer(t, c); loc != "/menu" {
		t.Errorf("login with a token: Location %q; want the bank's /menu", loc)
	}
	// A service that does not require OTP: the bank's answer as it is.
	if loc := loginAnswer(t, e.customer("S002", "U101")); loc != "/menu" {
		t.Errorf("login in a service without OTP: Location %q; want /menu", loc)
	}
	// A wrong password is the bank's page, never the token page.
	res, _ := e.customer("S001", "U002").postForm("/login", url.Values{"service_id": {"S001"}, "user_id": {"U002"}, "password": {"wrong"}})
	if loc := res.Header.Get("Location"); strings.Contains(loc, "otpgate") {
		t.Errorf("failed login: %d → %q", res.StatusCode, loc)
	}
}

// enrol_at_login off keeps the bank's answer: enrolment starts when a
// protected operation is tried.
func TestEnrolAtLoginOff(t *testing.T) {
	e := newEnv(t, envOptions{Extra: "enrol_at_login off"})
	c := e.customer("S001", "U001")
	if loc := loginAnswer(t, c); loc != "/menu" {
		t.Fatalf("login with enrol_at_login off: Location %q; want /menu", loc)
	}
	res, _ := c.postForm("/transfer/execute", gwTransfer)
	if loc := res.Header.Get("Location"); loc != "/.otpgate/token?from=operation" {
		t.Errorf("transfer: %d → %q; want the token page", res.StatusCode, loc)
	}
}

// enrol_at_login reads on and off, and nothing else.
func TestUnmarshalCaddyfileEnrolAtLogin(t *testing.T) {
	for _, tc := range []struct {
		line string
		want *bool
		err  string
	}{
		{"", nil, ""},
		{"enrol_at_login on", new(true), ""},
		{"enrol_at_login off", new(false), ""},
		{"enrol_at_login no", nil, `enrol_at_login "no": want on or off`},
		{"enrol_at_login", nil, "enrol_at_login: missing value"},
	} {
		g := new(Gateway)
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("otpgate {\n" + tc.line + "\n}"))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v; want %q", tc.line, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case tc.err == "" && (tc.want == nil) != (g.EnrolAtLogin == nil), tc.want != nil && g.EnrolAtLogin != nil && *tc.want != *g.EnrolAtLogin:
			t.Errorf("%q: EnrolAtLogin %v; want %v", tc.line, g.EnrolAtLogin, tc.want)
		}
	}
}
