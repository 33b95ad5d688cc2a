package caddymodule

import (
	"encoding/base32"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
)

// Integration tests of the token lifecycle (issue 3): the customer's STEP
// 1-3 enrolment, renewal, revocation, the bank's reset and unlock, the
// company-wide requirement and the security mails, all through the real
// Caddy handler chain in front of the demo bank. Mail goes to a real SMTP
// server (go-smtp) over STARTTLS with AUTH PLAIN, trusted through the smtp
// block's ca_file.

// enrolSMTPEnv starts a relay and a gateway that mails through it.
func enrolSMTPEnv(t *testing.T, opt envOptions) (*env, *enrolRelay) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	r := enrolStartRelay(t)
	opt.Mail = r.caddyfile()
	return newEnv(t, opt), r
}

// STEP 1-3 as a customer does it in a browser (forms with CSRF tokens) and
// on a phone, with the setup mail caught by a real SMTP server.
func TestEnrolJourneyBrowserSMTP(t *testing.T) {
	e, relay := enrolSMTPEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	const email, pin = "taro.yamada@mobile.example", "80529163"

	// STEP 1: the token page offers to issue; the form needs its CSRF token.
	res, page := enrolPage(c, http.MethodGet, "/.otpgate/token", "", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `action="/.otpgate/token/issue"`) {
		t.Fatalf("token page: %d; want the issue form:\n%s", res.StatusCode, page)
	}
	if strings.Contains(page, "***") {
		t.Errorf("token page before any issue shows a masked address:\n%s", page)
	}
	res, _ = enrolPage(c, http.MethodPost, "/.otpgate/token/issue", "", url.Values{"email": {email}, "pin": {pin}})
	if res.StatusCode != http.StatusForbidden || relay.count() != 0 {
		t.Fatalf("issue without CSRF token: %d, %d mails; want 403 and none", res.StatusCode, relay.count())
	}
	csrf := c.csrf("/.otpgate/token")
	res, page = enrolPage(c, http.MethodPost, "/.otpgate/token/issue", "", url.Values{"email": {email}, "pin": {pin}, "csrf": {csrf}})
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "ta***@mobile.example") {
		t.Fatalf("issue: %d; want the token page naming the masked address:\n%s", res.StatusCode, page)
	}

	m := relay.waitMail(email, "OTP token setup")
	m.checkEnvelope(t, email)
	link := enrolLink(t, m)
	if !strings.HasPrefix(link, gatewayURL+"/.otpgate/setup/") || len(strings.TrimPrefix(link, gatewayURL+"/.otpgate/setup/")) < 22 {
		t.Fatalf("setup link %q: want %s/.otpgate/setup/<at least 128 bits>", link, gatewayURL)
	}
	if strings.Contains(m.Body, pin) {
		t.Errorf("setup mail carries the activation PIN")
	}
	if st := enrolTokenState(c); st["state"] != "issued" {
		t.Fatalf("token after issue: %v; want issued", st)
	}

	// STEP 2 on the phone: no login, its own cookies; the page is a form.
	phone := e.customer("", "")
	path := strings.TrimPrefix(link, gatewayURL)
	res, page = enrolPage(phone, http.MethodGet, path, "", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `name="service_id"`) || !strings.Contains(page, `name="pin"`) ||
		!strings.Contains(page, `name="viewport"`) || strings.Contains(page, "<script") {
		t.Fatalf("setup page: %d; want a phone form without scripts:\n%s", res.StatusCode, page)
	}
	form := url.Values{"service_id": {"S001"}, "user_id": {"U001"}, "pin": {pin}, "csrf": {phone.csrf(path)}}
	res, page = enrolPage(phone, http.MethodPost, regexpAction(t, page), "", form)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d:\n%s", res.StatusCode, page)
	}
	href := enrolOTPAuthHref.FindStringSubmatch(page)
	qr := enrolQRSrc.FindStringSubmatch(page)
	typed := enrolSecretCode.FindStringSubmatch(page)
	if href == nil || qr == nil || typed == nil {
		t.Fatalf("setup page lacks the otpauth link, the QR code or the secret:\n%s", page)
	}
	uri := href[1]
	if got := enrolDecodeQR(t, enrolB64(t, qr[1])); got != uri {
		t.Fatalf("QR code decodes to %q; want the page's otpauth link %q", got, uri)
	}
	k := enrolParseURI(t, uri)
	if b32 := strings.ReplaceAll(typed[1], " ", ""); b32 != base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(k.Secret) {
		t.Fatalf("secret to type %q differs from the QR code's", typed[1])
	}
	if k.Issuer != "テスト信用組合" || k.Period != 60 || k.Digits != 6 || k.Algorithm != "SHA1" || len(k.Secret) < 20 {
		t.Fatalf("otpauth %+v; want issuer テスト信用組合, 60 s, 6 digits, SHA1, 160-bit secret", k)
	}
	// The link works once.
	res, _ = enrolPage(phone, http.MethodPost, path, "", form)
	if res.StatusCode != http.StatusGone {
		t.Fatalf("second setup with the same link: %d; want 410", res.StatusCode)
	}

	// STEP 3 back in the browser: the first code from the phone activates.
	code, step, secret := enrolCodeFromURI(t, uri, e.clock.Now())
	c.secret, c.lastStepUsed = secret, step
	res, page = enrolPage(c, http.MethodGet, "/.otpgate/token", "", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `action="/.otpgate/token/confirm"`) {
		t.Fatalf("token page after setup: %d; want 200 and the confirm form:\n%s", res.StatusCode, page)
	}
	res, page = enrolPage(c, http.MethodPost, "/.otpgate/token/confirm", "", url.Values{"otp": {code}, "csrf": {c.csrf("/.otpgate/token")}})
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `action="/.otpgate/token/revoke"`) {
		t.Fatalf("activation: %d; want the token page of an active token:\n%s", res.StatusCode, page)
	}
	st := enrolTokenState(c)
	if st["state"] != "active" {
		t.Fatalf("token after activation: %v", st)
	}
	if exp := enrolExpires(t, st); exp.Sub(e.clock.Now()) < 364*24*time.Hour || exp.Sub(e.clock.Now()) > 366*24*time.Hour {
		t.Errorf("expires %v; want a year from now (%v)", exp, e.clock.Now())
	}
	relay.waitMail(email, "OTP token activated").checkEnvelope(t, email)

	// From now on a transfer is paused and the phone's next code releases it.
	res = enrolTransfer(c)
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("transfer: %d → %q; want 303 to the confirm page", res.StatusCode, loc)
	}
	_, page = c.get(loc)
	res, body := c.postForm(regexpAction(t, page), url.Values{"otp": {c.code()}, "csrf": {c.csrf(loc)}})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "R0000") {
		t.Fatalf("confirm: %d; want the bank's completion page:\n%s", res.StatusCode, body)
	}
	if l := e.ledger(); len(l) != 1 || l[0].User != "U001" || l[0].Params["amount"] != "12000" {
		t.Fatalf("ledger %+v; want the one transfer", l)
	}
}

