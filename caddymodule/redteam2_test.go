package caddymodule

import (
	"encoding/base32"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Second outside red-team pass (issue 6): attacks that the repository's
// other attack tests do not contain. Stopped attacks stay here as
// regression tests; a bypass is a failing TestRedteam2Bypass… test.

// rt2Issue asks for a token (STEP 1) as c with a Host header of the
// caller's choosing.
func rt2Issue(t *testing.T, c *customer, host, email, pin string) (int, map[string]any) {
	t.Helper()
	jar := c.c.Jar
	b, _ := json.Marshal(map[string]string{"email": email, "pin": pin})
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/.otpgate/token/issue", strings.NewReader(string(b)))
	req.Host = host
	// The jar files cookies under the URL's host; the attacker sends the
	// session cookie whatever Host header they write.
	u, _ := url.Parse(gatewayURL)
	for _, k := range c.c.Jar.Cookies(u) {
		req.Header.Add("Cookie", k.Name+"="+k.Value)
	}
	c.c.Jar = nil
	defer func() { c.c.Jar = jar }()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, body := c.do(req)
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	return res.StatusCode, out
}

// Setup-link Host poisoning. With the shipped defaults (enrol_address
// registered, public_url unset, a site address without a host) the
// attacker, who has only the victim's password, logs in as the victim and
// asks for a token with a forged Host header and a PIN of their own. The
// genuine mail to the victim's registered address then carries the
// one-time setup link under the attacker's host: one click (or a mail
// scanner following links) hands the attacker the link, and with the PIN
// they chose they activate a token bound to the victim and confirm
// transfers with their own codes.
//
// Wanted: the link's host is never taken from a request the attacker
// controls (public_url required when enrol_address is registered or
// domain, or the site's configured host, or refusal of an unknown Host).
func TestRedteam2SetupLinkHostPoisoningStopped(t *testing.T) {
	// The second Host reads as the real gateway to a customer glancing at
	// the mail, and is userinfo before the attacker's host to a browser.
	for _, evil := range []string{"ib-verify.attacker.example", gatewayURL[len("http://"):] + "@attacker.example"} {
		t.Run(evil, func(t *testing.T) { rt2HostPoisoning(t, evil) })
	}
}

func rt2HostPoisoning(t *testing.T, evil string) {
	e := newEnv(t, envOptions{Extra: "enrol_address registered"})
	if status, out := registeredImport(t, e, "S001,U001,u001@mobile.example\n", "bank"); status != http.StatusOK {
		t.Fatalf("import: %d %v", status, out)
	}
	attacker := e.customer("S001", "U001") // the victim's password only
	attacker.login()
	status, out := rt2Issue(t, attacker, evil, "u001@mobile.example", "5093")
	if status != http.StatusOK {
		t.Logf("issue with Host %s refused: %d %v", evil, status, out)
		return // stopped
	}
	link := e.setupLink("u001@mobile.example")
	u, err := url.Parse(link)
	if err != nil || u.Host == gatewayURL[len("http://"):] {
		return // the link names the real gateway
	}
	// The attacker's server has received the link; the rest is the real
	// gateway with the PIN the attacker chose.
	t.Errorf("the victim's setup mail links to the attacker's host %q: %s", u.Host, link)
	attacker.json = true
	res, so := attacker.postJSON(u.Path, map[string]string{"service_id": "S001", "user_id": "U001", "pin": "5093"})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup with the stolen link: %d %v", res.StatusCode, so)
	}
	secret, _ := so["secret"].(string)
	attacker.secret, _ = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if res, ao := attacker.postJSON("/.otpgate/token/confirm", map[string]string{"otp": attacker.code()}); res.StatusCode != http.StatusOK {
		t.Fatalf("activate: %d %v", res.StatusCode, ao)
	}
	attacker.json = false
	res, _ = attacker.postForm("/transfer/execute", url.Values{"to_bank": {"0001"}, "to_account": {"7654321"}, "amount": {"900000"}})
	confirm := res.Header.Get("Location")
	_, page := attacker.get(confirm)
	res, body := attacker.postForm(regexpAction(t, page), url.Values{"otp": {attacker.code()}, "csrf": {attacker.csrf(confirm)}})
	if l := e.ledger(); len(l) == 1 && l[0].User == "U001" && l[0].Params["to_account"] == "7654321" {
		t.Errorf("the bank executed %+v for the victim with the attacker's code (status %d)", l[0], res.StatusCode)
	} else {
		t.Logf("transfer: %d %s, ledger %+v", res.StatusCode, body, l)
	}
}

