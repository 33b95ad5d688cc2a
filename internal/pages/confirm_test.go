package pages

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/zengin"
	"github.com/otpgate/otpgate/internal/zengin/zengintest"
)

func renderIn(t *testing.T, lang Lang, p ConfirmPage) string {
	t.Helper()
	p.Common = common
	p.Lang = lang
	if p.ChallengeID == "" {
		p.ChallengeID = "ch1"
	}
	return render(t, 200, p)
}

func sampleBanks(t *testing.T) *display.BankTable {
	t.Helper()
	f, err := os.Open("../display/banks-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := display.LoadBankTable(f)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// Values are shown as a bank shows them; a value that does not read one
// way in its format is shown as sent, with a note saying why.
func TestConfirmFormats(t *testing.T) {
	fields := []Field{
		{Label: "金額", LabelEn: "Amount", Value: "1500000", Format: "yen"},
		{Label: "振込先金融機関", LabelEn: "Bank", Value: "0009", Format: "bank"},
		{Label: "支店", LabelEn: "Branch", Value: "258", Format: "branch"},
		{Label: "口座", LabelEn: "Account", Value: "1 1234567", Format: "account"},
		{Label: "振込指定日", LabelEn: "Date", Value: "20261207", Format: "date"},
		{Label: "お客さま番号", LabelEn: "Customer number", Value: "A-0012", Format: "code"},
		{Label: "手数料", LabelEn: "Fee", Value: "1,500", Format: "yen"},
		{Label: "メモ", LabelEn: "Memo", Value: "1500000"},
	}
	tests := []struct {
		lang    Lang
		want    []string
		notWant []string
	}{
		{Japanese, []string{
			`<td>1,500,000円</td>`,
			`<td>三井住友銀行（0009）</td>`,
			`<td>青山支店（258）</td>`,
			`<td>普通 1234567</td>`,
			`<td>2026年12月7日</td>`,
			`<td><code class="value-code">A-0012</code></td>`,
			// A fee with a separator is not tidied: the bank may read it
			// otherwise. Shown raw, and the page says why.
			`<td>1,500<span class="value-doubt">`,
			`<td>1500000</td>`, // plain stays plain
		}, []string{`<td>1,500円`}},
		{English, []string{
			`<td>¥1,500,000</td>`,
			`<td>Ordinary 1234567</td>`,
			`<td>7 Dec 2026</td>`,
			`<td>1,500<span class="value-doubt">`,
		}, nil},
	}
	for _, tt := range tests {
		body := renderIn(t, tt.lang, ConfirmPage{Kind: "transfer", Fields: fields, Banks: sampleBanks(t)})
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: missing %s\n%s", tt.lang, w, body)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(body, w) {
				t.Errorf("%s: shows %s", tt.lang, w)
			}
		}
	}

	// Without a bank table the codes are shown as sent, with a note.
	body := renderIn(t, Japanese, ConfirmPage{Kind: "transfer", Fields: fields[1:3]})
	if !strings.Contains(body, `<td>0009<span class="value-doubt">金融機関名の一覧が設定されていません</span></td>`) {
		t.Errorf("bank without a table:\n%s", body)
	}
}

// A value the policy escaped (a bidi override in an amount) stays escaped:
// it is not an amount, so it is shown as it was held, with the notice and
// a note on the value.
func TestConfirmEscapedValueStaysEscaped(t *testing.T) {
	escaped := `1\u202E0000`
	for _, format := range []string{"yen", "code", ""} {
		body := renderIn(t, Japanese, ConfirmPage{Kind: "transfer", Doubt: "escaped_characters",
			Fields: []Field{{Label: "金額", Value: escaped, Format: format}}})
		if !strings.Contains(body, escaped) || strings.Contains(body, "\u202E") {
			t.Errorf("format %q: escaped value not shown as held\n%s", format, body)
		}
		if !strings.Contains(body, DoubtText(Japanese, "escaped_characters")) {
			t.Errorf("format %q: no doubt notice", format)
		}
		if format == "yen" && !strings.Contains(body, `<span class="value-doubt">`) {
			t.Errorf("yen: no note that the amount could not be read")
		}
	}
}

