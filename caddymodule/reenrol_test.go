package caddymodule

import (
	"mime"
	"net/http"
	netmail "net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/pages"
)

// Issue 6, class 4 (SECURITY.md 28): re-enrolment needs the token or the
// bank. Through the real chain in front of the demo bank, with the gateway's
// mail folder as the customer's mailboxes.

// reenrolMail is one mail the gateway wrote into its mail folder.
type reenrolMail struct {
	To, Subject, Body string
}

// reenrolMails reads every mail of the folder that went to addr.
func reenrolMails(e *env, addr string) []reenrolMail {
	e.t.Helper()
	files, err := filepath.Glob(filepath.Join(e.dir, "mail", "*.eml"))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []reenrolMail
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			e.t.Fatal(err)
		}
		msg, err := netmail.ReadMessage(f)
		if err != nil {
			f.Close()
			e.t.Fatalf("%s: %v", name, err)
		}
		to, err := netmail.ParseAddress(msg.Header.Get("To"))
		if err != nil {
			f.Close()
			e.t.Fatalf("%s: To %q: %v", name, msg.Header.Get("To"), err)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			f.Close()
			e.t.Fatalf("%s: subject: %v", name, err)
		}
		body := decodeBody(e.t, msg)
		f.Close()
		if to.Address == addr {
			out = append(out, reenrolMail{To: to.Address, Subject: subject, Body: body})
		}
	}
	return out
}

// reenrolSubjects lists the English ends of the subjects of addr's mails.
func reenrolSubjects(e *env, addr string) []string {
	var out []string
	for _, m := range reenrolMails(e, addr) {
		_, en, _ := strings.Cut(m.Subject, " / ")
		out = append(out, en)
	}
	return out
}

