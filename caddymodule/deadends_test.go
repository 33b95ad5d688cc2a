package caddymodule

import (
	"encoding/base32"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// No dead ends (issue 11): every page a customer can land on says where
// they are, what became of their operation, and how to go on.

// A code of a spent time step (409) keeps the confirmation: the page has
// the form, says when the next code appears, and that code then confirms.
func TestDeadEndReusedCodeKeepsTheForm(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	first := gwPause(c, "/transfer/execute", gwTransfer)
	if res, _, _ := gwConfirmForm(c, first, c.code(), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("first transfer: %d", res.StatusCode)
	}
	second := gwPause(c, "/transfer/execute", url.Values{"to_bank": {"0005"}, "to_account": {"7654321"}, "amount": {"1200"}})
	res, page, action := gwConfirmForm(c, second, gwCodeNow(c), nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("same code on a second operation: %d; want 409\n%s", res.StatusCode, page)
	}
	step := e.clock.Now().Unix() / 60
	next := time.Unix((step+1)*60, 0).In(time.FixedZone("JST", 9*60*60)).Format("15:04:05")
	for _, w := range []string{"既に使用されています", next + "（日本時間）頃", `name="otp"`, `action="` + action + `"`, "1,200円"} {
		if !strings.Contains(page, w) {
			t.Errorf("409 page lacks %q:\n%s", w, page)
		}
	}
	if n := len(e.ledger()); n != 1 {
		t.Fatalf("ledger has %d entries after the spent code; want 1", n)
	}
	// The form on that page, with the next code, confirms the operation.
	e.clock.Advance(time.Minute)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF field on the 409 page")
	}
	res, body := c.postForm(regexpAction(t, page), url.Values{"otp": {c.code()}, "csrf": {strings.ReplaceAll(m[1], "&#43;", "+")}})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, gwCompletion) {
		t.Fatalf("next code from the 409 page: %d\n%s", res.StatusCode, body)
	}
	if l := e.ledger(); len(l) != 2 || l[1].Params["amount"] != "1200" {
		t.Fatalf("ledger %+v; want the second transfer executed", l)
	}
}

// Every address a token form leaves in the address bar answers a GET with
// the token page, never a bare not_found: the forms POST-redirect-GET, and
// a GET of their actions (a reload, a bookmark, a restored phone tab) goes
// to the token page too.
func TestDeadEndTokenFormsRedirect(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()

	// STEP 1 answers with a redirect to the page saying the mail went out.
	res, body := c.postForm("/.otpgate/token/issue", url.Values{"email": {"u001@mobile.example"}, "pin": {"4829"}, "csrf": {c.csrf("/.otpgate/token")}})
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/.otpgate/token?done=issued" {
		t.Fatalf("issue: %d → %q; want 303 to the token page\n%s", res.StatusCode, loc, body)
	}
	st, page := cpPage(c, "/.otpgate/token?done=issued", "ja")
	if st != http.StatusOK || !strings.Contains(page, "初期設定用のメールを u0***@mobile.example に送信しました") {
		t.Errorf("token page after the issue: %d\n%s", st, page)
	}
	// "done" says only what is true: no activation is claimed.
	if _, page := cpPage(c, "/.otpgate/token?done=activated", "ja"); strings.Contains(page, "トークンの利用を開始しました") {
		t.Errorf("the token page claims an activation that did not happen:\n%s", page)
	}

	for _, path := range []string{"/.otpgate/token/issue", "/.otpgate/token/confirm", "/.otpgate/token/renew", "/.otpgate/token/revoke"} {
		req, _ := http.NewRequest(http.MethodGet, gatewayURL+path, nil)
		req.Header.Set("Accept", "text/html")
		if res, body := c.do(req); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/token" {
			t.Errorf("GET %s: %d → %q; want 303 to the token page\n%s", path, res.StatusCode, res.Header.Get("Location"), body)
		}
	}

	// STEP 3 too.
	link := e.setupLink("u001@mobile.example")
	res, out := c.postJSON(strings.TrimPrefix(link, gatewayURL), map[string]string{"service_id": "S001", "user_id": "U001", "pin": "4829"})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("setup: %d %v", res.StatusCode, out)
	}
	secret, _ := out["secret"].(string)
	var err error
	if c.secret, err = base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret); err != nil {
		t.Fatalf("setup secret %q: %v", secret, err)
	}
	res, _ = c.postForm("/.otpgate/token/confirm", url.Values{"otp": {c.code()}, "csrf": {c.csrf("/.otpgate/token")}})
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || loc != "/.otpgate/token?done=activated" {
		t.Fatalf("activation: %d → %q; want 303 to the token page", res.StatusCode, loc)
	}
	if _, page := cpPage(c, "/.otpgate/token?done=activated", "ja"); !strings.Contains(page, "トークンの利用を開始しました") || !strings.Contains(page, `href="/menu"`) {
		t.Errorf("token page after the activation lacks its message or the way back to the menu:\n%s", page)
	}

	// The address bar after cancelling shows what became of the operation.
	id := gwPause(c, "/transfer/execute", gwTransfer)
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+id+"/cancel", nil)
	if res, _ := c.do(req); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.otpgate/confirm/"+id {
		t.Errorf("GET of the cancel action: %d → %q; want 303 to the confirmation", res.StatusCode, res.Header.Get("Location"))
	}
}