func TestConfirmTitleAndRevoke(t *testing.T) {
	tests := []struct {
		name string
		p    ConfirmPage
		lang Lang
		want []string
	}{
		{"bank's title", ConfirmPage{Kind: "bill_payment", Title: "税金・各種料金の払込", TitleEn: "Taxes and bills"}, Japanese,
			[]string{`<td>税金・各種料金の払込</td>`}},
		{"bank's title, en", ConfirmPage{Kind: "bill_payment", Title: "税金・各種料金の払込", TitleEn: "Taxes and bills"}, English,
			[]string{`<td>Taxes and bills</td>`}},
		{"no English title", ConfirmPage{Kind: "bill_payment", Title: "税金・各種料金の払込"}, English,
			[]string{`<td>Bill payment</td>`}},
		{"revoke", ConfirmPage{Kind: "token_management", Revoke: true}, Japanese,
			[]string{`<td>トークンの失効</td>`, "このトークンを失効させます"}},
		{"revoke, en", ConfirmPage{Kind: "token_management", Revoke: true}, English,
			[]string{`<td>Revoking your token</td>`, "This will revoke your token"}},
	}
	for _, tt := range tests {
		body := renderIn(t, tt.lang, tt.p)
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: missing %s\n%s", tt.name, w, body)
			}
		}
	}
	if body := renderIn(t, Japanese, ConfirmPage{Kind: "token_management"}); strings.Contains(body, "失効させます") {
		t.Error("revoke wording on another token operation")
	}
}

func summaryOf(t *testing.T, f zengintest.File) *zengin.Summary {
	t.Helper()
	b, err := f.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return zengin.Parse(b)
}

// A bulk (総合) and a payroll (給与) file are summarised: type, requester,
// date, count, total, the largest transfers with bank, branch, account and
// recipient in half-width kana as in the file, and the SHA-256.
func TestConfirmFileSummary(t *testing.T) {
	sogo, kyuyo := summaryOf(t, zengintest.Sogo()), summaryOf(t, zengintest.Kyuyo())
	tests := []struct {
		name string
		s    *zengin.Summary
		lang Lang
		want []string
	}{
		{"総合振込", sogo, Japanese, []string{
			`<tr><th scope="row">種類</th><td>総合振込</td></tr>`,
			`<td>ｶ)ﾃﾞﾓｼﾖｳｼﾞ（依頼人コード 1234567890）</td>`,
			`<tr><th scope="row">振込指定日</th><td>12月7日</td></tr>`,
			`<td>9999 ﾃﾞﾓｼﾝｸﾐ 001 ﾎﾝﾃﾝ 普通 1234567</td>`,
			`<tr><th scope="row">件数</th><td>6件</td></tr>`,
			`<td>3,672,400円</td>`,
			`<code class="value-code hash">` + sogo.SHA256 + `</code>`,
			`<h3>お振込の明細</h3>`, // six: all of them are listed
			`<tr><td>0001 ﾐｽﾞﾎ</td><td>100 ﾎﾝﾃﾝ</td><td>普通 1111111</td><td>ｶ)ﾔﾏﾀﾞｺｳｷﾞﾖｳ</td><td class="amount">1,500,000円</td></tr>`,
			`<td>当座 0222222</td><td>ﾕ)ｻｸﾗｼﾖｳｶｲ</td>`,
			`<td>貯蓄 0066666</td><td>ﾆﾎﾝﾃﾞﾝｷ(ｶ</td>`,
		}},
		{"総合振込, en", sogo, English, []string{
			`<td>Bulk transfer</td>`, `<td>7 Dec</td>`, `<td>6 transfers</td>`, `<td>¥3,672,400</td>`,
			`<td>Ordinary 1111111</td>`,
		}},
		{"給与振込", kyuyo, Japanese, []string{
			`<td>給与振込</td>`, `<td>4月25日</td>`, `<td>4件</td>`, `<td>1,042,300円</td>`, `<td>ｶ)ﾃﾞﾓｼﾖｳｼﾞ（依頼人コード 1234567890）</td>`,
			`<tr><td>0009 ﾐﾂｲｽﾐﾄﾓ</td><td>258 ｱｵﾔﾏ</td><td>普通 7000002</td><td>ｻﾄｳ ﾐｻｷ</td><td class="amount">312,500円</td></tr>`,
		}},
	}
	for _, tt := range tests {
		body := renderIn(t, tt.lang, ConfirmPage{Kind: "bulk_transfer", File: tt.s,
			Fields: []Field{{Label: "振込データ", Value: "kyuyo.txt"}}})
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: missing %s\n%s", tt.name, w, body)
			}
		}
		if strings.Contains(body, "file-doubt") {
			t.Errorf("%s: a sound file is flagged", tt.name)
		}
	}
	// Largest first: the 1,500,000 transfer heads the list, then 1,250,000.
	body := renderIn(t, Japanese, ConfirmPage{Kind: "bulk_transfer", File: sogo})
	if i, j := strings.Index(body, "1,500,000円"), strings.Index(body, "1,250,000円"); i < 0 || j < i {
		t.Errorf("not largest first:\n%s", body)
	}
}

