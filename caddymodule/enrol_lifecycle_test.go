package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
)

const enrolDay = 24 * time.Hour

// Renewal with the clock moved on: refused 31 days before expiry, accepted
// 30 days before (the expiry moves by validity from the old expiry) and 10
// days after it (by validity from now). An expired token releases nothing
// but can renew.
func TestEnrolRenewWindow(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	c.enrol()
	validity := 365 * enrolDay

	expires := enrolExpires(t, enrolTokenState(c))
	if d := expires.Sub(e.clock.Now()); d < validity-2*time.Minute || d > validity {
		t.Fatalf("expires %v, %v from now; want validity (365 days) from activation", expires, d)
	}

	// 31 days before expiry: too early, and the token is unchanged.
	e.clock.Advance(expires.Sub(e.clock.Now()) - 31*enrolDay)
	c.login()
	res, out := c.postJSON("/.otpgate/token/renew", map[string]string{"otp": c.code()})
	if res.StatusCode != http.StatusConflict || out["error"] != "renew_too_early" {
		t.Fatalf("renew 31 days before expiry: %d %v; want 409 renew_too_early", res.StatusCode, out)
	}
	if from, _ := time.Parse(time.RFC3339Nano, out["renew_from"].(string)); !from.Equal(expires.Add(-30 * enrolDay)) {
		t.Errorf("renew_from %v; want 30 days before %v", out["renew_from"], expires)
	}
	st := enrolTokenState(c)
	if st["renew_open"] != false || !enrolExpires(t, st).Equal(expires) {
		t.Fatalf("token after an early renewal: %v; want expiry %v, renewal not open", st, expires)
	}

	// 30 days before: open, offered on the token page, done with a form.
	e.clock.Advance(enrolDay)
	c.login()
	c.json = false
	res, page := enrolPage(c, http.MethodGet, "/.otpgate/token", "", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `action="/.otpgate/token/renew"`) {
		t.Fatalf("token page 30 days before expiry: %d; want 200 and the renew form:\n%s", res.StatusCode, page)
	}
	res, page = enrolPage(c, http.MethodPost, "/.otpgate/token/renew", "", url.Values{"otp": {c.code()}, "csrf": {c.csrf("/.otpgate/token")}})
	if res.StatusCode != http.StatusOK || strings.Contains(page, `class="alert alert-error"`) {
		t.Fatalf("renew 30 days before expiry: %d:\n%s", res.StatusCode, page)
	}
	c.json = true
	renewed := enrolExpires(t, enrolTokenState(c))
	if want := expires.Add(validity); !renewed.Equal(want) {
		t.Fatalf("expires after renewal %v; want the old expiry + validity = %v", renewed, want)
	}
	enrolPauseAndRelease(c)

	// 10 days after the new expiry: expired. Operations are not released…
	e.clock.Advance(renewed.Sub(e.clock.Now()) + 10*enrolDay)
	c.login()
	if st := enrolTokenState(c); st["state"] != "expired" {
		t.Fatalf("token 10 days after expiry: %v; want expired", st)
	}
	ledger := len(e.ledger())
	if res := enrolTransfer(c); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=operation" {
		t.Fatalf("transfer with an expired token: %d → %q; want 303 to /.otpgate/token", res.StatusCode, res.Header.Get("Location"))
	}
	if res, out := enrolTransferJSON(c); res.StatusCode != http.StatusForbidden || out["error"] != "token_expired" {
		t.Fatalf("transfer with an expired token (JSON): %d %v; want 403 token_expired", res.StatusCode, out)
	}
	if len(e.ledger()) != ledger {
		t.Fatalf("an expired token let a transfer through: %+v", e.ledger())
	}
	// … but the token can renew, from now.
	res, out = c.postJSON("/.otpgate/token/renew", map[string]string{"otp": c.code()})
	if res.StatusCode != http.StatusOK || out["status"] != "renewed" || out["state"] != "active" {
		t.Fatalf("renew 10 days after expiry: %d %v", res.StatusCode, out)
	}
	want := e.clock.Now().Add(validity)
	if got := enrolExpires(t, out); !got.Equal(want) {
		t.Fatalf("renewal answer expires %v; want now + validity = %v", got, want)
	}
	if got := enrolExpires(t, enrolTokenState(c)); !got.Equal(want) {
		t.Fatalf("token page expires %v; want %v", got, want)
	}
	enrolPauseAndRelease(c)
	if n := len(enrolFindAudit(enrolAuditTrail(t, e), audit.Renewed, "S001", "U001")); n != 2 {
		t.Errorf("audit has %d token_renewed records; want 2", n)
	}
}