// The gateway's 404 is a customer page in the customer's language, with a
// way back to the menu, never a bare code.
func TestDeadEndNotFoundPage(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U001")
	c.login()
	for lang, want := range map[string]string{"ja": "お探しのページは見つかりませんでした", "en": "The page was not found"} {
		for _, path := range []string{"/.otpgate/", "/.otpgate/nothing-here", "/.otpgate/confirm/x/y"} {
			st, page := cpPage(c, path, lang)
			if st != http.StatusNotFound || !strings.Contains(page, want) || !strings.Contains(page, `href="/menu"`) || strings.Contains(page, "not_found") {
				t.Errorf("%s (%s): %d; want a 404 page saying so with a link to the menu\n%s", path, lang, st, page)
			}
		}
	}
}

// A customer sent to enrolment by an operation is told it was NOT
// executed and to start it again after STEP 3; the page leads back to
// the menu; the operation never reaches the bank.
func TestDeadEndEnrolmentSaysNotExecuted(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.customer("S001", "U002")
	c.login()
	res, _ := c.postForm("/transfer/execute", url.Values{"to_bank": {"0001"}, "to_account": {"1234567"}, "amount": {"1500000"}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/token") {
		t.Fatalf("transfer before enrolment: %d → %q; want 303 to the token page", res.StatusCode, loc)
	}
	for lang, want := range map[string][]string{
		"ja": {"ご依頼のお取引は実行されていません", "STEP3が終わったら", `href="/menu"`, `action="/.otpgate/token/issue"`},
		"en": {"was NOT executed", "When STEP 3 is done", `href="/menu"`},
	} {
		_, page := cpPage(c, loc, lang)
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("token page after a refused transfer (%s) lacks %q:\n%s", lang, w, page)
			}
		}
	}
	if n := len(e.ledger()); n != 0 {
		t.Fatalf("ledger has %d entries; the transfer must not have run", n)
	}
}

var deadEndBody = regexp.MustCompile(`(?s)<p class="message-body">(.*?)</p>`)

// Expired, done and cancelled operations say different things, each
// whether money moved; an API client reads the fate; another session
// learns nothing of it.
func TestDeadEndGoneOperationsDiffer(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := gwEnrolled(e, "S001", "U001")
	done := gwPause(c, "/transfer/execute", gwTransfer)
	if res, _, _ := gwConfirmForm(c, done, c.code(), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("confirm: %d", res.StatusCode)
	}
	cancelled := gwPause(c, "/transfer/execute", gwTransfer)
	if res, _ := c.postForm("/.otpgate/confirm/"+cancelled+"/cancel", url.Values{"csrf": {c.csrf("/.otpgate/confirm/" + cancelled)}}); res.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d", res.StatusCode)
	}
	expired := gwPause(c, "/transfer/execute", gwTransfer)
	e.clock.Advance(5*time.Minute + time.Second)

	seen := map[string]string{}
	for _, tc := range []struct {
		fate, id string
		want     string
	}{
		{"done", done, "既にインターネットバンキングへ送信されています"},
		{"cancelled", cancelled, "取り消されたため、実行されていません"},
		{"expired", expired, "入力されなかったため、実行されていません"},
	} {
		st, page := cpPage(c, "/.otpgate/confirm/"+tc.id, "ja")
		m := deadEndBody.FindStringSubmatch(page)
		if st != http.StatusGone || m == nil || !strings.Contains(m[1], tc.want) {
			t.Errorf("%s: %d; want 410 saying %q\n%s", tc.fate, st, tc.want, page)
			continue
		}
		for other, msg := range seen {
			if msg == m[1] {
				t.Errorf("%s and %s say the same: %s", tc.fate, other, msg)
			}
		}
		seen[tc.fate] = m[1]
		req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+tc.id, nil)
		req.Header.Set("Accept", "application/json")
		_, body := c.do(req)
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		if out["error"] != "challenge_gone" || out["fate"] != tc.fate {
			t.Errorf("%s (JSON): %s; want challenge_gone with its fate", tc.fate, body)
		}
	}
	// Another customer's session learns nothing of it.
	other := e.customer("S001", "U002")
	other.login()
	req, _ := http.NewRequest(http.MethodGet, gatewayURL+"/.otpgate/confirm/"+done, nil)
	req.Header.Set("Accept", "application/json")
	if _, body := other.do(req); !strings.Contains(body, `"challenge_gone"`) || strings.Contains(body, "fate") {
		t.Errorf("another session is told: %s", body)
	}
	if n := len(e.ledger()); n != 1 {
		t.Fatalf("ledger has %d entries; want only the confirmed one", n)
	}
}
