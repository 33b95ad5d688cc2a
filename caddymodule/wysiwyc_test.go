package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/pages"
)

// What you see is what you confirm (issue 6, class 3), through the real
// Caddy chain in front of the demo bank. Each attack is first sent straight
// to the bank, to show what the bank executes; through the gateway it is
// refused (400, nothing executed, nothing stored) or held with the doubt on
// the confirm page — never shown with values the bank will not execute.

// wyMultipart is a multipart body with boundary "b" from parts written as
// header lines, a blank line and the content.
func wyMultipart(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--b\r\n" + strings.Replace(p, "\n\n", "\r\n\r\n", 1) + "\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

const wyMultipartType = "multipart/form-data; boundary=b"

// wyPart is a multipart part that a browser would send for a text field.
func wyPart(name, value string) string {
	return fmt.Sprintf("Content-Disposition: form-data; name=%q\n\n%s", name, value)
}

func TestWysiwycRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	sid := gwSession(c)
	const query = "?to_bank=0001&to_account=7654321&amount=1000000"
	transfer := func(name, target, ctype, body string, headers ...string) gwVariant {
		return gwVariant{name: name, op: "transfer", method: "POST", target: "/transfer/execute" + target, ctype: ctype, body: body, headers: headers}
	}
	bulk := func(name, body string) gwVariant {
		return gwVariant{name: name, op: "bulk_transfer", method: "POST", target: "/bulk/execute", ctype: wyMultipartType, body: body}
	}
	file := func(disposition, content string) string {
		return "Content-Disposition: form-data; " + disposition + "\nContent-Type: text/csv\n\n" + content
	}
	for _, tc := range []struct {
		v gwVariant
		// The bank executes the request sent straight to it, with these
		// parameters among others; nil: the bank cannot read it either.
		executes map[string]string
		message  string // part of the refusal
	}{
		{transfer("text/plain, the executed values in the query", query, "text/plain", "to_bank=0001&to_account=1234567&amount=100"),
			map[string]string{"to_account": "7654321", "amount": "1000000"},
			`otpgate: the request body type "text/plain" cannot be shown for confirmation; send application/x-www-form-urlencoded or multipart/form-data`},
		{transfer("no Content-Type", query, "", "to_bank=0001&to_account=1234567&amount=100"),
			map[string]string{"to_account": "7654321", "amount": "1000000"}, "has no Content-Type"},
		{transfer("RFC 2231 name* before a plain name", "", wyMultipartType, wyMultipart(
			"Content-Disposition: form-data; name*=UTF-8''amount\n\n1000000", wyPart("amount", "100"), wyPart("to_bank", "0001"), wyPart("to_account", "1234567"))),
			map[string]string{"amount": "1000000"}, `RFC 2231 parameter "name*"`},
		{bulk("a name* file part and a name file part", wyMultipart(
			file(`name*=UTF-8''file; filename="evil.csv"`, "1,0009,001,7654321,ｱｸﾄｳ,9000000"), file(`name="file"; filename="sogo.csv"`, "1,0001,001,1234567,ﾔﾏﾀﾞ,250000"))),
			map[string]string{"file": "evil.csv"}, "RFC 2231"},
		{bulk("filename* beside filename", wyMultipart(
			file(`name="file"; filename="sogo.csv"; filename*=UTF-8''evil.csv`, "1,0009,001,7654321,ｱｸﾄｳ,9000000"))),
			map[string]string{"file": "evil.csv"}, `"filename*"`},
		{transfer("attachment part the bank skips", "", wyMultipartType, wyMultipart(
			"Content-Disposition: attachment; name=\"amount\"\n\n100", wyPart("amount", "1000000"), wyPart("to_bank", "0001"), wyPart("to_account", "1234567"))),
			map[string]string{"amount": "1000000"}, "is not form-data"},
		{transfer("encoded-word name", "", wyMultipartType, wyMultipart(
			"Content-Disposition: form-data; name=\"=?UTF-8?B?YW1vdW50?=\"\n\n1000000", wyPart("amount", "100"), wyPart("to_bank", "0001"), wyPart("to_account", "1234567"))),
			map[string]string{"amount": "100"}, "RFC 2047"},
		{transfer("NUL in a field name", "", gwForm, "amount%00=1000000&amount=100&to_bank=0001&to_account=1234567"),
			map[string]string{"amount": "100"}, "U+0000"},
		{transfer("invalid UTF-8", "", gwForm, "to_bank=%FF&to_account=1234567&amount=100"),
			map[string]string{"to_bank": "\xff"}, "not valid utf-8"},
		{transfer("bad % escape", "", gwForm, "to_bank=0001&to_account=1234567&amount=100%zz"),
			map[string]string{"amount": "100%zz"}, "invalid % escape"},
		{transfer("unknown charset", "", gwForm+"; charset=x-klingon", "to_bank=0001&to_account=1234567&amount=100"),
			map[string]string{"amount": "100"}, `unknown charset "x-klingon"`},
		{transfer("compressed body", "", gwForm, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", "Content-Encoding: gzip"),
			nil, `Content-Encoding "gzip"`},
	} {
		t.Run(tc.v.name, func(t *testing.T) {
			before := len(e.ledger())
			ress, bodies := gwRaw(t, gwAddr(e.bankURL), tc.v.raw(sid))
			l := e.ledger()
			switch {
			case tc.executes == nil && len(l) != before:
				t.Fatalf("sent to the bank: executed %+v; want the bank to fail to read it", l[len(l)-1])
			case tc.executes != nil && (ress[0].StatusCode != http.StatusOK || len(l) != before+1):
				t.Fatalf("sent to the bank: status %d, ledger +%d; want it executed\n%s", ress[0].StatusCode, len(l)-before, bodies[0])
			case tc.executes != nil:
				for k, v := range tc.executes {
					if got := l[len(l)-1].Params[k]; got != v {
						t.Errorf("sent to the bank: executed %s=%q; want %q", k, got, v)
					}
				}
			}
			executed, audited := len(e.ledger()), len(gwAudit(e))

			api := tc.v
			api.headers = append(append([]string(nil), api.headers...), "Accept: application/json")
			ress, bodies = gwRaw(t, fmt.Sprintf("localhost:%d", gatewayPort), api.raw(sid))
			var out map[string]string
			json.Unmarshal([]byte(bodies[0]), &out)
			if ress[0].StatusCode != http.StatusBadRequest || out["error"] != "unshowable_request" || !strings.Contains(out["message"], tc.message) {
				t.Errorf("through the gateway: %d %s; want 400 unshowable_request saying %q", ress[0].StatusCode, bodies[0], tc.message)
			}
			if !strings.HasPrefix(out["message"], "otpgate: ") || !strings.Contains(out["message"], "; send ") {
				t.Errorf("the refusal %q does not say what to send instead", out["message"])
			}

			// A browser gets the same refusal as a page, in Japanese.
			ress, bodies = gwRaw(t, fmt.Sprintf("localhost:%d", gatewayPort), tc.v.raw(sid))
			if ress[0].StatusCode != http.StatusBadRequest || !strings.Contains(bodies[0], "確認画面に内容を正確に表示できない") {
				t.Errorf("through the gateway as a browser: %d; want the 400 page\n%s", ress[0].StatusCode, bodies[0])
			}
			if n := len(e.ledger()); n != executed {
				t.Fatalf("through the gateway: the bank executed it (ledger %d → %d)", executed, n)
			}
			if n := len(gwAudit(e)); n != audited {
				t.Errorf("through the gateway: %d audit records written; a refusal stores nothing", n-audited)
			}
		})
	}
}

// A shown field sent with several values is held, and the confirm page and
// its JSON views say that the details cannot be shown, showing none.
func TestWysiwycConflictingHeld(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	for _, tc := range []struct {
		name, target, ctype, body string
		executed                  string // the amount the bank executes
	}{
		{"repeated field", "/transfer/execute", gwForm, "to_bank=0001&to_account=1234567&amount=100&amount=1000000", "100"},
		{"query and body", "/transfer/execute?amount=1000000", gwForm, "to_bank=0001&to_account=1234567&amount=100", "1000000"},
		{"other letter case", "/transfer/execute", gwForm, "to_bank=0001&to_account=1234567&AMOUNT=1000000&amount=100", "100"},
		{"JSON array", "/transfer/execute", "application/json", `{"to_bank":"0001","to_account":"1234567","amount":["100","1000000"]}`, "100"},
		{"duplicate JSON key", "/transfer/execute", "application/json", `{"to_bank":"0001","to_account":"1234567","amount":"100","amount":"1000000"}`, "100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.ledger())
			req, _ := http.NewRequest(http.MethodPost, e.bankURL+tc.target, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.Header.Set("Cookie", "JSESSIONID="+gwSession(c))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if l := e.ledger(); res.StatusCode != http.StatusOK || len(l) != before+1 || l[len(l)-1].Params["amount"] != tc.executed {
				t.Fatalf("sent to the bank: status %d, ledger %+v; want amount %s executed", res.StatusCode, l[before:], tc.executed)
			}
			executed := len(e.ledger())

			req, _ = http.NewRequest(http.MethodPost, gatewayURL+tc.target, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.Header.Set("Accept", "application/json")
			res, body := c.do(req)
			var paused struct {
				Error, Challenge, Doubt string
				DoubtMessage            string `json:"doubt_message"`
				Fields                  []any
			}
			json.Unmarshal([]byte(body), &paused)
			if res.StatusCode != http.StatusUnauthorized || paused.Error != "otp_required" || paused.Doubt != "conflicting_values" ||
				paused.DoubtMessage != pages.DoubtText(pages.English, "conflicting_values") || len(paused.Fields) != 0 {
				t.Errorf("API client: %d %s; want 401 otp_required with the doubt and no fields", res.StatusCode, body)
			}
			req, _ = http.NewRequest(http.MethodPost, gatewayURL+tc.target, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			res, _ = c.do(req)
			id := strings.TrimPrefix(res.Header.Get("Location"), "/.otpgate/confirm/")
			if res.StatusCode != http.StatusSeeOther || id == "" {
				t.Fatalf("browser: status %d; want 303 to the confirm page", res.StatusCode)
			}
			_, page := c.get("/.otpgate/confirm/" + id)
			if !strings.Contains(page, pages.DoubtText(pages.Japanese, "conflicting_values")) || strings.Contains(page, "1000000") || strings.Contains(page, "<td>100</td>") {
				t.Errorf("confirm page: want the notice and neither amount\n%s", page)
			}
			c.json = true
			_, view := c.get("/.otpgate/confirm/" + id)
			c.json = false
			if !strings.Contains(view, `"doubt":"conflicting_values"`) || strings.Contains(view, "1000000") {
				t.Errorf("confirm page JSON: %s", view)
			}
			if n := len(e.ledger()); n != executed {
				t.Fatalf("held, yet the bank executed it (ledger %d → %d)", executed, n)
			}
		})
	}
}

// Values with bidi controls, other invisible characters and look-alike
// digits are shown escaped, with a notice; what the customer reads back from
// the escapes is what the bank executes after the code.
func TestWysiwycEscapedShown(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	// U+202E makes "7654321" display as "1234567"; fullwidth digits look
	// like ASCII ones; U+200B is invisible.
	const body = "to_bank=0001%E2%80%8B&to_account=%E2%80%AE7654321&amount=%EF%BC%91%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90"
	want := map[string]string{"to_bank": `0001\u200B`, "to_account": `\u202E7654321`, "amount": `\uFF11\uFF10\uFF10\uFF10\uFF10`}

	// The bank executes the raw characters.
	before := len(e.ledger())
	req, _ := http.NewRequest(http.MethodPost, e.bankURL+"/transfer/execute", strings.NewReader(body))
	req.Header.Set("Content-Type", gwForm)
	req.Header.Set("Cookie", "JSESSIONID="+gwSession(c))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if l := e.ledger(); res.StatusCode != http.StatusOK || len(l) != before+1 || l[len(l)-1].Params["to_account"] != "\u202e7654321" {
		t.Fatalf("sent to the bank: status %d, ledger %+v", res.StatusCode, l[before:])
	}

	c.json = true
	req, _ = http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute", strings.NewReader(body))
	req.Header.Set("Content-Type", gwForm)
	res, out := c.do(req)
	c.json = false
	var paused struct {
		Doubt        string
		DoubtMessage string `json:"doubt_message"`
		Fields       []struct{ Name, Value string }
	}
	json.Unmarshal([]byte(out), &paused)
	if res.StatusCode != http.StatusUnauthorized || paused.Doubt != "escaped_characters" || paused.DoubtMessage == "" {
		t.Fatalf("API client: %d %s; want 401 with the doubt", res.StatusCode, out)
	}
	for _, f := range paused.Fields {
		if f.Value != want[f.Name] {
			t.Errorf("401 JSON: %s = %q; want %q", f.Name, f.Value, want[f.Name])
		}
	}

	for _, lang := range []string{"ja", "en"} {
		req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/transfer/execute", strings.NewReader(body))
		req.Header.Set("Content-Type", gwForm)
		res, _ := c.do(req)
		id := strings.TrimPrefix(res.Header.Get("Location"), "/.otpgate/confirm/")
		if res.StatusCode != http.StatusSeeOther || id == "" {
			t.Fatalf("browser: status %d; want 303 to the confirm page", res.StatusCode)
		}
		req, _ = http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id, nil)
		req.Header.Set("Accept-Language", lang)
		_, page := c.do(req)
		notice := pages.DoubtText(pages.Lang(lang), "escaped_characters")
		if !strings.Contains(page, notice) {
			t.Errorf("%s confirm page lacks the notice %q", lang, notice)
		}
		for name, v := range want {
			if !strings.Contains(page, "<td>"+v+"<") {
				t.Errorf("%s confirm page does not show %s as %q", lang, name, v)
			}
		}
		if strings.ContainsAny(page, "\u202e\u200b１") {
			t.Errorf("%s confirm page holds the raw characters", lang)
		}
		if lang == "en" {
			// Released with a code: the bank executes what the escapes say.
			res, done, _ := gwConfirmForm(c, id, c.code(), nil)
			l := e.ledger()
			if res.StatusCode != http.StatusOK || !strings.Contains(done, gwCompletion) {
				t.Fatalf("confirmation: status %d\n%s", res.StatusCode, done)
			}
			for name, v := range want {
				if got := l[len(l)-1].Params[name]; got != wyUnescape(t, v) {
					t.Errorf("the bank executed %s=%q; the page showed %q", name, got, v)
				}
			}
		}
	}
}

// wyUnescape reads the gateway's escapes back (\uXXXX, \UXXXXXXXX, \\).
func wyUnescape(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], `\\`):
			b.WriteByte('\\')
			i++
		case strings.HasPrefix(s[i:], `\u`) && i+6 <= len(s):
			r, err := strconv.ParseUint(s[i+2:i+6], 16, 32)
			if err != nil {
				t.Fatalf("bad escape in %q", s)
			}
			b.WriteRune(rune(r))
			i += 5
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