// A file of more than ten transfers lists the ten largest and links to
// the whole list, which the file page shows.
func TestConfirmFileTopTen(t *testing.T) {
	f := zengintest.Kyuyo()
	base := f.Transfers[0]
	f.Transfers = nil
	for i := range 25 {
		tr := base
		tr.AccountNumber = "70000" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		tr.Amount = int64(100000 + 1000*i)
		f.Transfers = append(f.Transfers, tr)
	}
	s := summaryOf(t, f)
	body := renderIn(t, Japanese, ConfirmPage{Kind: "bulk_transfer", File: s, FileList: "/.otpgate/confirm/ch1/file"})
	if n := strings.Count(body, `<td class="amount">`); n != 10 {
		t.Errorf("%d transfers listed, want the 10 largest", n)
	}
	for _, w := range []string{`<h3>金額の大きいお振込（上位10件）</h3>`, `<td class="amount">124,000円</td>`, `<td>25件</td>`,
		`<a href="/.otpgate/confirm/ch1/file">すべてのお振込を表示する（25件）</a>`} {
		if !strings.Contains(body, w) {
			t.Errorf("missing %s\n%s", w, body)
		}
	}
	if strings.Contains(body, `<td class="amount">100,000円</td>`) {
		t.Error("the smallest transfer is among the ten largest")
	}

	c := common
	list := render(t, 200, FilePage{Common: c, File: s, Back: "/.otpgate/confirm/ch1"})
	if n := strings.Count(list, `<td class="amount">`); n != 25 {
		t.Errorf("file page lists %d transfers, want 25", n)
	}
	if !strings.Contains(list, `<a class="button button-secondary" href="/.otpgate/confirm/ch1">確認画面に戻る</a>`) {
		t.Errorf("file page: no way back\n%s", list)
	}
	if list := render(t, 200, FilePage{Common: c, File: s, Back: "//evil.example/x"}); strings.Contains(list, "evil") {
		t.Error("file page links elsewhere")
	}
}

// A file whose trailer disagrees with its records is flagged prominently,
// above the details, with what is wrong; so is a file that cannot be read.
func TestConfirmFileDoubt(t *testing.T) {
	f := zengintest.Kyuyo()
	f.TrailerCount = int64pages(5)
	s := summaryOf(t, f)
	if !s.Doubtful() {
		t.Fatal("the generator's bad trailer is not a problem")
	}
	for _, lang := range []Lang{Japanese, English} {
		body := renderIn(t, lang, ConfirmPage{Kind: "bulk_transfer", File: s})
		alert := `<div class="alert alert-error file-doubt" role="alert">` + "\n<p>" + T(lang, "file_doubt") + "</p>"
		i := strings.Index(body, alert)
		if i < 0 || i > strings.Index(body, `<table class="details">`) {
			t.Errorf("%s: no file alert above the details\n%s", lang, body)
		}
		problem := s.Problems[0].Japanese()
		if lang == English {
			problem = s.Problems[0].English()
		}
		if !strings.Contains(body, "<li>"+problem+"</li>") {
			t.Errorf("%s: problem %q not listed", lang, problem)
		}
	}
	body := renderIn(t, Japanese, ConfirmPage{Kind: "bulk_transfer", FileUnreadable: true})
	if !strings.Contains(body, T(Japanese, "file_unreadable")) || strings.Contains(body, "file-heading") {
		t.Errorf("unreadable file:\n%s", body)
	}
}

func int64pages(n int64) *int64 { return &n }

// Texts about the codes say the configured period and digits.
func TestPeriodAndDigits(t *testing.T) {
	c := common
	c.Period, c.Digits = 30*time.Second, 8
	confirm := render(t, 200, ConfirmPage{Common: c, ChallengeID: "x", Error: "otp_format"})
	setup := render(t, 200, SetupPage{Common: c, Link: "l", Secret: "JBSWY3DPEHPK3PXP", URI: otpURI})
	reused := render(t, 409, MessagePage{Common: c, Title: "title_error", Body: "otp_reused"})
	token := render(t, 200, TokenPage{Common: c, State: "initialised", Error: "otp_reused"})
	for name, tc := range map[string]struct {
		body string
		want []string
	}{
		"confirm": {confirm, []string{"8桁の数字（30秒ごとに変わります）", "8桁の数字を入力してください"}},
		"setup":   {setup, []string{"時間ベース、30秒、8桁"}},
		"message": {reused, []string{"最大30秒"}},
		"token":   {token, []string{"最大30秒"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.body, w) {
				t.Errorf("%s: missing %s", name, w)
			}
		}
		if strings.Contains(tc.body, "60秒") || strings.Contains(tc.body, "6桁") || strings.Contains(tc.body, "{period}") || strings.Contains(tc.body, "{digits}") {
			t.Errorf("%s: default or placeholder left\n%s", name, tc.body)
		}
	}
	if got := T(English, "otp_hint"); got != "The 6-digit number shown in your token app (it changes every 60 seconds)" {
		t.Errorf("T without a page: %q", got)
	}
	c.Lang = English
	if got := c.T("otp_reused"); !strings.Contains(got, "up to 30 seconds") {
		t.Errorf("Common.T: %q", got)
	}
}