// reenrolWaitMail waits, a bounded time, for a mail to addr whose subject
// ends with subjectEnd: notices other than the issue's own come from the
// outbox sender, after the response.
func reenrolWaitMail(e *env, addr, subjectEnd string) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, s := range reenrolSubjects(e, addr) {
			if s == subjectEnd {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no mail %q to %s; got %v", subjectEnd, addr, reenrolSubjects(e, addr))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reenrolIssuedNotice checks the one notice of a new issue that addr got:
// Japanese, then English, then the phishing notice, and no setup link.
func reenrolIssuedNotice(t *testing.T, e *env, addr string) {
	t.Helper()
	var got []reenrolMail
	for _, m := range reenrolMails(e, addr) {
		if strings.HasSuffix(m.Subject, " / New OTP token issued") {
			got = append(got, m)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%s got %d issue notices; want 1 (mails: %v)", addr, len(got), reenrolSubjects(e, addr))
	}
	b := got[0].Body
	ja := strings.Index(b, "新しいトークンの発行を受け付けました")
	en := strings.Index(b, "a new one-time password token was issued for the user ID below")
	notice := strings.Index(b, "■ワンタイムパスワードに関するご注意")
	if ja < 0 || en < ja || notice < en {
		t.Errorf("issue notice to %s: Japanese %d, English %d, phishing notice %d; want them in this order:\n%s", addr, ja, en, notice, b)
	}
	if !strings.HasPrefix(got[0].Subject, "【ワンタイムパスワード】トークン発行のお知らせ") {
		t.Errorf("issue notice subject %q; want Japanese first", got[0].Subject)
	}
	if linkPattern.MatchString(b) {
		t.Errorf("the issue notice to the previous address carries a setup link:\n%s", b)
	}
}

// reenrolIssueForm posts STEP 1 as a browser in a language.
func reenrolIssueForm(c *customer, email, lang string) (*http.Response, string) {
	c.e.t.Helper()
	return enrolPage(c, http.MethodPost, "/.otpgate/token/issue", lang,
		url.Values{"email": {email}, "pin": {"9371"}, "csrf": {c.csrf("/.otpgate/token")}})
}

// The attack: the token expires; someone with the password alone issues a
// token for their own phone. Refused (JSON and pages, Japanese and English),
// audited, nothing mailed to the attacker, no transfer. The customer renews
// with a code after expiry and transfers; after a bank reset an issue by
// password works, and the previously registered address is told of it.
func TestReenrolExpiredTokenNeedsTokenOrBank(t *testing.T) {
	e := newEnv(t, envOptions{})
	db := url.QueryEscape(filepath.Join(e.dir, "otpgate.db"))
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	c.enrol()
	const owner, attacker = "u001@mobile.example", "attacker@evil.example"

	e.clock.Advance(366 * enrolDay)
	a := e.customer("S001", "U001") // another browser, the password only
	a.login()
	a.json = true
	if st := enrolTokenState(a); st["state"] != "expired" {
		t.Fatalf("token a year and a day after activation: %v; want expired", st)
	}
	reenrolWaitMail(e, owner, "OTP token activated")
	mailsBefore := len(reenrolSubjects(e, owner))

	res, out := a.postJSON("/.otpgate/token/issue", map[string]string{"email": attacker, "pin": "9371"})
	msg, _ := out["message"].(string)
	if res.StatusCode != http.StatusForbidden || out["error"] != "reissue_requires_token_or_bank" ||
		!strings.HasPrefix(msg, "otpgate: ") || !strings.Contains(msg, "Renew") || !strings.Contains(msg, "reset") {
		t.Fatalf("issue by password over an expired token (JSON): %d %v; want 403 reissue_requires_token_or_bank saying renew or reset", res.StatusCode, out)
	}
	a.json = false
	for _, lang := range []struct {
		accept string
		lang   pages.Lang
	}{{"", pages.Japanese}, {"en", pages.English}} {
		res, page := reenrolIssueForm(a, attacker, lang.accept)
		if want := pages.T(lang.lang, "reissue_requires_token_or_bank"); res.StatusCode != http.StatusForbidden || !strings.Contains(page, want) {
			t.Fatalf("issue by password over an expired token (page, Accept-Language %q): %d; want 403 with %q:\n%s", lang.accept, res.StatusCode, want, page)
		}
		// The page offers what works: renewal with a code, not another issue.
		if !strings.Contains(page, `action="/.otpgate/token/renew"`) || strings.Contains(page, `action="/.otpgate/token/issue"`) {
			t.Errorf("refusal page (%q) offers no renewal or still offers an issue:\n%s", lang.accept, page)
		}
	}
	a.json = true
	if n := len(reenrolMails(e, attacker)); n != 0 {
		t.Fatalf("the attacker's address got %d mails", n)
	}
	if n := len(reenrolSubjects(e, owner)); n != mailsBefore {
		t.Errorf("refused issues mailed the customer %d times", n-mailsBefore)
	}
	if res, out := enrolTransferJSON(a); res.StatusCode != http.StatusForbidden || out["error"] != "token_expired" {
		t.Fatalf("transfer after the refused issue: %d %v; want 403 token_expired", res.StatusCode, out)
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("the bank executed %+v", l)
	}
	if st := enrolTokenState(a); st["state"] != "expired" || st["email"] != "u0***@mobile.example" {
		t.Fatalf("token after the refused issues: %v; want expired, the customer's address", st)
	}
	var refused int
	for _, r := range enrolFindAudit(enrolAuditTrail(t, e), audit.Refused, "S001", "U001") {
		if strings.HasPrefix(r.Detail, "token issue, state expired") && r.ClientIP != "" {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d audited issue refusals; want 3 (JSON, Japanese page, English page)", refused)
	}

	// The customer renews after expiry with a code from the token.
	c.login()
	if res, out := c.postJSON("/.otpgate/token/renew", map[string]string{"otp": c.code()}); res.StatusCode != http.StatusOK || out["state"] != "active" {
		t.Fatalf("renew after expiry with a code: %d %v", res.StatusCode, out)
	}
	enrolPauseAndRelease(c)

	// The bank resets it (lost phone); an issue by password then works, and
	// the address registered before hears of it.
	if status, b := enrolAdmin(t, http.MethodPost, "/otpgate/reset?db="+db, map[string]string{"service": "S001", "user": "U001", "by": "yamada"}); status != http.StatusOK {
		t.Fatalf("reset: %d %s", status, b)
	}
	const newPhone = "u001@new-phone.example"
	if res, out := c.postJSON("/.otpgate/token/issue", map[string]string{"email": newPhone, "pin": "2468"}); res.StatusCode != http.StatusOK || out["status"] != "issued" {
		t.Fatalf("issue after a bank reset: %d %v", res.StatusCode, out)
	}
	reenrolIssuedNotice(t, e, owner)
	link := e.setupLink(newPhone)
	res, out = c.postJSON(strings.TrimPrefix(link, gatewayURL), map[string]string{"service_id": "S001", "user_id": "U001", "pin": "2468"})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup of the new phone: %d %v", res.StatusCode, out)
	}
	c.secret = enrolParseURI(t, out["otpauth_uri"].(string)).Secret
	if res, out := c.postJSON("/.otpgate/token/confirm", map[string]string{"otp": c.code()}); res.StatusCode != http.StatusOK {
		t.Fatalf("activation of the new phone: %d %v", res.StatusCode, out)
	}
	enrolPauseAndRelease(c)
	if n := len(reenrolMails(e, attacker)); n != 0 {
		t.Fatalf("the attacker's address got %d mails", n)
	}
}

// A customer revokes with a code (before changing phones) and issues for
// the new phone by password: allowed, and the old address is told. Someone
// with the password then replaces that pending issue: allowed — refusing it
// would let whoever issued first keep the enrolment — but not silently: the
// pending address is told, the replaced link is dead, and the audit says so.
func TestReenrolAfterRevokeAndPendingReplaced(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	c.json = true
	c.enrol()
	const oldPhone, newPhone, attacker = "u001@mobile.example", "u001@new-phone.example", "attacker@evil.example"

	res, out := c.postJSON("/.otpgate/token/revoke", map[string]string{})
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("revoke: %d %v; want 401 otp_required", res.StatusCode, out)
	}
	if res, out = c.postJSON("/.otpgate/confirm/"+id, map[string]string{"otp": c.code()}); res.StatusCode != http.StatusOK || out["status"] != "revoked" {
		t.Fatalf("confirm revoke: %d %v", res.StatusCode, out)
	}
	if res, out = c.postJSON("/.otpgate/token/issue", map[string]string{"email": newPhone, "pin": "2468"}); res.StatusCode != http.StatusOK {
		t.Fatalf("issue after a revoke: %d %v; want 200", res.StatusCode, out)
	}
	reenrolIssuedNotice(t, e, oldPhone)
	pending := e.setupLink(newPhone)

	a := e.customer("S001", "U001")
	a.login()
	a.json = true
	if res, out = a.postJSON("/.otpgate/token/issue", map[string]string{"email": attacker, "pin": "9371"}); res.StatusCode != http.StatusOK {
		t.Fatalf("issue over a pending issue: %d %v; want 200", res.StatusCode, out)
	}
	reenrolIssuedNotice(t, e, newPhone)
	if res, out = c.postJSON(strings.TrimPrefix(pending, gatewayURL), map[string]string{"service_id": "S001", "user_id": "U001", "pin": "2468"}); res.StatusCode != http.StatusGone || out["error"] != "link_gone" {
		t.Fatalf("the replaced link: %d %v; want 410 link_gone", res.StatusCode, out)
	}
	var replaced bool
	for _, r := range enrolFindAudit(enrolAuditTrail(t, e), audit.Issued, "S001", "U001") {
		if strings.Contains(r.Detail, "replaces the unfinished issue (issued)") && strings.Contains(r.Detail, "previous address u0***@new-phone.example") {
			replaced = true
		}
	}
	if !replaced {
		t.Errorf("audit has no issue record naming the replaced pending issue and the notified address")
	}
}
