package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/policy"
)

// The revocation has one road: whatever letter case, path parameter or
// trailing slash its path is written with, it is the gateway's own
// operation — a form without the CSRF token is refused, nothing is held,
// and nothing reaches the bank (review §3 item 5).
func TestRevokePathVariantsNeedCSRF(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	bank := gwRecordBank(e, envOptions{})
	before := len(gwEvents(e, audit.Challenge))
	for _, path := range []string{
		"/.otpgate/token/revoke",
		"/.OTPGATE/token/revoke",
		"/.otpgate/TOKEN/Revoke",
		"/.otpgate/token/revoke/",
		"/.otpgate/token/revoke;x=1",
		"/.otpgate/token/revoke.",
		"/.otpgate/token/%72evoke",
		"/.otpgate//token/revoke",
	} {
		for _, form := range []url.Values{{}, {"csrf": {"forged"}}} {
			res, body := c.postForm(path, form)
			if res.StatusCode != http.StatusForbidden && res.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s %v: %d; want 403 (or 400 for a path backends read differently)\n%s", path, form, res.StatusCode, body)
			}
		}
		// A GET revokes nothing: a refusal, or the token page (the address
		// bar after the revocation's form).
		req, _ := http.NewRequest(http.MethodGet, gatewayURL+path, nil)
		if res, body := c.do(req); res.StatusCode == http.StatusOK || res.StatusCode == http.StatusSeeOther && res.Header.Get("Location") != "/.otpgate/token" {
			t.Errorf("GET %s: %d %q; want a refusal or 303 to the token page\n%s", path, res.StatusCode, res.Header.Get("Location"), body)
		}
	}
	if n := len(gwEvents(e, audit.Challenge)) - before; n != 0 {
		t.Errorf("%d revocations held without a CSRF token", n)
	}
	if r := bank.last(); r.RequestURI != "" {
		t.Errorf("the bank received %s %s", r.Method, r.RequestURI)
	}

	// With its form's token, any reading of the path is the revocation.
	res, _ := c.postForm("/.OTPGATE/token/revoke/", url.Values{"csrf": {c.csrf("/.otpgate/token")}})
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("revocation at a case variant with its token: %d → %q; want 303 to the confirm page", res.StatusCode, loc)
	}
	if held := gwEvents(e, audit.Challenge); len(held) != before+1 || held[len(held)-1].Rule != gate.RevokeRule {
		t.Errorf("held %+v; want one revocation", held)
	}
}

// A customer without a token in a service that does not require OTP has
// nothing to revoke: the revocation is refused and audited, never passed
// through to the bank as a legacy operation would be.
func TestRevokeWithoutTokenNeverForwarded(t *testing.T) {
	opt := envOptions{NoRequireAll: true}
	e := newEnv(t, opt)
	bank := gwRecordBank(e, opt)
	c := e.customer("S002", "U101")
	c.login()
	res, out := c.postJSON("/.otpgate/token/revoke", map[string]string{})
	gwWantError(t, "revoke without a token (JSON)", res, out, http.StatusForbidden, "enrollment_required")
	res, _ = c.postForm("/.otpgate/token/revoke", url.Values{"csrf": {c.csrf("/.otpgate/token")}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=operation" {
		t.Errorf("revoke without a token (form): %d → %q; want 303 to the token page", res.StatusCode, res.Header.Get("Location"))
	}
	for _, r := range bank.reqs {
		if strings.Contains(strings.ToLower(r.RequestURI), "revoke") {
			t.Errorf("the bank received %s %s", r.Method, r.RequestURI)
		}
	}
	refused := 0
	for _, r := range gwEvents(e, audit.Refused) {
		if r.Rule == gate.RevokeRule && r.Service == "S002" && r.User == "U101" {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refused revocations audited; want 2", refused)
	}
	// The same customer's protected transfer still passes through, audited
	// in the decision's transaction.
	if res, body := c.postForm("/transfer/execute", gwTransfer); res.StatusCode != http.StatusOK {
		t.Fatalf("legacy transfer: %d\n%s", res.StatusCode, body)
	}
	if n := len(gwEvents(e, audit.PassThrough)); n != 1 {
		t.Errorf("%d pass-through records; want 1", n)
	}
}

// A refused protected operation is audited: without a known session,
// without a token where OTP is required (review §3 item 17).
func TestRefusedOperationsAudited(t *testing.T) {
	e := newEnv(t, envOptions{})
	stranger := e.customer("", "")
	stranger.json = true
	res, body := stranger.postForm("/transfer/execute", gwTransfer)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, `"login_required"`) {
		t.Fatalf("transfer without a session: %d %s; want 403 login_required", res.StatusCode, body)
	}
	c := e.customer("S001", "U002")
	c.login()
	c.json = true
	if res, body := c.postForm("/transfer/execute", gwTransfer); res.StatusCode != http.StatusForbidden || !strings.Contains(body, `"enrollment_required"`) {
		t.Fatalf("transfer without a token: %d %s; want 403 enrollment_required", res.StatusCode, body)
	}
	var anon, enrol bool
	for _, r := range gwEvents(e, audit.Refused) {
		anon = anon || (r.User == "" && r.Kind == "transfer" && r.Digest != "")
		enrol = enrol || (r.Service == "S001" && r.User == "U002" && r.Kind == "transfer")
	}
	if !anon || !enrol {
		t.Errorf("refusals audited: without session %v, without token %v; want both", anon, enrol)
	}
}

// A rule named like the built-in revocation, or two rules of one name, are
// refused at load: in the Caddyfile with the line, in JSON by Validate.
func TestRuleNamesRefusedAtLoad(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"otpgate {\n\trule token_management otpgate_revoke {\n\t\tpath /x\n\t}\n}", "built-in"},
		{"otpgate {\n\trule transfer {\n\t\tpath /x\n\t}\n\trule transfer {\n\t\tpath /y\n\t}\n}", `rules 1 and 2 are both named "transfer"`},
	} {
		var g Gateway
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v; want an error at its line containing %q", tc.in, err, tc.want)
		}
	}
	for _, rules := range [][]policy.Rule{
		{{Name: gate.RevokeRule, Kind: policy.TokenManagement, Paths: []string{"/x"}}},
		{{Kind: policy.Transfer, Paths: []string{"/x"}}, {Name: "transfer", Kind: policy.BillPayment, Paths: []string{"/y"}}},
	} {
		g := Gateway{Rules: rules}
		if err := g.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", rules)
		}
	}
}

// gwEvents is the audit trail's records of event ev.
func gwEvents(e *env, ev audit.Event) []audit.Record {
	var out []audit.Record
	for _, r := range gwAudit(e) {
		if r.Event == ev {
			out = append(out, r)
		}
	}
	return out
}
