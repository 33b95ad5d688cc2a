package pages

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/zengin"
	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

const phishingJa = "ワンタイムパスワードは、振込・振替、各種料金の払込、総合振込・給与賞与振込、トークン管理、利用者登録情報変更の操作時にのみ入力を求めます。ログイン時やその他の画面で入力を求められた場合はフィッシングの可能性があります。"

func TestNegotiate(t *testing.T) {
	tests := []struct {
		header string
		want   Lang
	}{
		{"", Japanese},
		{"en-US,en;q=0.9", English},
		{"ja,en;q=0.5", Japanese},
		{"fr", Japanese},
		{"en", English},
		{"EN-gb", English},
		{"ja-JP", Japanese},
		{"ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", Japanese},
		{"en-US,en;q=0.9,ja;q=0.8", English},
		{"ja;q=0.5,en;q=0.6", English},
		{"en;q=0.5,ja;q=0.5", Japanese},           // a tie is Japanese
		{"en;q=0", Japanese},                      // not acceptable
		{"fr,en;q=0.3", English},                  // English named, Japanese not
		{"fr,*;q=0.1", Japanese},                  // "*" stands for both: a tie
		{"en,*;q=0.5", English},                   // "*" gives Japanese 0.5
		{"ja;q=0.1,*", English},                   // "*" gives English 1
		{"en;q=abc", Japanese},                    // malformed q: ignored
		{"en;q=2", Japanese},                      // out of range: ignored
		{" en-US ; q=0.9 , ja ; q=0.8 ", English}, // spaces
		{"de-DE,de;q=0.9,en;q=0.8,ja;q=0.7", English},
		{",,;,en", English},
	}
	for _, tt := range tests {
		if got := Negotiate(tt.header); got != tt.want {
			t.Errorf("Negotiate(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestT(t *testing.T) {
	tests := []struct {
		lang Lang
		id   string
		args []any
		want string
	}{
		{Japanese, "invalid_otp", []any{3}, "ワンタイムパスワードが正しくありません。あと3回誤入力するとロックされ、ワンタイムパスワードが必要なお取引ができなくなります（ロックの解除にはお取引店でのお手続きが必要です）。"},
		{English, "invalid_otp", []any{3}, "The one-time password is incorrect. 3 attempts left: after that it is locked, and operations that need a one-time password are not possible until your branch unlocks it."},
		{English, "invalid_otp", []any{1}, "The one-time password is incorrect. 1 attempt left: after that it is locked, and operations that need a one-time password are not possible until your branch unlocks it."},
		{English, "csrf", []any{4}, "This form has expired. Please reload the page and try again."}, // extra args dropped
		{Japanese, "issue_sent", []any{"ta***@example.jp"}, "初期設定用のメールを ta***@example.jp に送信しました。携帯電話でメールを開き、STEP2に進んでください。"},
		{"fr", "cancelled", nil, "このお取引は実行されていません。必要な場合は、メニューからもう一度操作してください。"}, // unknown lang: Japanese
		{English, "no_such_id", []any{1}, "no_such_id"},
		{English, "%d%s", nil, "%d%s"},
	}
	for _, tt := range tests {
		if got := T(tt.lang, tt.id, tt.args...); got != tt.want {
			t.Errorf("T(%q, %q, %v) = %q, want %q", tt.lang, tt.id, tt.args, got, tt.want)
		}
	}
}

func TestVerbs(t *testing.T) {
	for s, want := range map[string]int{"": 0, "%": 0, "100%%": 0, "%d": 1, "%d%%%s": 2, "a %s b %d c": 2} {
		if got := verbs(s); got != want {
			t.Errorf("verbs(%q) = %d, want %d", s, got, want)
		}
	}
}

// gatewayIDs are the message IDs the gateway passes to the pages.
var gatewayIDs = []string{
	"invalid_otp", "otp_reused", "otp_format", "locked", "challenge_gone", "login_required",
	"enrollment_required", "token_expired", "token_revoked", "csrf", "store_unavailable",
	"body_too_large", "busy", "bad_request", "cancelled", "pin_format", "email_format", "issue_sent",
	"mail_failed", "active_token", "setup_failed", "link_gone", "activated", "renewed",
	"renew_too_early", "not_issued", "revoked", "upstream_failed", "unshowable_request",
	"title_confirm", "title_token", "title_setup", "title_error", "title_notice", "title_locked",
	"title_challenge_gone", "title_login_required", "title_unavailable", "title_cancelled",
	"title_upstream_failed", "title_bad_request",
	"back_to_menu", "to_token_page", "to_login",
}

func TestCatalogue(t *testing.T) {
	for id, m := range catalogue {
		if strings.TrimSpace(m.ja) == "" || strings.TrimSpace(m.en) == "" {
			t.Errorf("%s: ja %q, en %q: both are needed", id, m.ja, m.en)
		}
		if verbs(m.ja) != verbs(m.en) {
			t.Errorf("%s: ja has %d verbs, en %d", id, verbs(m.ja), verbs(m.en))
		}
		if base, ok := strings.CutSuffix(id, "_one"); ok {
			b, found := catalogue[base]
			if !found {
				t.Errorf("%s: singular form without %s", id, base)
			} else if verbs(b.ja) != verbs(m.ja) {
				t.Errorf("%s: verbs differ from %s", id, base)
			}
		}
		if strings.ContainsAny(m.ja+m.en, "<>") {
			t.Errorf("%s: catalogue texts are plain text", id)
		}
	}
	for _, id := range gatewayIDs {
		if _, ok := catalogue[id]; !ok {
			t.Errorf("gateway message %s is not in the catalogue", id)
		}
	}
	if catalogue["phishing_notice"].ja != phishingJa {
		t.Errorf("phishing notice changed: %q", catalogue["phishing_notice"].ja)
	}
}

// TestTemplateIDs checks that every message ID a template names is in the
// catalogue (IDs chosen in Go are checked by the render tests).
func TestTemplateIDs(t *testing.T) {
	re := regexp.MustCompile(`\{\{-?\s*(?:t (?:\$?\.Lang|\$lang)|\.T) "([^"]+)"`)
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil || len(files) == 0 {
		t.Fatalf("templates: %v %v", files, err)
	}
	n := 0
	for _, f := range files {
		b, err := fs.ReadFile(templateFS, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			n++
			if _, ok := catalogue[m[1]]; !ok {
				t.Errorf("%s: unknown message ID %q", f, m[1])
			}
		}
	}
	if n < 20 {
		t.Errorf("found only %d message IDs in the templates: is the pattern right?", n)
	}
}

var (
	common   = Common{Base: "/.otpgate", CSRF: "csrf-token-1", Issuer: "デモ信用金庫"}
	expires  = time.Date(2026, 3, 31, 20, 0, 0, 0, time.UTC) // 2026-04-01 05:00 in Japan
	qrPNG    = []byte("\x89PNG\r\n\x1a\nfake")
	otpURI   = "otpauth://totp/%E3%83%87%E3%83%A2:CORP01-taro?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=%E3%83%87%E3%83%A2&period=60"
	examples = []struct {
		name   string
		status int
		page   func(Common) Page
	}{
		{"confirm", 200, func(c Common) Page {
			return ConfirmPage{Common: c, ChallengeID: "ch1", Kind: "transfer",
				Fields: []Field{{Label: "振込金額", LabelEn: "Amount", Value: "100,000円"}, {Label: "振込先", Value: "ﾔﾏﾀﾞ ﾀﾛｳ"}},
				Method: "POST", Path: "/transfer/execute", Expires: expires}
		}},
		{"confirm error", 200, func(c Common) Page {
			return &ConfirmPage{Common: c, ChallengeID: "ch1", Kind: "bulk_transfer", Error: "invalid_otp", AttemptsLeft: 2,
				RenewDaysLeft: 12, RenewOpen: true}
		}},
		{"confirm unknown kind", 200, func(c Common) Page {
			return ConfirmPage{Common: c, ChallengeID: "ch1", Kind: "wire", Error: "otp_reused", AttemptsLeft: 4}
		}},
		{"token none", 200, func(c Common) Page { return TokenPage{Common: c, State: "none", Error: "enrollment_required"} }},
		{"token issued", 200, func(c Common) Page {
			return TokenPage{Common: c, State: "issued", MaskedEmail: "ta***@example.jp", Info: "issue_sent"}
		}},
		{"token initialised", 200, func(c Common) Page {
			return TokenPage{Common: c, State: "initialised", Error: "invalid_otp", AttemptsLeft: 3}
		}},
		{"token active", 200, func(c Common) Page {
			return TokenPage{Common: c, State: "active", MaskedEmail: "ta***@example.jp", Expires: expires, DaysLeft: 20, RenewOpen: true, Info: "renewed"}
		}},
		{"token active early", 200, func(c Common) Page {
			return TokenPage{Common: c, State: "active", Expires: expires, DaysLeft: 200, RenewFrom: expires.AddDate(0, 0, -30), Error: "renew_too_early"}
		}},
		{"token expired", 200, func(c Common) Page {
			return TokenPage{Common: c, State: "expired", Expires: expires, RenewOpen: true, Error: "token_expired"}
		}},
		{"token revoked", 200, func(c Common) Page { return &TokenPage{Common: c, State: "revoked", Info: "revoked"} }},
		{"token locked", 200, func(c Common) Page { return TokenPage{Common: c, State: "active", Locked: true, Expires: expires} }},
		{"setup form", 200, func(c Common) Page { return SetupPage{Common: c, Link: "abcDEF123_-", Error: "setup_failed"} }},
		{"setup result", 200, func(c Common) Page {
			return &SetupPage{Common: c, Link: "abc", Secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", URI: otpURI, QRPNG: qrPNG, Account: "デモ:CORP01-taro"}
		}},
		{"message locked", 423, func(c Common) Page {
			return MessagePage{Common: c, Title: "title_locked", Body: "locked", Links: []Link{{Href: "/", Text: "back_to_menu"}}}
		}},
		{"message login", 403, func(c Common) Page {
			return MessagePage{Common: c, Title: "title_login_required", Body: "login_required", Links: []Link{{Href: "/", Text: "to_login"}}}
		}},
		{"message unavailable", 503, func(c Common) Page {
			return &MessagePage{Common: c, Title: "title_unavailable", Body: "store_unavailable"}
		}},
		{"message cancelled", 200, func(c Common) Page {
			return MessagePage{Common: c, Title: "title_cancelled", Body: "cancelled", Links: []Link{{Href: "/menu", Text: "back_to_menu"}, {Href: "/.otpgate/token", Text: "to_token_page"}}}
		}},
		{"message untitled", 200, func(c Common) Page { return MessagePage{Common: c} }},
		{"file list", 200, func(c Common) Page {
			return FilePage{Common: c, File: zengin.Parse(zengintest.Sogo().MustBytes()), Back: "/.otpgate/confirm/ch1"}
		}},
		{"confirm file", 200, func(c Common) Page {
			return ConfirmPage{Common: c, ChallengeID: "ch1", Kind: "bulk_transfer", File: zengin.Parse(zengintest.Kyuyo().MustBytes()[:300]),
				Fields: []Field{{Label: "金額", Value: "12", Format: "yen"}}}
		}},
	}
)

func render(t *testing.T, status int, p Page) string {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := Render(rec, status, p); err != nil {
		t.Fatalf("Render: %v", err)
	}
	if rec.Code != status {
		t.Errorf("status %d, want %d", rec.Code, status)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	return rec.Body.String()
}

// TestRenderAll renders every example page in both languages.
func TestRenderAll(t *testing.T) {
	var unknown []string
	missing = func(id string) { unknown = append(unknown, id) }
	defer func() { missing = nil }()

	for _, ex := range examples {
		for _, lang := range []Lang{Japanese, English} {
			t.Run(ex.name+"/"+string(lang), func(t *testing.T) {
				unknown = nil
				c := common
				c.Lang = lang
				body := render(t, ex.status, ex.page(c))
				if len(unknown) > 0 {
					t.Errorf("unknown message IDs: %v", unknown)
				}
				checks := []struct {
					what string
					ok   bool
				}{
					{"lang attribute", strings.Contains(body, `<html lang="`+string(lang)+`">`)},
					{"viewport", strings.Contains(body, `<meta name="viewport" content="width=device-width, initial-scale=1">`)},
					{"phishing notice", strings.Contains(body, T(lang, "phishing_notice"))},
					{"issuer", strings.Contains(body, "デモ信用金庫")},
					{"stylesheet", strings.Contains(body, `<link rel="stylesheet" href="/.otpgate/assets/otpgate.css?v=`+stylesheetVersion+`">`)},
					{"no sanitised URL", !strings.Contains(body, "ZgotmplZ")},
					{"no script", !strings.Contains(strings.ToLower(body), "<script")},
					{"no inline style", !strings.Contains(body, "style=") && !strings.Contains(body, "<style")},
					{"no format error", !strings.Contains(body, "%!")},
					{"every form posts with csrf", strings.Count(body, "<form ") == strings.Count(body, `<input type="hidden" name="csrf" value="csrf-token-1">`)},
					{"every form posts", strings.Count(body, "<form ") == strings.Count(body, `<form method="post" action="/.otpgate/`)},
				}
				if lang == Japanese {
					checks = append(checks, struct {
						what string
						ok   bool
					}{"exact Japanese notice", strings.Contains(body, phishingJa)})
				}
				for _, c := range checks {
					if !c.ok {
						t.Errorf("%s: failed\n%s", c.what, body)
					}
				}
			})
		}
	}
}

func TestRenderWithoutCSRF(t *testing.T) {
	c := common
	c.CSRF = ""
	body := render(t, 200, ConfirmPage{Common: c, ChallengeID: "x"})
	if strings.Contains(body, `name="csrf"`) {
		t.Errorf("csrf field without a token:\n%s", body)
	}
}

func TestRenderRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		page   Page
	}{
		"nil page":        {200, nil},
		"nil pointer":     {200, (*ConfirmPage)(nil)},
		"bad status":      {42, MessagePage{}},
		"too high status": {1000, MessagePage{}},
	} {
		rec := httptest.NewRecorder()
		if err := Render(rec, tc.status, tc.page); err == nil {
			t.Errorf("%s: no error", name)
		}
		if rec.Body.Len() > 0 || len(rec.Header()) > 0 {
			t.Errorf("%s: wrote a response", name)
		}
	}
	rec := httptest.NewRecorder()
	if err := Render(rec, 0, MessagePage{Title: "title_error"}); err != nil || rec.Code != 200 {
		t.Errorf("status 0: %v %d", err, rec.Code)
	}
}

func TestConfirmPage(t *testing.T) {
	p := ConfirmPage{Common: common, ChallengeID: "ch/1?x", Kind: "transfer",
		Fields: []Field{
			{Label: "振込先", LabelEn: "Payee", Value: `<script>alert("x")</script>`},
			{LabelEn: "Amount only in English", Value: "1 円"},
			{Value: "no label"},
		},
		Method: "POST", Path: "/transfer/execute?a=<b>", Expires: expires}
	body := render(t, 200, p)
	for _, want := range []string{
		`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`,
		`<th scope="row">振込先</th>`,
		`<th scope="row">Amount only in English</th>`,
		`<th scope="row">項目</th>`,
		`<td>振込・振替</td>`,
		`05:00`, // Japan time
		`<form method="post" action="/.otpgate/confirm/ch%2F1%3Fx" class="form">`,
		`<form method="post" action="/.otpgate/confirm/ch%2F1%3Fx/cancel" class="form">`,
		`<input id="otp" name="otp" type="text" class="input-otp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]*" maxlength="8" required autofocus aria-describedby="otp-hint">`,
		`<label for="otp">`,
		T(Japanese, "cancel_submit"),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("unescaped field value")
	}
	if strings.Contains(body, "POST") || strings.Contains(body, "/transfer/execute") || strings.Contains(body, "送信先") {
		t.Errorf("the request line is shown to the customer\n%s", body)
	}
	if strings.Contains(body, "alert-error") || strings.Contains(body, "/token") {
		t.Errorf("error or renewal shown without cause")
	}

	p.Lang = English
	body = render(t, 200, p)
	for _, want := range []string{`<th scope="row">Payee</th>`, `<th scope="row">Item</th>`, `<td>Transfer</td>`, "Cancel this operation"} {
		if !strings.Contains(body, want) {
			t.Errorf("en: missing %s", want)
		}
	}
}

func TestConfirmKinds(t *testing.T) {
	for kind, want := range map[string][2]string{
		"transfer":         {"振込・振替", "Transfer"},
		"bill_payment":     {"各種料金の払込", "Bill payment"},
		"bulk_transfer":    {"総合振込・給与賞与振込", "Bulk or payroll transfer"},
		"token_management": {"ワンタイムパスワードトークン管理", "OTP token management"},
		"user_change":      {"利用者登録情報変更", "Change of user registration"},
		"":                 {"保護されたお取引", "Protected operation"},
		"wire":             {"保護されたお取引 (wire)", "Protected operation (wire)"},
		"other":            {"保護されたお取引 (other)", "Protected operation (other)"},
	} {
		if got := kindName(Japanese, kind); got != want[0] {
			t.Errorf("ja %q: %q", kind, got)
		}
		if got := kindName(English, kind); got != want[1] {
			t.Errorf("en %q: %q", kind, got)
		}
	}
}

func TestConfirmErrors(t *testing.T) {
	tests := []struct {
		lang     Lang
		err      string
		attempts int
		want     []string
		not      []string
	}{
		// The error says what happens at zero attempts, so no second line.
		{Japanese, "invalid_otp", 3, []string{"あと3回誤入力するとロックされ"}, []string{"あと3回誤入力するとロックされます。"}},
		{English, "invalid_otp", 1, []string{"1 attempt left: after that it is locked"}, []string{"more wrong"}},
		{English, "otp_reused", 4, []string{"already been used", "4 more wrong entries"}, nil},
		{Japanese, "otp_format", 0, []string{"6桁"}, []string{"あと"}},
		{English, "csrf", 2, []string{"reload", "2 more wrong entries"}, nil},
	}
	for _, tt := range tests {
		c := common
		c.Lang = tt.lang
		body := render(t, 200, ConfirmPage{Common: c, ChallengeID: "x", Error: tt.err, AttemptsLeft: tt.attempts})
		if !strings.Contains(body, `role="alert"`) || !strings.Contains(body, `aria-invalid="true"`) {
			t.Errorf("%s: error not marked", tt.err)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s/%s: missing %q", tt.lang, tt.err, w)
			}
		}
		for _, w := range tt.not {
			if strings.Contains(body, w) {
				t.Errorf("%s/%s: unexpected %q", tt.lang, tt.err, w)
			}
		}
	}
}

func TestConfirmRenewReminder(t *testing.T) {
	for _, tc := range []struct {
		days int
		open bool
		want bool
	}{{12, true, true}, {12, false, false}, {0, true, false}} {
		body := render(t, 200, ConfirmPage{Common: common, ChallengeID: "x", RenewDaysLeft: tc.days, RenewOpen: tc.open})
		got := strings.Contains(body, `<a href="/.otpgate/token">`) && strings.Contains(body, "あと12日")
		if got != tc.want {
			t.Errorf("days %d open %v: reminder %v", tc.days, tc.open, got)
		}
	}
}

var (
	issueForm   = `action="/.otpgate/token/issue"`
	confirmForm = `action="/.otpgate/token/confirm"`
	renewForm   = `action="/.otpgate/token/renew"`
	revokeForm  = `action="/.otpgate/token/revoke"`
	allForms    = []string{issueForm, confirmForm, renewForm, revokeForm}
)

func TestTokenActions(t *testing.T) {
	tests := []struct {
		name string
		page TokenPage
		want []string
	}{
		{"none", TokenPage{State: "none"}, []string{issueForm}},
		{"revoked", TokenPage{State: "revoked"}, []string{issueForm}},
		{"issued", TokenPage{State: "issued", MaskedEmail: "ta***@example.jp"}, []string{confirmForm, issueForm}},
		{"initialised", TokenPage{State: "initialised"}, []string{confirmForm, issueForm}},
		{"active", TokenPage{State: "active", Expires: expires, DaysLeft: 100}, []string{revokeForm}},
		{"active renew", TokenPage{State: "active", Expires: expires, DaysLeft: 10, RenewOpen: true}, []string{renewForm, revokeForm}},
		{"expired", TokenPage{State: "expired", Expires: expires}, []string{renewForm}},
		{"expired open", TokenPage{State: "expired", Expires: expires, RenewOpen: true}, []string{renewForm}},
		{"locked active", TokenPage{State: "active", Locked: true, RenewOpen: true}, nil},
		{"locked none", TokenPage{State: "none", Locked: true}, nil},
		{"locked expired", TokenPage{State: "expired", Locked: true}, nil},
		{"unknown", TokenPage{State: "weird"}, nil},
	}
	for _, tt := range tests {
		for _, lang := range []Lang{Japanese, English} {
			p := tt.page
			p.Common = common
			p.Lang = lang
			body := render(t, 200, p)
			for _, f := range allForms {
				if got, want := strings.Count(body, f), btoi(slices.Contains(tt.want, f)); got != want {
					t.Errorf("%s/%s: %s appears %d times, want %d", tt.name, lang, f, got, want)
				}
			}
			if got := strings.Count(body, "<form "); got != len(tt.want) {
				t.Errorf("%s/%s: %d forms, want %d", tt.name, lang, got, len(tt.want))
			}
			if locked := strings.Contains(body, T(lang, "token_locked")); locked != p.Locked {
				t.Errorf("%s/%s: lock explanation shown %v", tt.name, lang, locked)
			}
			if steps := strings.Contains(body, T(lang, "step1")); steps != slices.Contains(tt.want, issueForm) {
				t.Errorf("%s/%s: steps shown %v", tt.name, lang, steps)
			}
			if slices.Contains(tt.want, revokeForm) && !strings.Contains(body, T(lang, "revoke_intro")) {
				t.Errorf("%s/%s: revoke without explanation", tt.name, lang)
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestTokenDetails(t *testing.T) {
	p := TokenPage{Common: common, State: "active", MaskedEmail: "ta***@example.jp", Expires: expires, DaysLeft: 1,
		RenewFrom: expires.AddDate(0, 0, -30)}
	body := render(t, 200, p)
	for _, want := range []string{"<td>利用中</td>", "<td>ta***@example.jp</td>", "<td>2026年4月1日（あと1日）</td>", "更新は2026年3月2日から可能です。"} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s\n%s", want, body)
		}
	}
	p.Lang = English
	body = render(t, 200, p)
	for _, want := range []string{"<td>Active</td>", "<td>1 Apr 2026 (1 day left)</td>"} {
		if !strings.Contains(body, want) {
			t.Errorf("en: missing %s", want)
		}
	}

	// The current step is marked.
	for state, step := range map[string]string{"none": "step1", "issued": "step2", "initialised": "step3"} {
		body := render(t, 200, TokenPage{Common: common, State: state})
		if !strings.Contains(body, `<li class="current" aria-current="step"><strong class="badge">現在のステップ</strong> `+T(Japanese, step)) {
			t.Errorf("%s: %s not current\n%s", state, step, body)
		}
	}
	// "issue_sent" is not said twice.
	body = render(t, 200, TokenPage{Common: common, State: "issued", MaskedEmail: "ta***@example.jp", Info: "issue_sent"})
	if strings.Count(body, T(Japanese, "sent_to", "ta***@example.jp")) != 1 || !strings.Contains(body, T(Japanese, "issue_sent", "ta***@example.jp")) {
		t.Errorf("issue_sent: mail note shown twice or not at all\n%s", body)
	}
	// The re-issue form is the issue form with another button.
	body = render(t, 200, TokenPage{Common: common, State: "issued", MaskedEmail: "ta***@example.jp"})
	for _, want := range []string{T(Japanese, "sent_to", "ta***@example.jp"), T(Japanese, "reissue_submit"), `name="email" type="email"`, `name="pin" type="password"`, `pattern="[0-9]{4,8}"`} {
		if !strings.Contains(body, want) {
			t.Errorf("issued: missing %s", want)
		}
	}
}

func TestTokenMessages(t *testing.T) {
	tests := []struct {
		page TokenPage
		want string
	}{
		{TokenPage{Info: "issue_sent", MaskedEmail: "ta***@example.jp"}, "初期設定用のメールを ta***@example.jp に送信しました。"},
		{TokenPage{Info: "issue_sent"}, "初期設定用のメールを ご登録の携帯メールアドレス に送信しました。"},
		{TokenPage{Info: "renewed", Expires: expires}, "新しい有効期限は2026年4月1日です。"},
		{TokenPage{Error: "renew_too_early", RenewFrom: expires}, "2026年4月1日から更新できます。"},
		{TokenPage{Error: "renew_too_early"}, T(Japanese, "renew_too_early_nodate")},
		{TokenPage{Error: "invalid_otp", AttemptsLeft: 2}, "あと2回誤入力するとロックされ"},
		{TokenPage{Error: "mail_failed"}, T(Japanese, "mail_failed")},
	}
	for _, tt := range tests {
		p := tt.page
		p.Common = common
		p.State = "active"
		if body := render(t, 200, p); !strings.Contains(body, tt.want) {
			t.Errorf("%s%s: missing %q", p.Error, p.Info, tt.want)
		}
	}
}

func TestSetupPage(t *testing.T) {
	form := render(t, 200, SetupPage{Common: common, Link: "L1nk_-"})
	for _, want := range []string{
		`<form method="post" action="/.otpgate/setup/L1nk_-" class="form form-large">`,
		`<label for="service_id">`, `name="service_id"`, `<label for="user_id">`, `name="user_id"`,
		`<label for="pin">`, `name="pin" type="password"`, `inputmode="numeric"`,
	} {
		if !strings.Contains(form, want) {
			t.Errorf("form: missing %s", want)
		}
	}
	if strings.Contains(form, "otpauth") || strings.Contains(form, "data:image") {
		t.Errorf("form shows a result")
	}

	for _, lang := range []Lang{Japanese, English} {
		c := common
		c.Lang = lang
		body := render(t, 200, SetupPage{Common: c, Link: "L", Secret: "jbswy3dpehpk3pxp jbswy3dpehpk3pxp====", URI: otpURI, QRPNG: qrPNG, Account: "デモ:CORP01-taro"})
		for _, want := range []string{
			`href="otpauth://totp/`,
			`secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP`,
			`<img src="data:image/png;base64,iVBORw0KGgpmYWtl" alt="` + T(lang, "qr_alt") + `"`,
			`<code>JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP</code>`,
			`<td>デモ:CORP01-taro</td>`,
			T(lang, "setup_next"),
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: missing %s\n%s", lang, want, body)
			}
		}
		if strings.Contains(body, "<form") || strings.Contains(body, `name="pin"`) {
			t.Errorf("%s: form shown with the result", lang)
		}
	}

	// Only otpauth: links are trusted.
	for _, uri := range []string{"javascript:alert(1)", "JavaScript:alert(1)", "http://evil.example/", "data:text/html,x", ""} {
		body := render(t, 200, SetupPage{Common: common, Secret: "JBSWY3DP", URI: uri})
		if strings.Contains(body, `class="button button-primary button-block" href=`) {
			t.Errorf("%q: link shown", uri)
		}
	}
	body := render(t, 200, SetupPage{Common: common, Secret: "JBSWY3DP", URI: "OTPAUTH://totp/x?secret=JBSWY3DP"})
	if !strings.Contains(body, `href="OTPAUTH://totp/x?secret=JBSWY3DP"`) {
		t.Errorf("upper-case scheme refused")
	}
}

func TestGroup4(t *testing.T) {
	for in, want := range map[string]string{"": "", "ABC": "ABC", "ABCD": "ABCD", "abcde": "ABCD E", "AB CD EF GH==": "ABCD EFGH"} {
		if got := group4(in); got != want {
			t.Errorf("group4(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMessagePage(t *testing.T) {
	body := render(t, 423, MessagePage{Common: common, Title: "title_locked", Body: "locked",
		Links: []Link{{Href: "/", Text: "back_to_menu"}, {Href: "javascript:alert(1)", Text: "to_login"}}})
	for _, want := range []string{
		`<body class="page status-error">`,
		`<title>ワンタイムパスワードがロックされました | デモ信用金庫</title>`,
		`<h1>ワンタイムパスワードがロックされました</h1>`,
		T(Japanese, "locked"),
		`<a class="button button-secondary" href="/">メニューへ戻る</a>`,
		`href="#ZgotmplZ">ログイン画面へ</a>`, // html/template refuses the javascript: link
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s\n%s", want, body)
		}
	}
	c := common
	c.Lang = English
	body = render(t, 503, MessagePage{Common: c, Status: 200, Title: "title_error", Body: "invalid_otp", Args: []any{2}})
	for _, want := range []string{`<body class="page status-ok">`, "2 attempts left:"} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s\n%s", want, body)
		}
	}
	body = render(t, 503, MessagePage{Common: c, Title: "title_unavailable", Body: "store_unavailable"})
	if !strings.Contains(body, `status-server`) {
		t.Errorf("5xx not styled")
	}
}

func TestBaseTrailingSlash(t *testing.T) {
	c := common
	c.Base = "/gate/"
	body := render(t, 200, TokenPage{Common: c, State: "active"})
	for _, want := range []string{`href="/gate/assets/otpgate.css?v=`, `action="/gate/token/revoke"`} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}

func TestAssets(t *testing.T) {
	h := Assets()
	tests := []struct {
		method, path string
		header       map[string]string
		status       int
	}{
		{"GET", "otpgate.css", nil, 200},
		{"GET", "/otpgate.css", nil, 200},
		{"HEAD", "otpgate.css", nil, 200},
		{"GET", "otpgate.css", map[string]string{"If-None-Match": `"` + stylesheetVersion + `"`}, 304},
		{"GET", "other.css", nil, 404},
		{"GET", "", nil, 404},
		{"GET", "../pages.go", nil, 404},
		{"POST", "otpgate.css", nil, 405},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "/x", nil)
		r.URL.Path = tt.path
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tt.status {
			t.Errorf("%s %q: status %d, want %d", tt.method, tt.path, rec.Code, tt.status)
		}
		if tt.status != 200 {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/css; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("no nosniff")
		}
		if tt.method == "GET" && !strings.Contains(rec.Body.String(), ".phishing") {
			t.Errorf("not the stylesheet")
		}
	}
}

// TestStylesheetClasses checks that the classes the templates use are styled.
func TestStylesheetClasses(t *testing.T) {
	css := string(stylesheet)
	re := regexp.MustCompile(`class="([^"{]+)"`)
	files, _ := fs.Glob(templateFS, "templates/*.html")
	for _, f := range files {
		b, _ := fs.ReadFile(templateFS, f)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			for _, class := range strings.Fields(m[1]) {
				if !strings.Contains(css, "."+class) {
					t.Errorf("%s: class %q is not in the stylesheet", f, class)
				}
			}
		}
	}
}

func TestCSP(t *testing.T) {
	for _, d := range []string{"default-src 'none'", "style-src 'self'", "img-src 'self' data:", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP lacks %s", d)
		}
	}
	if strings.Contains(CSP, "unsafe") || strings.Contains(CSP, "script-src") {
		t.Errorf("CSP too loose: %s", CSP)
	}
}

// The rendered pages are served with the stylesheet that Assets serves.
func TestStylesheetLinkServed(t *testing.T) {
	body := render(t, 200, MessagePage{Common: common, Title: "title_error"})
	m := regexp.MustCompile(`href="/\.otpgate/assets/([^"?]+)\?v=`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no stylesheet link")
	}
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.URL.Path = m[1]
	rec := httptest.NewRecorder()
	Assets().ServeHTTP(rec, r)
	if rec.Code != 200 {
		t.Errorf("stylesheet %s: %d", m[1], rec.Code)
	}
}