// The bank's contact line is at the foot of every page; the issue form
// names the sender address of the setup mail.
func TestContactAndSender(t *testing.T) {
	for _, ex := range examples {
		c := common
		c.Contact = "0120-000-000（平日9:00～17:00）"
		body := render(t, ex.status, ex.page(c))
		if !strings.Contains(body, `<footer class="site-footer"><p>お問い合わせ：0120-000-000（平日9:00～17:00）</p></footer>`) {
			t.Errorf("%s: no contact line", ex.name)
		}
	}
	if body := render(t, 200, ConfirmPage{Common: common}); strings.Contains(body, "site-footer") {
		t.Error("contact line without a contact")
	}
	body := render(t, 200, TokenPage{Common: common, State: "none", MailFrom: "otp-noreply@demo-shinkin.example"})
	if !strings.Contains(body, "送信元アドレス otp-noreply@demo-shinkin.example からのメール") {
		t.Errorf("sender address not named\n%s", body)
	}
}

// A text that speaks of the period or digits does so in both languages.
func TestCatalogueCodeWords(t *testing.T) {
	n := 0
	for id, m := range catalogue {
		for _, w := range []string{"{period}", "{digits}"} {
			if strings.Count(m.ja, w) != strings.Count(m.en, w) {
				t.Errorf("%s: %s in ja %d times, in en %d", id, w, strings.Count(m.ja, w), strings.Count(m.en, w))
			}
			n += strings.Count(m.ja, w)
		}
		if strings.Contains(m.ja+m.en, "60秒") || strings.Contains(m.ja+m.en, "60 seconds") {
			t.Errorf("%s: a fixed period", id)
		}
	}
	if n < 4 {
		t.Errorf("only %d code words in the catalogue", n)
	}
}

// The token page writes days as the confirm page and the mails do, and
// shows no expiry for a token that is no longer in use.
func TestTokenDates(t *testing.T) {
	body := render(t, 200, TokenPage{Common: common, State: "active", Expires: expires, DaysLeft: 3})
	if !strings.Contains(body, "<td>2026年4月1日（あと3日）</td>") {
		t.Errorf("active:\n%s", body)
	}
	body = render(t, 200, TokenPage{Common: common, State: "revoked", Expires: expires})
	if strings.Contains(body, T(Japanese, "expiry")) || strings.Contains(body, "2026年4月1日") {
		t.Errorf("revoked token shows its expiry:\n%s", body)
	}
}

func TestFileJSON(t *testing.T) {
	s := summaryOf(t, zengintest.Sogo())
	v := FileJSON(English, s, false)
	if v["type"] != "Bulk transfer" || v["count"] != 6 || v["total"] != int64(3672400) || v["sha256"] != s.SHA256 || v["doubtful"] != false {
		t.Errorf("sound file: %v", v)
	}
	if top := v["largest"].([]map[string]any); len(top) != 6 || top[0]["amount"] != int64(1500000) || top[0]["recipient"] != "ｶ)ﾔﾏﾀﾞｺｳｷﾞﾖｳ" {
		t.Errorf("largest: %v", top)
	}
	f := zengintest.Kyuyo()
	f.TrailerTotal = int64pages(1)
	v = FileJSON(Japanese, summaryOf(t, f), false)
	if v["doubtful"] != true || !strings.Contains(fmt.Sprint(v["problem_codes"]), "trailer_total") || v["doubt_message"] != T(Japanese, "file_doubt") {
		t.Errorf("doubtful file: %v", v)
	}
	if v := FileJSON(English, nil, true); v["unreadable"] != true {
		t.Errorf("unreadable: %v", v)
	}
	if FileJSON(English, nil, false) != nil {
		t.Error("a summary without a file")
	}
}