// The same journey through the JSON contract that outside checks use:
// email, pin → mail; service_id, user_id, pin → secret, otpauth_uri, qr_png;
// otp → active.
func TestEnrolJourneyJSONSMTP(t *testing.T) {
	e, relay := enrolSMTPEnv(t, envOptions{})
	c := e.customer("S001", "U002")
	c.login()
	c.json = true
	const email, pin = "hanako.sato@mobile.example", "6150"

	if st := enrolTokenState(c); st["state"] != "none" || st["email"] != "" {
		t.Fatalf("token before issue: %v; want none, without an address", st)
	}
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin})
	if res.StatusCode != http.StatusOK || out["status"] != "issued" || out["email"] != "ha***@mobile.example" {
		t.Fatalf("issue: %d %v", res.StatusCode, out)
	}
	m := relay.waitMail(email, "OTP token setup")
	m.checkEnvelope(t, email)
	link := enrolLink(t, m)
	if relay.count() != 1 {
		t.Fatalf("relay has %d mails; want the one setup mail", relay.count())
	}

	phone := e.customer("", "")
	phone.json = true
	res, body := phone.get(strings.TrimPrefix(link, gatewayURL))
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "service_id") {
		t.Fatalf("GET setup link as JSON: %d %s", res.StatusCode, body)
	}
	res, out = enrolSetupJSON(e, link, "S001", "U002", pin)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	secret, _ := out["secret"].(string)
	uri, _ := out["otpauth_uri"].(string)
	qrB64, _ := out["qr_png"].(string)
	if secret == "" || uri == "" || qrB64 == "" {
		t.Fatalf("setup answer %v; want secret, otpauth_uri and qr_png", out)
	}
	if got := enrolDecodeQR(t, enrolB64(t, qrB64)); got != uri {
		t.Fatalf("qr_png decodes to %q; want otpauth_uri %q", got, uri)
	}
	k := enrolParseURI(t, uri)
	if base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(k.Secret) != strings.ToUpper(secret) || len(k.Secret) < 20 {
		t.Fatalf("secret %q and otpauth_uri %q disagree, or under 160 bits", secret, uri)
	}
	if !strings.HasPrefix(k.Label, "テスト信用組合:") || !strings.Contains(k.Label, "U002") {
		t.Errorf("otpauth label %q; want issuer:account naming the user", k.Label)
	}

	// A wrong first code does not activate; the right one does.
	code, step, raw := enrolCodeFromURI(t, uri, e.clock.Now())
	c.secret = raw
	res, out = c.postJSON("/.otpgate/token/confirm", map[string]string{"otp": enrolWrongCode(c)})
	if res.StatusCode != http.StatusUnauthorized || out["error"] != "invalid_otp" {
		t.Fatalf("wrong first code: %d %v; want 401 invalid_otp", res.StatusCode, out)
	}
	if st := enrolTokenState(c); st["state"] != "initialised" {
		t.Fatalf("token after a wrong first code: %v; want initialised", st)
	}
	c.lastStepUsed = step
	res, out = c.postJSON("/.otpgate/token/confirm", map[string]string{"otp": code})
	if res.StatusCode != http.StatusOK || out["status"] != "activated" || out["state"] != "active" {
		t.Fatalf("activate: %d %v", res.StatusCode, out)
	}
	relay.waitMail(email, "OTP token activated").checkEnvelope(t, email)

	// The activating code's time step is spent: it releases nothing.
	res, out = enrolTransferJSON(c)
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("transfer: %d %v; want 401 otp_required", res.StatusCode, out)
	}
	if res, out = c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": code}); res.StatusCode != http.StatusConflict || out["error"] != "otp_reused" {
		t.Fatalf("the activating code on a transfer: %d %v; want 409 otp_reused", res.StatusCode, out)
	}
	if len(e.ledger()) != 0 {
		t.Fatalf("ledger %+v after a spent code", e.ledger())
	}

	enrolPauseAndRelease(c)
	trail := enrolAuditTrail(t, e)
	for _, ev := range []audit.Event{audit.Issued, audit.SetupDone, audit.Activated, audit.Released} {
		if len(enrolFindAudit(trail, ev, "S001", "U002")) == 0 {
			t.Errorf("audit trail lacks %s for S001/U002", ev)
		}
	}
	for _, r := range trail {
		line := r.Detail + r.Request + strings.Join(mapValues(r.Fields), " ")
		if strings.Contains(line, secret) || strings.Contains(line, strings.TrimPrefix(link, gatewayURL+"/.otpgate/setup/")) {
			t.Errorf("audit record %+v holds the secret or the setup link", r)
		}
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// STEP 2 refusals: a wrong service ID, user ID or PIN gets one and the same
// answer; the fifth wrong try kills the link; an expired or used link is
// gone.
func TestEnrolSetupLinkRefusals(t *testing.T) {
	e, relay := enrolSMTPEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	const email, pin = "u001@mobile.example", "2468"
	issue := func() string {
		t.Helper()
		before := relay.count()
		res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin})
		if res.StatusCode != http.StatusOK {
			t.Fatalf("issue: %d %v", res.StatusCode, out)
		}
		if relay.count() != before+1 {
			t.Fatalf("issue sent %d mails; want 1", relay.count()-before)
		}
		return enrolLink(t, relay.waitMail(email, "OTP token setup"))
	}
	wrong := func(link, service, user, p string) (int, map[string]any) {
		t.Helper()
		res, out := enrolSetupJSON(e, link, service, user, p)
		return res.StatusCode, out
	}

	link := issue()
	var first map[string]any
	for i, try := range [][3]string{{"S001", "U001", "2469"}, {"S001", "U002", pin}, {"S002", "U001", pin}} {
		status, out := wrong(link, try[0], try[1], try[2])
		if status != http.StatusUnauthorized || out["error"] != "setup_failed" {
			t.Fatalf("wrong try %v: %d %v; want 401 setup_failed", try, status, out)
		}
		if i == 0 {
			first = out
		} else if out["message"] != first["message"] || len(out) != len(first) {
			t.Fatalf("wrong try %v answered %v, unlike the wrong PIN's %v: the answer must not tell which was wrong", try, out, first)
		}
	}
	// The same refusal as a page on the phone.
	phone := e.customer("", "")
	path := strings.TrimPrefix(link, gatewayURL)
	res, page := enrolPage(phone, http.MethodPost, path, "", url.Values{"service_id": {"S009"}, "user_id": {"U001"}, "pin": {pin}, "csrf": {phone.csrf(path)}})
	if res.StatusCode != http.StatusUnauthorized || strings.Contains(page, "S009") {
		t.Fatalf("wrong try as a form: %d; want 401 without echoing the values:\n%s", res.StatusCode, page)
	}
	// The fifth wrong try is still a refusal, and kills the link.
	if status, out := wrong(link, "S001", "U001", "0000"); status != http.StatusUnauthorized || out["error"] != "setup_failed" {
		t.Fatalf("fifth wrong try: %d %v; want 401 setup_failed", status, out)
	}
	if status, out := wrong(link, "S001", "U001", pin); status != http.StatusGone || out["error"] != "link_gone" {
		t.Fatalf("right data after five wrong tries: %d %v; want 410 link_gone", status, out)
	}
	if n := len(enrolFindAudit(enrolAuditTrail(t, e), audit.SetupFailed, "S001", "U001")); n != 5 {
		t.Errorf("audit has %d setup_failed records; want 5", n)
	}

	// A re-issue gives a new link; the one it replaces is gone.
	old := issue()
	link = issue()
	if status, out := wrong(old, "S001", "U001", pin); status != http.StatusGone {
		t.Fatalf("replaced link: %d %v; want 410", status, out)
	}
	// An expired link: 24 hours later.
	e.clock.Advance(24*time.Hour + time.Second)
	if status, out := wrong(link, "S001", "U001", pin); status != http.StatusGone || out["error"] != "link_gone" {
		t.Fatalf("link after 24 h: %d %v; want 410 link_gone", status, out)
	}
	c.login() // the gateway's session binding idled out meanwhile
	// A used link.
	link = issue()
	if status, out := wrong(link, "S001", "U001", pin); status != http.StatusOK {
		t.Fatalf("setup: %d %v", status, out)
	}
	if status, out := wrong(link, "S001", "U001", pin); status != http.StatusGone || out["error"] != "link_gone" {
		t.Fatalf("used link: %d %v; want 410 link_gone", status, out)
	}
	if st := enrolTokenState(c); st["state"] != "initialised" {
		t.Fatalf("token: %v; want initialised after the one setup", st)
	}
}