// Revoking is a token-management operation: paused, confirmed with a code,
// and afterwards a transfer is sent to enrolment.
func TestEnrolRevokePausedAndConfirmed(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	c.enrol()
	c.json = false

	res, page := enrolPage(c, http.MethodGet, "/.otpgate/token", "", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `action="/.otpgate/token/revoke"`) {
		t.Fatalf("token page of an active token: %d; want 200 and the revoke form:\n%s", res.StatusCode, page)
	}
	// Without the form's CSRF token: refused, nothing paused.
	res, _ = enrolPage(c, http.MethodPost, "/.otpgate/token/revoke", "", url.Values{})
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("revoke without CSRF token: %d; want 403", res.StatusCode)
	}
	res, _ = enrolPage(c, http.MethodPost, "/.otpgate/token/revoke", "", url.Values{"csrf": {"forged"}})
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("revoke with a wrong CSRF token: %d; want 403", res.StatusCode)
	}
	if n := len(enrolFindAudit(enrolAuditTrail(t, e), audit.Challenge, "S001", "U001")); n != 0 {
		t.Fatalf("a refused revoke paused %d operations", n)
	}

	res, _ = enrolPage(c, http.MethodPost, "/.otpgate/token/revoke", "", url.Values{"csrf": {c.csrf("/.otpgate/token")}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("revoke: %d → %q; want 303 to the confirm page", res.StatusCode, loc)
	}
	if st := enrolTokenState(c); st["state"] != "active" {
		t.Fatalf("token while the revoke waits for its code: %v; want active", st)
	}
	res, page = enrolPage(c, http.MethodGet, loc, "", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "トークン") {
		t.Fatalf("revoke confirm page: %d:\n%s", res.StatusCode, page)
	}
	action := regexpAction(t, page)
	// A wrong code revokes nothing.
	res, page = enrolPage(c, http.MethodPost, action, "", url.Values{"otp": {enrolWrongCode(c)}, "csrf": {c.csrf(loc)}})
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "alert-error") {
		t.Fatalf("revoke with a wrong code: %d; want the confirm page with an error:\n%s", res.StatusCode, page)
	}
	if st := enrolTokenState(c); st["state"] != "active" {
		t.Fatalf("token after a wrong code: %v; want active", st)
	}
	res, page = enrolPage(c, http.MethodPost, action, "", url.Values{"otp": {c.code()}, "csrf": {c.csrf(loc)}})
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `action="/.otpgate/token/issue"`) {
		t.Fatalf("revoke with the right code: %d; want the token page offering a new issue:\n%s", res.StatusCode, page)
	}
	if st := enrolTokenState(c); st["state"] != "revoked" {
		t.Fatalf("token after revoke: %v; want revoked", st)
	}

	// Now transfers go to enrolment.
	if res := enrolTransfer(c); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=operation" {
		t.Fatalf("transfer after revoke: %d → %q; want 303 to /.otpgate/token saying it was not executed", res.StatusCode, res.Header.Get("Location"))
	}
	if res, out := enrolTransferJSON(c); res.StatusCode != http.StatusForbidden || out["error"] != "enrollment_required" {
		t.Fatalf("transfer after revoke (JSON): %d %v; want 403 enrollment_required", res.StatusCode, out)
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("ledger %+v; want nothing", l)
	}
	trail := enrolAuditTrail(t, e)
	if len(enrolFindAudit(trail, audit.Revoked, "S001", "U001")) != 1 {
		t.Errorf("audit lacks the revocation")
	}

	// The JSON contract: 401 otp_required, then the code.
	a := e.customer("S001", "U002")
	a.login()
	a.json = true
	a.enrol()
	res2, out := a.postJSON("/.otpgate/token/revoke", map[string]string{})
	id, _ := out["challenge"].(string)
	if res2.StatusCode != http.StatusUnauthorized || out["error"] != "otp_required" || out["kind"] != "token_management" || id == "" {
		t.Fatalf("revoke (JSON): %d %v; want 401 otp_required for token_management", res2.StatusCode, out)
	}
	if st := enrolTokenState(a); st["state"] != "active" {
		t.Fatalf("token while the revoke waits: %v", st)
	}
	if res2, out = a.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": a.code()}); res2.StatusCode != http.StatusOK || out["status"] != "revoked" {
		t.Fatalf("confirm revoke (JSON): %d %v", res2.StatusCode, out)
	}
	if res2, out := enrolTransferJSON(a); res2.StatusCode != http.StatusForbidden || out["error"] != "enrollment_required" {
		t.Fatalf("transfer after revoke (JSON): %d %v", res2.StatusCode, out)
	}
}

