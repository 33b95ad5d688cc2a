package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Red team, issue 6: attacks from outside the repository's own lists,
// against the real Tomcat JSP bank. The attacker knows the victim's
// password and has an account of their own at the same bank, with a token.

// rtTomcatPort is the first Tomcat port of these tests: past the six that
// tomcat_test.go uses, so both can run in one process.
var rtTomcatPort = tomcatPort + 6

// rtCookieSpellings are Cookie headers that name the victim's session {Y}
// in a form Go's cookie parser skips and Tomcat's reads, followed by the
// attacker's own session {X}, which is all that Go sees.
var rtCookieSpellings = []struct{ name, header string }{
	{"unterminated quote", `JSESSIONID="{Y}; JSESSIONID={X}`},
	{"unterminated quote, no space", `JSESSIONID="{Y};JSESSIONID={X}`},
	{"space before the quote", `JSESSIONID= "{Y}"; JSESSIONID={X}`},
	{"unterminated quote, tab", "JSESSIONID=\"{Y}\t; JSESSIONID={X}"},
}

// TestRedteamBypassTomcatCookieQuote: Go's cookie parser (the gateway's)
// drops a cookie whose value opens a quote it does not close, or has a space
// before the quote; Tomcat's RFC 6265 parser takes the value up to the ';'.
// With the victim's session so spelled before the attacker's own, the
// gateway identifies the attacker, pauses the transfer for the attacker's
// code, and releases it with the confirming request's Cookie header, which
// Tomcat reads as the victim's session: the victim's money moves with the
// attacker's code.
func TestRedteamBypassTomcatCookieQuote(t *testing.T) {
	tomcatRequired(t)
	tc := startTomcat(t, rtTomcatPort, false)
	e := newTomcatEnv(t, tc)
	attacker := e.customer("S001", "U001")
	x := tomcatLogin(attacker)
	attacker.json = true
	attacker.enrol()
	// The attacker logs in as the victim with the stolen password, through
	// the gateway like any customer.
	y := tomcatLogin(e.customer("S001", "U002"))
	gw := gwAddr(gatewayURL)

	for i, sp := range rtCookieSpellings {
		cookie := strings.NewReplacer("{X}", x, "{Y}", y).Replace(sp.header)
		transfer := func(tag string) string {
			body := "to_bank=0009&to_account=7777777&amount=990000"
			return fmt.Sprintf("POST /transfer/execute HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nX-Probe: %s\r\nAccept: application/json\r\n"+
				"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", gw, cookie, tag, len(body), body)
		}
		// Straight to Tomcat the header is the victim's session.
		direct := fmt.Sprintf("rt-cookie-direct-%d", i)
		tcSend(tc.addr, "POST", transfer(direct))
		if en := rtTomcatEntry(t, tc, direct); en == nil || en.User != "U002" {
			t.Fatalf("%s: straight to Tomcat, the transfer did not execute as the victim (%+v)", sp.name, en)
		}
		// Through the gateway, as the attacker: paused for the attacker's
		// code, confirmed with it.
		tag := fmt.Sprintf("rt-cookie-gw-%d", i)
		res, body, err := tcExchange(gw, "POST", transfer(tag))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		id, _ := out["challenge"].(string)
		outcome := fmt.Sprintf("gateway %d", res.StatusCode)
		if res.StatusCode == http.StatusUnauthorized && id != "" {
			code := fmt.Sprintf(`{"otp":%q}`, attacker.code())
			confirm := fmt.Sprintf("POST /.otpgate/confirm/%s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nAccept: application/json\r\n"+
				"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", id, gw, cookie, len(code), code)
			cres, _, err := tcExchange(gw, "POST", confirm)
			if err != nil {
				t.Fatal(err)
			}
			outcome += fmt.Sprintf(", confirmed with the attacker's code: %d", cres.StatusCode)
		}
		if en := rtTomcatEntry(t, tc, tag); en != nil && en.User != "U001" {
			t.Errorf("%s (Cookie: %s): %s; Tomcat executed the transfer as %s/%s, the victim, who entered no code",
				sp.name, sp.header, outcome, en.Service, en.User)
		} else {
			t.Logf("%s: %s; not executed as the victim", sp.name, outcome)
		}
	}
}

// rtTomcatEntry is the ledger entry of the probe tagged tag, or nil.
func rtTomcatEntry(t *testing.T, tc *tomcat, tag string) *tcEntry {
	t.Helper()
	for _, en := range tc.ledger(t) {
		if en.Probe == tag {
			return &en
		}
	}
	return nil
}
