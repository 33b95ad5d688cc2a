package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/otpgate/otpgate/internal/app"
)

// Red team, issue 6: attacks from outside the repository's own lists,
// against the real Tomcat JSP bank (testdata/tomcatbank). The attacker
// knows the victim's password and has an account of their own at the same
// bank, with a token of their own. Each attack is first shown to execute
// when sent straight to Tomcat; it is a finding when Tomcat executes it
// through the gateway without the victim's code, or executes values other
// than those the confirm view showed without a doubt notice.

// rtTomcatPort is the first Tomcat port of these tests: past the six that
// tomcat_test.go uses, so that both can run in one process.
var rtTomcatPort = tomcatPort + 6

// rtVictimCookies are Cookie headers that name the victim's session {Y} in
// a form Go's cookie parser (the gateway's) drops and Tomcat's RFC 6265
// parser reads, followed by the attacker's own session {X}, which is all
// the gateway sees. Tomcat keeps the first valid session it finds.
var rtVictimCookies = []struct{ name, header string }{
	// Go drops a value that opens a quote it does not close; Tomcat reads
	// it up to the ';', a space or a tab.
	{"unterminated quote", `JSESSIONID="{Y}; JSESSIONID={X}`},
	{"unterminated quote, no space", `JSESSIONID="{Y};JSESSIONID={X}`},
	{"unterminated quote, tab", "JSESSIONID=\"{Y}\t; JSESSIONID={X}"},
	// Go keeps the space, so the value does not start with the quote and
	// the quote is an invalid byte; Tomcat skips the space first.
	{"space before a quoted value", `JSESSIONID= "{Y}"; JSESSIONID={X}`},
}

// rtTomcatEnv is newTomcatEnv with envOptions.
func rtTomcatEnv(t *testing.T, tc *tomcat, opt envOptions) *env {
	t.Helper()
	e := &env{t: t, bankURL: "http://" + tc.addr, dir: t.TempDir(), clock: &fakeClock{t: app.Now()}}
	prev := app.Now
	app.Now = e.clock.Now
	t.Cleanup(func() { app.Now = prev })
	e.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	initServer(e.tester, e.caddyfile(opt))
	if t.Failed() {
		t.FailNow()
	}
	waitServing(t)
	return e
}

// rtTransfer is a raw transfer of 990,000 yen to the attacker's account,
// tagged for the JSP bank's ledger, sent as an API client.
func rtTransfer(host, cookie, tag string) string {
	body := "to_bank=0009&to_account=7777777&amount=990000"
	return fmt.Sprintf("POST /transfer/execute HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nX-Probe: %s\r\nAccept: application/json\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", host, cookie, tag, len(body), body)
}