// A mail failure on issue is reported (502 mail_failed) and changes
// nothing: refused by the relay, or the relay down.
func TestEnrolIssueMailFailure(t *testing.T) {
	e, relay := enrolSMTPEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	const email, pin = "u001@mobile.example", "1357"
	check := func(what string) {
		t.Helper()
		st := enrolTokenState(c)
		if st["state"] != "none" || st["expires"] != nil {
			t.Fatalf("token after %s: %v; want none, untouched", what, st)
		}
		if n := len(enrolFindAudit(enrolAuditTrail(t, e), audit.Issued, "S001", "U001")); n != 0 {
			t.Fatalf("audit has %d token_issued records after %s; want none", n, what)
		}
		if relay.count() != 0 {
			t.Fatalf("relay accepted %d mails after %s", relay.count(), what)
		}
	}

	relay.setRefuse(true)
	c.json = true
	res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin})
	if res.StatusCode != http.StatusBadGateway || out["error"] != "mail_failed" {
		t.Fatalf("issue with the relay refusing: %d %v; want 502 mail_failed", res.StatusCode, out)
	}
	check("a refused mail")
	c.json = false
	res, page := enrolPage(c, http.MethodPost, "/.otpgate/token/issue", "", url.Values{"email": {email}, "pin": {pin}, "csrf": {c.csrf("/.otpgate/token")}})
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(page, `action="/.otpgate/token/issue"`) {
		t.Fatalf("issue form with the relay refusing: %d; want 502 and the issue form again:\n%s", res.StatusCode, page)
	}
	check("a refused mail (form)")

	relay.stop()
	c.json = true
	start := time.Now()
	res, out = c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin})
	if res.StatusCode != http.StatusBadGateway || out["error"] != "mail_failed" {
		t.Fatalf("issue with the relay down: %d %v; want 502 mail_failed", res.StatusCode, out)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("issue with the relay down took %v", d)
	}
	check("the relay down")
	// Transfers still lead to enrolment, not through.
	if res, out := enrolTransferJSON(c); res.StatusCode != http.StatusForbidden || out["error"] != "enrollment_required" {
		t.Fatalf("transfer: %d %v; want 403 enrollment_required", res.StatusCode, out)
	}

	// Once the relay is back, issuing works and the link sets the token up.
	relay.restart()
	relay.setRefuse(false)
	res, out = c.postJSON("/.otpgate/token/issue", map[string]string{"email": email, "pin": pin})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("issue with the relay back: %d %v", res.StatusCode, out)
	}
	if res, out := enrolSetupJSON(e, enrolLink(t, relay.waitMail(email, "OTP token setup")), "S001", "U001", pin); res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	if relay.count() != 1 {
		t.Fatalf("relay accepted %d mails; want the one setup mail", relay.count())
	}
}