// The bank's side: a customer who lost the phone without revoking is reset
// through the admin API and enrols again; a locked customer is unlocked.
// Both are in the audit trail with the administrator's name.
func TestEnrolAdminResetAndUnlock(t *testing.T) {
	e := newEnv(t, envOptions{})
	db := url.QueryEscape(filepath.Join(e.dir, "otpgate.db"))
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	c.enrol()
	lost := c.secret

	// The phone is lost: the customer cannot issue a new token themselves.
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": "u001@new-phone.example", "pin": "5821"})
	if res.StatusCode != http.StatusConflict || out["error"] != "active_token" {
		t.Fatalf("issue with an active token: %d %v; want 409 active_token", res.StatusCode, out)
	}

	// Malformed admin requests change nothing.
	for _, bad := range []struct {
		method string
		body   any
	}{
		{http.MethodPost, map[string]string{"service": "S001", "user": "U001"}},
		{http.MethodPost, map[string]string{"service": "S001", "by": "yamada"}},
		{http.MethodPost, "not an object"},
	} {
		if status, b := enrolAdmin(t, bad.method, "/otpgate/reset?db="+db, bad.body); status != http.StatusBadRequest {
			t.Fatalf("reset %v: %d %s; want 400", bad.body, status, b)
		}
	}
	if status, _ := enrolAdmin(t, http.MethodGet, "/otpgate/reset?db="+db, nil); status != http.StatusMethodNotAllowed {
		t.Fatalf("GET reset: %d; want 405", status)
	}
	if v := enrolAdminToken(t, e, "S001", "U001"); v["state"] != "active" {
		t.Fatalf("admin token view: %v; want active", v)
	}

	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/reset?db="+db, map[string]string{"service": "S001", "user": "U001", "by": "yamada"}); status != http.StatusOK {
		t.Fatalf("reset: %d %s", status, b)
	}
	v := enrolAdminToken(t, e, "S001", "U001")
	if v["state"] != "none" || v["locked"] != false || v["service_requires_otp"] != true {
		t.Fatalf("admin token view after reset: %v; want none, unlocked, service requires OTP", v)
	}
	if res, out := enrolTransferJSON(c); res.StatusCode != http.StatusForbidden || out["error"] != "enrollment_required" {
		t.Fatalf("transfer after reset: %d %v; want 403 enrollment_required", res.StatusCode, out)
	}
	trail := enrolAuditTrail(t, e)
	resets := enrolFindAudit(trail, audit.Reset, "S001", "U001")
	if len(resets) != 1 || resets[0].Actor != "admin:yamada" {
		t.Fatalf("audit reset records %+v; want one by admin:yamada", resets)
	}

	// The customer enrols the new phone; the lost phone's codes are worthless.
	c.enrol()
	res, out = enrolTransferJSON(c)
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("transfer after re-enrolment: %d %v", res.StatusCode, out)
	}
	e.clock.Advance(time.Minute)
	oldCode := totpAt(lost, e.clock.Now().Unix()/60)
	if res, out := c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": oldCode}); res.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_otp" {
		t.Fatalf("the lost phone's code: %d %v; want 401 invalid_otp", res.StatusCode, out)
	}
	if res, _ := c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": c.code()}); res.StatusCode != http.StatusOK || len(e.ledger()) != 1 {
		t.Fatalf("the new phone's code: %d, ledger %d; want the transfer released", res.StatusCode, len(e.ledger()))
	}

	// Five wrong codes lock; only the bank unlocks.
	res, out = enrolTransferJSON(c)
	id, _ = out["challenge"].(string)
	for i := 1; i <= 5; i++ {
		res, out = c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": enrolWrongCode(c)})
	}
	if res.StatusCode != http.StatusLocked || out["error"] != "locked" {
		t.Fatalf("fifth wrong code: %d %v; want 423 locked", res.StatusCode, out)
	}
	if v := enrolAdminToken(t, e, "S001", "U001"); v["locked"] != true {
		t.Fatalf("admin token view after the lock: %v", v)
	}
	if res, out := enrolTransferJSON(c); res.StatusCode != http.StatusLocked || out["error"] != "locked" {
		t.Fatalf("transfer while locked: %d %v; want 423 locked", res.StatusCode, out)
	}
	if res, out := c.postJSON("/.otpgate/token/renew", map[string]string{"otp": c.code()}); res.StatusCode != http.StatusLocked {
		t.Fatalf("renew while locked: %d %v; want 423", res.StatusCode, out)
	}
	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/unlock?db="+db, map[string]string{"service": "S001", "user": "U001"}); status != http.StatusBadRequest {
		t.Fatalf("unlock without by: %d %s; want 400", status, b)
	}
	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/unlock?db="+db, map[string]string{"service": "S001", "user": "U001", "by": "suzuki"}); status != http.StatusOK {
		t.Fatalf("unlock: %d %s", status, b)
	}
	if v := enrolAdminToken(t, e, "S001", "U001"); v["locked"] != false || v["state"] != "active" || v["failures"] != float64(0) {
		t.Fatalf("admin token view after unlock: %v", v)
	}
	enrolPauseAndRelease(c)

	trail = enrolAuditTrail(t, e)
	if r := enrolFindAudit(trail, audit.Locked, "S001", "U001"); len(r) != 1 {
		t.Errorf("audit lock records %+v; want one", r)
	}
	if r := enrolFindAudit(trail, audit.Unlocked, "S001", "U001"); len(r) != 1 || r[0].Actor != "admin:suzuki" {
		t.Errorf("audit unlock records %+v; want one by admin:suzuki", r)
	}
	// The reset comes before the new activation in the trail.
	resetAt, activatedAfter := -1, false
	for i, r := range trail {
		if r.Event == audit.Reset && r.User == "U001" {
			resetAt = i
		}
		if r.Event == audit.Activated && r.User == "U001" && resetAt >= 0 && i > resetAt {
			activatedAfter = true
		}
	}
	if !activatedAfter {
		t.Errorf("audit trail has no activation after the reset")
	}

	// The CLI path: "otpgate token-status" against the admin address.
	out2 := enrolRunCommand(t, "token-status", "--address", "localhost:"+strconv.Itoa(adminPort), "--db", filepath.Join(e.dir, "otpgate.db"),
		"--service", "S001", "--user", "U001", "--json")
	var view map[string]any
	if err := json.Unmarshal(out2, &view); err != nil || view["state"] != "active" || view["user"] != "U001" {
		t.Fatalf("token-status printed %q (%v); want the token's JSON view", out2, err)
	}
	if _, err := enrolRunCommandErr(t, "token-reset", "--address", "localhost:"+strconv.Itoa(adminPort), "--service", "S001", "--user", "U001"); err == nil {
		t.Fatalf("token-reset without --by succeeded")
	}
}