// rtCookieAttack sends the transfer with cookie through the gateway and,
// when the gateway pauses it, confirms it with attacker's code and the same
// Cookie header (an API client sets its headers as it likes). It returns
// what happened and the ledger entry of the transfer, if Tomcat executed it.
func rtCookieAttack(t *testing.T, tc *tomcat, attacker *customer, cookie, tag string) (string, *tcEntry) {
	t.Helper()
	gw := gwAddr(gatewayURL)
	res, body, err := tcExchange(gw, "POST", rtTransfer(gw, cookie, tag))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.Unmarshal([]byte(body), &out)
	id, _ := out["challenge"].(string)
	outcome := fmt.Sprintf("gateway %d", res.StatusCode)
	if res.StatusCode == http.StatusUnauthorized && id != "" && attacker != nil {
		code := fmt.Sprintf(`{"otp":%q}`, attacker.code())
		confirm := fmt.Sprintf("POST /.otpgate/confirm/%s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nAccept: application/json\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", id, gw, cookie, len(code), code)
		cres, _, err := tcExchange(gw, "POST", confirm)
		if err != nil {
			t.Fatal(err)
		}
		outcome += fmt.Sprintf(", confirmed with the attacker's code: %d", cres.StatusCode)
	}
	return outcome, rtTomcatEntry(t, tc, tag)
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

// rtProveVictimCookie shows that Tomcat, sent cookie directly, executes
// the transfer in the victim's session.
func rtProveVictimCookie(t *testing.T, tc *tomcat, name, cookie, tag string) {
	t.Helper()
	tcSend(tc.addr, "POST", rtTransfer(tc.addr, cookie, tag))
	if en := rtTomcatEntry(t, tc, tag); en == nil || en.User != "U002" {
		t.Fatalf("%s: straight to Tomcat, the transfer did not execute as the victim S001/U002 (%+v): the attack does not work as the test assumes", name, en)
	}
}

// TestRedteamTomcatCookieQuoteStopped: the gateway identifies a request by
// the one JSESSIONID cookie Go's parser finds; Tomcat by the first valid one
// its own parser finds. With the victim's session spelled so that only
// Tomcat reads it, before the attacker's own session, the gateway pauses the
// transfer as the attacker's, the attacker confirms it with their own code,
// and the release carries the confirming request's Cookie header unchanged:
// Tomcat executes the transfer as the victim, who entered no code.
func TestRedteamTomcatCookieQuoteStopped(t *testing.T) {
	tomcatRequired(t)
	tc := startTomcat(t, rtTomcatPort, false)
	e := rtTomcatEnv(t, tc, envOptions{Extra: tomcatRules})
	attacker := e.customer("S001", "U001")
	x := tomcatLogin(attacker)
	attacker.json = true
	attacker.enrol()
	// The attacker logs in as the victim with the stolen password, through
	// the gateway like any customer; the victim has no token to confirm with.
	y := tomcatLogin(e.customer("S001", "U002"))

	for i, sp := range rtVictimCookies {
		cookie := strings.NewReplacer("{X}", x, "{Y}", y).Replace(sp.header)
		rtProveVictimCookie(t, tc, sp.name, cookie, fmt.Sprintf("rt-cookie-direct-%d", i))
		outcome, en := rtCookieAttack(t, tc, attacker, cookie, fmt.Sprintf("rt-cookie-gw-%d", i))
		if en != nil && en.User != "U001" {
			t.Errorf("%s (Cookie: %s): %s; Tomcat executed the transfer as %s/%s, the victim, who entered no code",
				sp.name, sp.header, outcome, en.Service, en.User)
		}
	}
}

// TestRedteamTomcatCookieQuoteNoCodeStopped: the same spelling when the
// attacker's own company does not use OTP yet (require_otp lists only the
// victim's): the gateway passes the transfer through as the attacker's, a
// legacy customer, and Tomcat executes it as the victim, whose company
// requires a code. No code of anyone's is entered.
func TestRedteamTomcatCookieQuoteNoCodeStopped(t *testing.T) {
	tomcatRequired(t)
	tc := startTomcat(t, rtTomcatPort+1, false)
	e := rtTomcatEnv(t, tc, envOptions{NoRequireAll: true, Extra: tomcatRules + "\n\t\trequire_otp S001"})
	x := tomcatLogin(e.customer("S002", "U101"))
	victim := e.customer("S001", "U002")
	y := tomcatLogin(victim)
	// The victim's company requires a code: a plain transfer is held.
	if res, _ := victim.postForm("/transfer/execute", map[string][]string{"to_bank": {"0001"}, "to_account": {"1"}, "amount": {"1"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("the victim's own transfer got %d, want 303 (held)", res.StatusCode)
	}
	for i, sp := range rtVictimCookies {
		cookie := strings.NewReplacer("{X}", x, "{Y}", y).Replace(sp.header)
		rtProveVictimCookie(t, tc, sp.name, cookie, fmt.Sprintf("rt-nocode-direct-%d", i))
		outcome, en := rtCookieAttack(t, tc, nil, cookie, fmt.Sprintf("rt-nocode-gw-%d", i))
		if en != nil && en.User == "U002" {
			t.Errorf("%s (Cookie: %s): %s; Tomcat executed the transfer as %s/%s, whose company requires a code, and no code was entered",
				sp.name, sp.header, outcome, en.Service, en.User)
		}
	}
}

// TestRedteamTomcatCookieSpellingsStopped: spellings of two sessions in one
// Cookie header that Tomcat reads as the victim's, where Go's parser sees
// the victim's session too. The gateway then counts two sessions, or the
// victim's alone, and the attacker's code releases nothing as the victim.
func TestRedteamTomcatCookieSpellingsStopped(t *testing.T) {
	tomcatRequired(t)
	tc := startTomcat(t, rtTomcatPort+2, false)
	e := rtTomcatEnv(t, tc, envOptions{Extra: tomcatRules})
	attacker := e.customer("S001", "U001")
	x := tomcatLogin(attacker)
	attacker.json = true
	attacker.enrol()
	y := tomcatLogin(e.customer("S001", "U002"))
	for i, sp := range []struct{ name, header string }{
		{"quoted victim first", `JSESSIONID="{Y}"; JSESSIONID={X}`},
		{"space before '='", `JSESSIONID ={Y}; JSESSIONID={X}`},
		{"tab before '='", "JSESSIONID\t={Y}; JSESSIONID={X}"},
		{"tab after the value", "JSESSIONID={Y}\t; JSESSIONID={X}"},
		{"no space after ';'", `JSESSIONID={Y};JSESSIONID={X}`},
		{"RFC 2109 $Version", `$Version="1"; JSESSIONID="{Y}"; $Path="/"`},
		{"two Cookie lines", "JSESSIONID={Y}\r\nCookie: JSESSIONID={X}"},
		{"cookie named like the attacker's session", "JSESSIONID={Y}; {X}=1; JSESSIONID={X}"},
	} {
		cookie := strings.NewReplacer("{X}", x, "{Y}", y).Replace(sp.header)
		rtProveVictimCookie(t, tc, sp.name, cookie, fmt.Sprintf("rt-stop-direct-%d", i))
		outcome, en := rtCookieAttack(t, tc, attacker, cookie, fmt.Sprintf("rt-stop-gw-%d", i))
		if en != nil {
			t.Errorf("%s (Cookie: %s): %s; Tomcat executed the transfer as %s/%s", sp.name, sp.header, outcome, en.Service, en.User)
		}
	}
}

// TestRedteamTomcatCharsetShownStopped: the gateway decodes a declared
// charset with Go's WHATWG decoders and checks only that the IANA reading of
// the label agrees, which for these labels is the same Go decoder. Java
// decodes "Shift_JIS" and "EUC-JP" with JIS X 0208 (no NEC or IBM
// extensions, WAVE DASH for 0x8160), does not know "macintosh" or
// "x-cp1252", and decodes GBK 0x80 differently. The confirm view then shows,
// without a doubt notice, a payee other than the one Tomcat executes; an
// extension character's ASCII trail byte even comes back as a letter at
// Tomcat ("①" shown, "\uFFFD@" executed).
func TestRedteamTomcatCharsetShownStopped(t *testing.T) {
	tomcatRequired(t)
	tc := startTomcat(t, rtTomcatPort+3, false)
	e := rtTomcatEnv(t, tc, envOptions{Extra: tomcatRules})
	c := e.customer("S001", "U001")
	sid := tomcatLogin(c)
	c.json = true
	c.enrol()
	gw := gwAddr(gatewayURL)
	const form = "application/x-www-form-urlencoded; charset="
	const rest = "&to_account=1234567&amount=50000"
	for i, tcase := range []struct{ charset, toBank string }{
		{"Shift_JIS", "%87%40%81%60%FA%40"}, // ①～ⅰ (NEC, WAVE DASH, IBM)
		{"EUC-JP", "%AD%A1%A1%C1"},          // ①～
		{"macintosh", "Caf%8E"},             // Café
		{"x-cp1252", "%80"},                 // €
		{"gbk", "%80"},                      // €
	} {
		tag := fmt.Sprintf("rt-charset-%d", i)
		p := tcProbe{method: "POST", target: "/transfer/execute", ctype: form + tcase.charset, body: "to_bank=" + tcase.toBank + rest, headers: []string{"Accept: application/json"}}
		res, body, err := tcExchange(gw, "POST", p.raw(gw, sid, tag))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		id, _ := out["challenge"].(string)
		if res.StatusCode != http.StatusUnauthorized || id == "" {
			// Refused: nothing shown, nothing executed.
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
		_, vbody := c.do(req)
		var view struct {
			Fields []struct{ Name, Value string }
			Doubt  string
		}
		json.Unmarshal([]byte(vbody), &view)
		if cres, cbody, _ := gwConfirmJSON(c, id, c.code()); cres.StatusCode != http.StatusOK {
			t.Fatalf("%s: confirming: %d %s", tcase.charset, cres.StatusCode, cbody)
		}
		en := rtTomcatEntry(t, tc, tag)
		if en == nil || view.Doubt != "" {
			continue
		}
		k := slices.IndexFunc(view.Fields, func(f struct{ Name, Value string }) bool { return f.Name == "to_bank" })
		if k < 0 {
			t.Fatalf("charset=%s: the confirm view shows no payee bank: %s", tcase.charset, vbody)
		}
		if shown := view.Fields[k].Value; shown != en.Params["to_bank"] {
			t.Errorf("charset=%s: the confirm view showed the payee bank %q with no doubt; Tomcat executed %q", tcase.charset, shown, en.Params["to_bank"])
		}
	}
}