// Security events are mailed to the customer's address: activated, locked
// (five wrong codes), unlocked, revoked, reset by the bank.
func TestEnrolSecurityMailsSMTP(t *testing.T) {
	e, relay := enrolSMTPEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	const email = "u001.phone@mobile.example"
	enrolViaRelay(c, relay, email, "97531")
	secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(c.secret)
	mails := []enrolMail{relay.waitMail(email, "OTP token activated")}

	// Five wrong codes on a paused transfer lock the customer.
	res, out := enrolTransferJSON(c)
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("transfer: %d %v", res.StatusCode, out)
	}
	for i := 1; i <= 5; i++ {
		res, out = c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": enrolWrongCode(c)})
		want := http.StatusUnauthorized
		if i == 5 {
			want = http.StatusLocked
		}
		if res.StatusCode != want {
			t.Fatalf("wrong code %d: %d %v; want %d", i, res.StatusCode, out, want)
		}
	}
	mails = append(mails, relay.waitMail(email, "OTP locked"))

	db := e.dir + "/otpgate.db"
	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/unlock?db="+url.QueryEscape(db), map[string]string{"service": "S001", "user": "U001", "by": "tanaka"}); status != http.StatusOK {
		t.Fatalf("unlock: %d %s", status, b)
	}
	mails = append(mails, relay.waitMail(email, "OTP unlocked"))

	// Revoke, confirmed with a code.
	res, out = c.postJSON("/.otpgate/token/revoke", map[string]string{})
	id, _ = out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("revoke: %d %v; want 401 otp_required", res.StatusCode, out)
	}
	if res, out = c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": c.code()}); res.StatusCode != http.StatusOK {
		t.Fatalf("confirm revoke: %d %v", res.StatusCode, out)
	}
	mails = append(mails, relay.waitMail(email, "OTP token revoked"))

	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/reset?db="+url.QueryEscape(db), map[string]string{"service": "S001", "user": "U001", "by": "tanaka"}); status != http.StatusOK {
		t.Fatalf("reset: %d %s", status, b)
	}
	mails = append(mails, relay.waitMail(email, "OTP token reset by the bank"))

	for _, m := range mails {
		m.checkEnvelope(t, email)
		if strings.Contains(m.Body, secret) || strings.Contains(m.Body, "/.otpgate/setup/") {
			t.Errorf("mail %q carries the secret or a setup link", m.Subject)
		}
		if !strings.Contains(m.Subject, "【ワンタイムパスワード】") {
			t.Errorf("mail subject %q is not the Japanese one with an English part", m.Subject)
		}
	}
}