// enrolRunCommand runs one of otpgate's commands with the otpgate binary
// (buildOtpgate), and returns what it printed on standard output.
func enrolRunCommand(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := enrolRunCommandErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s: %v (printed %q)", name, err, out)
	}
	return out
}

func enrolRunCommandErr(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := buildOtpgate()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append([]string{name}, args...)...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%v: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return out, err
}

// "require_otp" for some services: an un-enrolled user of a service that
// requires OTP is sent to enrolment; a service that does not passes
// protected operations through (audited); once one of its users activates a
// token, the whole service requires OTP.
//
// The demo bank has two users of S001 (U001, U002) and one of S002 (U101),
// so S002 is the service named in require_otp and S001 the one that starts
// without it.
func TestEnrolRequireOTPPerService(t *testing.T) {
	e := newEnv(t, envOptions{NoRequireAll: true, Extra: "require_otp S002"})

	required := e.customer("S002", "U101")
	required.login()
	if res := enrolTransfer(required); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=operation" {
		t.Fatalf("S002 transfer without a token: %d → %q; want 303 to /.otpgate/token saying it was not executed", res.StatusCode, res.Header.Get("Location"))
	}
	if res, out := enrolTransferJSON(required); res.StatusCode != http.StatusForbidden || out["error"] != "enrollment_required" {
		t.Fatalf("S002 transfer without a token (JSON): %d %v; want 403 enrollment_required", res.StatusCode, out)
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("ledger %+v; an S002 transfer reached the bank", l)
	}

	// S001 does not require OTP yet: the bank gets the transfer unchanged.
	legacy := e.customer("S001", "U002")
	legacy.login()
	res, body := legacy.postForm("/transfer/execute", enrolTransferForm)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "R0000") {
		t.Fatalf("S001 transfer (no OTP required): %d; want the bank's own answer:\n%s", res.StatusCode, body)
	}
	l := e.ledger()
	if len(l) != 1 || l[0].Service != "S001" || l[0].User != "U002" || l[0].Params["amount"] != "12000" || l[0].Params["to_account"] != "7654321" {
		t.Fatalf("ledger %+v; want the S001/U002 transfer as sent", l)
	}
	pass := enrolFindAudit(enrolAuditTrail(t, e), audit.PassThrough, "S001", "U002")
	if len(pass) != 1 || pass[0].Kind != "transfer" || pass[0].Fields["amount"] != "12000" || pass[0].Digest == "" {
		t.Fatalf("audit legacy_passthrough records %+v; want the transfer with its fields and digest", pass)
	}
	if v := enrolAdminToken(t, e, "S001", "U002"); v["service_requires_otp"] != false {
		t.Fatalf("admin view of S001: %v; want not requiring OTP", v)
	}

	// U001 of S001 enrols: from then on every S001 user needs a token.
	first := e.customer("S001", "U001")
	first.login()
	first.json = true
	first.enrol()
	if v := enrolAdminToken(t, e, "S001", "U002"); v["service_requires_otp"] != true {
		t.Fatalf("admin view of S001 after U001 activated: %v; want requiring OTP", v)
	}
	if res := enrolTransfer(legacy); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token?from=operation" {
		t.Fatalf("S001/U002 transfer after U001 enrolled: %d → %q; want 303 to /.otpgate/token", res.StatusCode, res.Header.Get("Location"))
	}
	if res, out := enrolTransferJSON(legacy); res.StatusCode != http.StatusForbidden || out["error"] != "enrollment_required" {
		t.Fatalf("S001/U002 transfer after U001 enrolled (JSON): %d %v", res.StatusCode, out)
	}
	if n := len(e.ledger()); n != 1 {
		t.Fatalf("ledger has %d entries; want still the one from before", n)
	}
	req := enrolFindAudit(enrolAuditTrail(t, e), audit.RequireOTP, "S001", "")
	if len(req) != 1 || req[0].Actor != "customer:U001" {
		t.Fatalf("audit require_otp records %+v; want one for S001 by customer:U001", req)
	}
	enrolPauseAndRelease(first)
}

