package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Red team, issue 6: attacks from outside the repository's own lists,
// through the real Caddy chain in front of the demo bank. Each attack is
// first sent straight to the bank to show that it executes there; through
// the gateway it must be refused or held, and a held one must execute only
// what the confirm view showed, unless the view carries a doubt notice.

// rtTransferBody is an ordinary transfer form.
const rtTransferBody = "to_bank=0009&to_account=7777777&amount=990000"

// rtRaw is one raw request; "{sid}" becomes the sender's session ID.
type rtRaw struct {
	name string
	raw  string
	// executes is how many operations the bank executes when it gets raw
	// straight.
	executes int
}

func (r rtRaw) with(sid string) string { return strings.ReplaceAll(r.raw, "{sid}", sid) }

// rtPost is a transfer written out with the given request line target,
// extra header lines and a form body.
func rtPost(proto, target string, headers ...string) string {
	return fmt.Sprintf("POST %s %s\r\nHost: localhost\r\nCookie: JSESSIONID={sid}\r\n%sContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		target, proto, strings.Join(append(headers, ""), "\r\n"), len(rtTransferBody), rtTransferBody)
}

// TestRedteamDemoBankStopped: request shapes the repository's variant
// tables do not send — protocol features of the request (Expect, HTTP/1.0,
// chunk extensions with a trailer, pipelining behind a held request,
// userinfo in an absolute-form target), the confirm marker in places it
// does not mark a confirmation, a header listed in Connection that the
// proxy strips after the gateway read it, a JSON type the bank does not
// read — each executed by the bank when sent straight to it, and never
// through the gateway in a session whose code the attacker does not have.
func TestRedteamDemoBankStopped(t *testing.T) {
	e := newEnv(t, envOptions{})
	gwEnrolled(e, "S001", "U002") // the victim, with a token
	a := e.customer("S001", "U002")
	a.login() // the attacker, with the victim's password only
	sid := gwSession(a)
	chunk := fmt.Sprintf("%x;ext=\"1\"\r\n%s\r\n0;last\r\nX-HTTP-Method-Override: PUT\r\n\r\n", len(rtTransferBody), rtTransferBody)
	jsonBody := `{"amount":"1"}`
	for _, tc := range []rtRaw{
		{"Expect: 100-continue", rtPost("HTTP/1.1", "/transfer/execute", "Expect: 100-continue", "Connection: close"), 1},
		{"HTTP/1.0", rtPost("HTTP/1.0", "/transfer/execute"), 1},
		{"chunk extensions and a trailer", "POST /transfer/execute HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID={sid}\r\n" +
			"Content-Type: application/x-www-form-urlencoded\r\nTrailer: X-HTTP-Method-Override\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunk, 1},
		{"pipelined behind a held transfer", rtPost("HTTP/1.1", "/transfer/execute") + rtPost("HTTP/1.1", "/payment/execute?payee=x&amount=5", "Connection: close"), 2},
		{"absolute form with userinfo", rtPost("HTTP/1.1", "http://u:p@evil.example/transfer/execute", "Connection: close"), 1},
		{"confirm marker in upper case", rtPost("HTTP/1.1", "/transfer/execute;OTPGATE=x", "Connection: close"), 1},
		{"confirm marker in the query", rtPost("HTTP/1.1", "/transfer/execute?;otpgate=x", "Connection: close"), 1},
		{"confirm marker on the first segment", rtPost("HTTP/1.1", "/transfer;otpgate=/execute", "Connection: close"), 1},
		{"confirm marker name only", rtPost("HTTP/1.1", "/transfer/execute;otpgate", "Connection: close"), 1},
		{"Content-Type listed in Connection", "POST /transfer/execute?" + rtTransferBody + " HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID={sid}\r\n" +
			"Connection: close, Content-Type\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(jsonBody)) + "\r\n\r\n" + jsonBody, 1},
		{"text/json with the fields in the query", "POST /transfer/execute?" + rtTransferBody + " HTTP/1.1\r\nHost: localhost\r\nCookie: JSESSIONID={sid}\r\n" +
			"Connection: close\r\nContent-Type: text/json\r\nContent-Length: " + fmt.Sprint(len(jsonBody)) + "\r\n\r\n" + jsonBody, 1},
		{"quoted session cookie", strings.Replace(rtPost("HTTP/1.1", "/transfer/execute", "Connection: close"), "JSESSIONID={sid}", `JSESSIONID="{sid}"`, 1), 1},
	} {
		before := len(e.ledger())
		gwRaw(t, gwAddr(e.bankURL), tc.with(sid))
		if n := len(e.ledger()) - before; n != tc.executes {
			t.Fatalf("%s: straight to the bank, %d operations executed; want %d: the attack does not work as the test assumes", tc.name, n, tc.executes)
		}
		before = len(e.ledger())
		ress, _ := gwRaw(t, gwAddr(gatewayURL), tc.with(sid))
		var statuses []int
		for _, res := range ress {
			statuses = append(statuses, res.StatusCode)
		}
		if l := e.ledger(); len(l) != before {
			t.Errorf("%s: through the gateway (answers %v) the bank executed %+v without the victim's code", tc.name, statuses, l[before:])
		}
		t.Logf("%s: gateway answered %v", tc.name, statuses)
	}
}

// TestRedteamDemoBankOtherChallengeAtMarker: the attacker, logged in with
// their own token, confirms the victim's held transfer at the operation's
// own URL with the confirm marker, with the attacker's code. The challenge
// belongs to another session: gone, nothing executed.
func TestRedteamDemoBankOtherChallengeAtMarker(t *testing.T) {
	e := newEnv(t, envOptions{})
	gwEnrolled(e, "S001", "U002")
	a := e.customer("S001", "U002")
	a.login()
	a.json = true
	res, out := a.postJSON("/transfer/execute", map[string]string{"to_bank": "0009", "to_account": "7777777", "amount": "990000"})
	id, _ := out["challenge"].(string)
	if res.StatusCode != http.StatusUnauthorized || id == "" {
		t.Fatalf("the transfer in the victim's session: %d %v; want 401 otp_required", res.StatusCode, out)
	}
	attacker := gwEnrolled(e, "S001", "U001")
	attacker.json = true
	for _, path := range []string{"/transfer/execute;otpgate=" + id, "/.otpgate/confirm/" + id} {
		res, out := attacker.postJSON(path, map[string]string{"otp": attacker.code()})
		if res.StatusCode != http.StatusGone {
			t.Errorf("%s with the attacker's session and code: %d %v; want 410 challenge_gone", path, res.StatusCode, out)
		}
	}
	if l := e.ledger(); len(l) != 0 {
		t.Fatalf("the bank executed %+v", l)
	}
}

// rtShown sends v through the gateway as an API client of c and, if the
// gateway holds it, reads the confirm view and confirms it with c's code.
// It returns the view's fields and doubt (nil fields: not held) and the
// ledger entry the bank added, if any.
func rtShown(t *testing.T, e *env, c *customer, sid string, v gwVariant) (map[string]string, string, map[string]string) {
	t.Helper()
	before := len(e.ledger())
	v.headers = append(append([]string(nil), v.headers...), "Accept: application/json")
	ress, bodies := gwRaw(t, gwAddr(gatewayURL), v.raw(sid))
	var out map[string]any
	json.Unmarshal([]byte(bodies[0]), &out)
	id, _ := out["challenge"].(string)
	var shown map[string]string
	var doubt string
	if ress[0].StatusCode == http.StatusUnauthorized && id != "" {
		req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
		req.Header.Set("Accept", "application/json")
		res, body := c.do(req)
		var view struct {
			Fields []struct{ Name, Value string }
			Doubt  string
		}
		if res.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &view) != nil {
			t.Fatalf("%s: confirm view %d %s", v.name, res.StatusCode, body)
		}
		shown, doubt = map[string]string{}, view.Doubt
		for _, f := range view.Fields {
			shown[f.Name] = f.Value
		}
		gwConfirmJSON(c, id, c.code())
	}
	if l := e.ledger(); len(l) > before {
		return shown, doubt, l[len(l)-1].Params
	}
	return shown, doubt, nil
}

// TestRedteamDemoBankJSONCharsetShownStopped: a JSON body that declares a
// charset other than UTF-8. The gateway decodes it in that charset for the
// confirm view; the bank, like JSON readers generally (Jackson and Go's
// encoding/json ignore the parameter), reads the bytes as UTF-8, and
// replaces what is not UTF-8. The view shows a payee bank, with no doubt
// notice, that the bank does not execute.
func TestRedteamDemoBankJSONCharsetShownStopped(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	sid := gwSession(c)
	for _, tc := range []struct{ charset, toBank string }{
		{"windows-1252", "Caf\xe9"},
		{"iso-8859-1", "Caf\xe9"},
		{"shift_jis", "\x82\xdd\x82\xb8\x82\xd9"}, // みずほ
		{"euc-jp", "\xa4\xdf\xa4\xba\xa4\xdb"},    // みずほ
	} {
		v := gwVariant{name: "JSON in " + tc.charset, method: "POST", target: "/transfer/execute", ctype: "application/json; charset=" + tc.charset,
			body: `{"to_bank":"` + tc.toBank + `","to_account":"7777777","amount":"990000"}`}
		if ran := rtDirect(t, e, sid, v); ran == nil {
			t.Fatalf("%s: straight to the bank, not executed", v.name)
		}
		shown, doubt, ran := rtShown(t, e, c, sid, v)
		if shown != nil && ran != nil && doubt == "" && shown["to_bank"] != ran["to_bank"] {
			t.Errorf("%s: the confirm view showed the payee bank %q with no doubt; the bank executed %q", v.name, shown["to_bank"], ran["to_bank"])
		}
	}
}

// rtDirect sends v straight to the bank and returns what it executed.
func rtDirect(t *testing.T, e *env, sid string, v gwVariant) map[string]string {
	t.Helper()
	before := len(e.ledger())
	gwRaw(t, gwAddr(e.bankURL), v.raw(sid))
	if l := e.ledger(); len(l) > before {
		return l[len(l)-1].Params
	}
	return nil
}