// Another customer (with a token of their own) and another session of
// the victim's own login (the password alone) try the victim's paused
// transfer by its ID: the confirm page, its JSON, the file list, a
// confirmation with the other customer's code, a cancel. None may show
// the victim's details, execute, or discard it; the victim then confirms
// it once.
func TestRedteam2OtherSessionsOnAPausedOperation(t *testing.T) {
	e := newEnv(t, envOptions{})
	victim := e.customer("S001", "U001")
	victim.login()
	victim.json = true
	victim.enrol()
	victim.json = false
	other := e.customer("S001", "U002")
	other.login()
	other.json = true
	other.enrol()
	other.json = false
	pw := e.customer("S001", "U001") // the victim's password, no code
	pw.login()

	res, _ := victim.postForm("/transfer/execute", url.Values{"to_bank": {"0001"}, "to_account": {"1234567"}, "amount": {"50000"}})
	confirm := res.Header.Get("Location")
	if !strings.HasPrefix(confirm, "/.otpgate/confirm/") {
		t.Fatalf("transfer: %d %q; want the confirm page", res.StatusCode, confirm)
	}
	for _, a := range []*customer{other, pw} {
		for _, accept := range []string{"text/html", "application/json"} {
			for _, p := range []string{confirm, confirm + "/file"} {
				req, _ := http.NewRequest(http.MethodGet, gatewayURL+p, nil)
				req.Header.Set("Accept", accept)
				res, body := a.do(req)
				if res.StatusCode == http.StatusOK || strings.Contains(body, "1234567") {
					t.Errorf("%s GET %s (%s): %d, shows the victim's operation:\n%s", a.ID, p, accept, res.StatusCode, body)
				}
			}
		}
		a.postForm(confirm+"/cancel", url.Values{"csrf": {"x"}})
	}
	other.json = true
	if res, out := other.postJSON(confirm, map[string]string{"otp": other.code()}); res.StatusCode == http.StatusOK {
		t.Errorf("U002 confirmed U001's transfer with U002's code: %v", out)
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("ledger %+v before the victim's code", l)
	}
	_, page := victim.get(confirm)
	res, _ = victim.postForm(regexpAction(t, page), url.Values{"otp": {victim.code()}, "csrf": {victim.csrf(confirm)}})
	if l := e.ledger(); res.StatusCode != http.StatusOK || len(l) != 1 || l[0].User != "U001" {
		t.Fatalf("victim's confirmation: %d, ledger %+v; want one transfer by U001", res.StatusCode, l)
	}
}

// The admin API (held operations, the registered-address import) lives
// on its own listener: the same paths through the public site reach the
// bank, never the admin handlers.
func TestRedteam2AdminAPINotOnTheSite(t *testing.T) {
	e := newEnv(t, envOptions{Extra: "enrol_address registered"})
	c := e.customer("S001", "U001")
	c.login()
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/otpgate/held", ""},
		{http.MethodGet, "/otpgate/audit/export", ""},
		{http.MethodPost, "/otpgate/registered?by=x", "S001,U001,attacker@evil.example\n"},
		{http.MethodPost, "/otpgate/token/reset?service_id=S001&user_id=U001", ""},
	} {
		req, _ := http.NewRequest(tc.method, gatewayURL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "text/csv")
		res, body := c.do(req)
		if res.StatusCode < 400 {
			t.Errorf("%s %s on the site: %d %s", tc.method, tc.path, res.StatusCode, body)
		}
	}
	if status, out := rt2Issue(t, c, gatewayURL[len("http://"):], "attacker@evil.example", "5093"); status == http.StatusOK {
		t.Errorf("issue to the attacker's address after the site-side import: %v", out)
	}
}

// rt2MailRelayIssues is how many token issues the mail-relay test asks
// for in a row; maxSetupMailsPerHour is the bound it wants (no customer
// needs more setup links than this in an hour).
const (
	rt2MailRelayIssues   = 20
	maxSetupMailsPerHour = 5
)

// With enrol_address any (as Caddyfile.example ships) an attacker with an
// account of their own — or any phished password — makes the bank's own
// sender mail a setup link to any address, as often as they like, and
// (public_url unset) under a host of their choosing: a phishing relay
// with the bank's name, sender and DKIM. Each re-issue over a pending one
// also mails the previous address.
func TestRedteam2SetupMailsToAttackerHostStopped(t *testing.T) {
	e := newEnv(t, envOptions{}) // enrol_address any
	c := e.customer("S002", "U101")
	c.login()
	sent := 0
	for i := range rt2MailRelayIssues {
		addr := "victim" + string(rune('a'+i)) + "@target.example"
		if status, _ := rt2Issue(t, c, "ib-login.attacker.example", addr, "5093"); status == http.StatusOK {
			sent++
		}
	}
	withEvil := 0
	for i := range rt2MailRelayIssues {
		for _, body := range e.mailsTo("victim" + string(rune('a'+i)) + "@target.example") {
			if strings.Contains(body, "ib-login.attacker.example") {
				withEvil++
			}
		}
	}
	if sent > maxSetupMailsPerHour {
		t.Errorf("%d of %d issues to distinct addresses accepted within a minute; %d mails carry the attacker's host", sent, rt2MailRelayIssues, withEvil)
	}
}