// Every gateway page is Japanese by default and English when the browser
// asks for it, and carries the phishing notice.
func TestEnrolPagesLanguageAndPhishingNotice(t *testing.T) {
	e := newEnv(t, envOptions{})
	const (
		noticeJa = "ログイン時やその他の画面で入力を求められた場合はフィッシングの可能性があります。"
		noticeEn = "If you are asked for a one-time password at login or on any other screen, it may be a phishing site."
	)
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	const email, pin = "u001@mobile.example", "4829"
	if res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin}); res.StatusCode != http.StatusOK {
		t.Fatalf("issue: %d %v", res.StatusCode, out)
	}
	setupPath := strings.TrimPrefix(e.setupLink(email), gatewayURL)
	c.json = false
	phone := e.customer("", "")
	anonymous := e.customer("", "")

	type pageCase struct {
		name   string
		who    *customer
		method string
		path   string
		form   func() url.Values
		status int
	}
	cases := []pageCase{
		{"token page (issued)", c, http.MethodGet, "/.otpgate/token", nil, http.StatusOK},
		{"setup page", phone, http.MethodGet, setupPath, nil, http.StatusOK},
		{"setup refused", phone, http.MethodPost, setupPath, func() url.Values {
			return url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "pin": {"9999"}, "csrf": {phone.csrf(setupPath)}}
		}, http.StatusUnauthorized},
		{"setup link gone", phone, http.MethodPost, "/.otpgate/setup/unknown-link", func() url.Values {
			return url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "pin": {pin}, "csrf": {phone.csrf(setupPath)}}
		}, http.StatusGone},
		{"challenge gone", c, http.MethodGet, "/.otpgate/confirm/no-such-challenge", nil, http.StatusGone},
		{"login required", anonymous, http.MethodGet, "/.otpgate/token", nil, http.StatusForbidden},
		{"not found", c, http.MethodGet, "/.otpgate/nothing-here", nil, http.StatusNotFound},
	}
	check := func(pc pageCase, lang, acceptLanguage string) {
		t.Helper()
		var form url.Values
		if pc.form != nil {
			form = pc.form()
		}
		res, page := enrolPage(pc.who, pc.method, pc.path, acceptLanguage, form)
		if res.StatusCode != pc.status || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s (%s): %d %s; want %d HTML", pc.name, lang, res.StatusCode, res.Header.Get("Content-Type"), pc.status)
			return
		}
		notice, other := noticeJa, noticeEn
		if lang == "en" {
			notice, other = noticeEn, noticeJa
		}
		if !strings.Contains(page, `<html lang="`+lang+`">`) || !strings.Contains(page, notice) || strings.Contains(page, other) {
			t.Errorf("%s (Accept-Language %q): want a %s page with the %s phishing notice:\n%s", pc.name, acceptLanguage, lang, lang, page)
		}
	}
	for _, pc := range cases {
		check(pc, "ja", "")
		check(pc, "ja", "ja-JP,ja;q=0.9,en;q=0.5")
		check(pc, "en", "en-US,en;q=0.9")
	}

	// The pages of a working token: STEP 3, a paused transfer, the revoke.
	// Three wrong tries above (one per language) left the link alive.
	res, out := enrolSetupJSON(e, setupPath, "S001", "U001", pin)
	uri, _ := out["otpauth_uri"].(string)
	if res.StatusCode != http.StatusOK || uri == "" {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	code, step, secret := enrolCodeFromURI(t, uri, e.clock.Now())
	c.secret, c.lastStepUsed = secret, step
	for _, lang := range []string{"", "en"} {
		_, page := enrolPage(c, http.MethodGet, "/.otpgate/token", lang, nil)
		if want := map[string]string{"": noticeJa, "en": noticeEn}[lang]; !strings.Contains(page, want) || !strings.Contains(page, `action="/.otpgate/token/confirm"`) {
			t.Errorf("STEP 3 token page (%q) lacks the notice or the confirm form", lang)
		}
	}
	if res, page := enrolPage(c, http.MethodPost, "/.otpgate/token/confirm", "en", url.Values{"otp": {code}, "csrf": {c.csrf("/.otpgate/token")}}); res.StatusCode != http.StatusOK || !strings.Contains(page, noticeEn) {
		t.Fatalf("activation page (en): %d:\n%s", res.StatusCode, page)
	}
	res = enrolTransfer(c)
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("transfer: %d → %q", res.StatusCode, loc)
	}
	for _, pc := range []pageCase{
		{"confirm page", c, http.MethodGet, loc, nil, http.StatusOK},
		{"token page (active)", c, http.MethodGet, "/.otpgate/token", nil, http.StatusOK},
		{"wrong code", c, http.MethodPost, loc, func() url.Values {
			return url.Values{"otp": {enrolWrongCode(c)}, "csrf": {c.csrf(loc)}}
		}, http.StatusOK},
		{"issue refused (active token)", c, http.MethodPost, "/.otpgate/token/issue", func() url.Values {
			return url.Values{"email": {email}, "pin": {pin}, "csrf": {c.csrf("/.otpgate/token")}}
		}, http.StatusConflict},
		{"renew too early", c, http.MethodPost, "/.otpgate/token/renew", func() url.Values {
			return url.Values{"otp": {c.code()}, "csrf": {c.csrf("/.otpgate/token")}}
		}, http.StatusConflict},
		{"csrf refused", c, http.MethodPost, "/.otpgate/token/revoke", func() url.Values { return url.Values{} }, http.StatusForbidden},
	} {
		check(pc, "ja", "")
		check(pc, "en", "en")
	}
	_, page := enrolPage(c, http.MethodGet, loc, "en", nil)
	if !strings.Contains(page, "Payee account") || !strings.Contains(page, "7654321") {
		t.Errorf("English confirm page lacks the English field label or the value:\n%s", page)
	}
	_, page = enrolPage(c, http.MethodGet, loc, "", nil)
	if !strings.Contains(page, "振込先口座") {
		t.Errorf("Japanese confirm page lacks the Japanese field label:\n%s", page)
	}
}
