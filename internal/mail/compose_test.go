package mail

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	jst  = time.FixedZone("JST", 9*60*60)
	at   = time.Date(2026, 4, 1, 10, 30, 0, 0, jst)
	exp  = time.Date(2027, 4, 1, 23, 59, 0, 0, jst)
	link = "https://bank.example.jp/.otpgate/setup/k3J9xQ2vTz8mNpL4wRy7Ab"
)

func fullData() Data {
	return Data{
		ServiceID:   "SVC0012345",
		UserID:      "yamada-taro",
		Issuer:      "デモ信用金庫",
		Link:        link,
		LinkExpires: at.Add(24 * time.Hour),
		Expires:     exp,
		At:          at,
	}
}

// The notice every mail ends with: where codes are asked for, that the bank
// never asks at login or by mail or phone, and whom to call.
var noticeParts = []string{
	"ログイン時や、メール・電話などでワンタイムパスワードをお尋ねすることは一切ありません",
	"都度指定方式による振替・振込", "各種料金の払込", "総合振込、給与・賞与振込",
	"ワンタイムパスワードトークン管理", "利用者登録情報変更",
	"お心当たりがない場合は、至急デモ信用金庫までご連絡ください",
	"never asks for a one-time password at login, by e-mail or by phone",
	"transfers, bill payments, bulk and payroll transfers, token management and changes to user registration",
}

const noticeEnd = "If you did not do this, contact デモ信用金庫 immediately.\n"

func TestCompose(t *testing.T) {
	tests := []struct {
		event   Event
		subject string
		want    []string // in the body, in this order
	}{
		{EventSetup, "【ワンタイムパスワード】トークン発行のご案内 / OTP token setup", []string{
			"スマートフォンで開いてください", link, "このURLの有効期限は2026年4月2日 10:30（日本時間）です。一度だけ",
			"サービスID、利用者ID、およびトークン発行時にお客さまご自身で設定された利用開始パスワード",
			"ブラウザ）に戻り", "Open the link above on your phone",
			"service ID, user ID and the activation PIN", "return to Internet Banking in your browser and enter the first code",
			"The link works once, until 2 Apr 2026 10:30 (Japan time)."}},
		{EventIssued, "【ワンタイムパスワード】トークン発行のお知らせ / New OTP token issued", []string{
			"2026年4月1日 10:30（日本時間）に、下記の利用者IDで", "新しいトークンの発行を受け付けました", "このメールアドレスではなく",
			"ログインパスワードが第三者に知られているおそれ", "至急デモ信用金庫までご連絡ください",
			"On 1 Apr 2026 10:30 (Japan time), a new one-time password token was issued for the user ID below", "not to this one",
			"someone may know your login password: contact デモ信用金庫 immediately"}},
		{EventActivated, "【ワンタイムパスワード】利用開始のお知らせ / OTP token activated", []string{
			"2026年4月1日 10:30（日本時間）に", "有効期限は2027年4月1日です", "activated on 1 Apr 2026 10:30 (Japan time). It expires on 1 Apr 2027."}},
		{EventRenewed, "【ワンタイムパスワード】トークン更新のお知らせ / OTP token renewed", []string{
			"トークンを更新しました", "新しい有効期限は2027年4月1日です", "now expires on 1 Apr 2027."}},
		{EventRevoked, "【ワンタイムパスワード】トークン失効のお知らせ / OTP token revoked", []string{
			"トークンを失効しました", "revoked on 1 Apr 2026 10:30 (Japan time)"}},
		{EventReset, "【ワンタイムパスワード】トークン初期化のお知らせ / OTP token reset by the bank", []string{
			"デモ信用金庫にてワンタイムパスワードのトークンを初期化", "デモ信用金庫 reset your one-time password token"}},
		{EventLocked, "【ワンタイムパスワード】ロックのお知らせ / OTP locked", []string{
			"入力誤りが所定の回数に達した", "ロックしました", "locked on 1 Apr 2026 10:30 (Japan time) after too many wrong codes"}},
		{EventUnlocked, "【ワンタイムパスワード】ロック解除のお知らせ / OTP unlocked", []string{
			"ロックを解除しました", "unlocked on 1 Apr 2026 10:30 (Japan time)"}},
		{EventRenewReminder, "【ワンタイムパスワード】トークン有効期限のお知らせ（更新のお願い） / OTP token renewal", []string{
			"有効期限は2027年4月1日です", "更新のお手続き", "expires on 1 Apr 2027."}},
	}
	seen := map[Event]bool{}
	for _, tt := range tests {
		t.Run(string(tt.event), func(t *testing.T) {
			seen[tt.event] = true
			m, err := Compose(tt.event, testTo, fullData())
			if err != nil {
				t.Fatalf("Compose: %v", err)
			}
			if m.To != testTo {
				t.Errorf("To = %q", m.To)
			}
			if m.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.subject)
			}
			body := m.Text
			if !strings.HasPrefix(body, "いつもデモ信用金庫のインターネットバンキングをご利用いただき") {
				t.Errorf("body does not open with the issuer:\n%s", body)
			}
			if !strings.Contains(body, "サービスID（Service ID）：****45") || !strings.Contains(body, "利用者ID（User ID）：****ro") {
				t.Errorf("masked IDs missing:\n%s", body)
			}
			// Japanese first, then English, then the notice.
			ja, en := strings.Index(body, "。\n"), strings.Index(body, "----- English -----")
			notice := strings.Index(body, "■ワンタイムパスワードに関するご注意")
			if ja < 0 || en < ja || notice < en {
				t.Errorf("sections out of order (ja %d, en %d, notice %d):\n%s", ja, en, notice, body)
			}
			rest := body
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("body lacks %q (or it is out of order):\n%s", w, body)
					continue
				}
				rest = rest[i+len(w):]
			}
			for _, w := range noticeParts {
				if !strings.Contains(body[notice:], w) {
					t.Errorf("notice lacks %q", w)
				}
			}
			if !strings.HasSuffix(body, noticeEnd) {
				t.Errorf("body does not end with the notice:\n%s", body)
			}
			assertNoSecrets(t, tt.event, body)
		})
	}
	for e := range templates {
		if !seen[e] {
			t.Errorf("event %q is not tested", e)
		}
	}
}

// assertNoSecrets checks that a body carries nothing that grants access: the
// full login IDs, anything code- or PIN-like, or (except in the setup mail)
// the link.
func assertNoSecrets(t *testing.T, e Event, body string) {
	t.Helper()
	d := fullData()
	for _, s := range []string{d.ServiceID, d.UserID} {
		if strings.Contains(body, s) {
			t.Errorf("body contains the full ID %q", s)
		}
	}
	want := 0
	if e == EventSetup {
		want = 1
	}
	if n := strings.Count(body, link); n != want {
		t.Errorf("link appears %d times, want %d", n, want)
	}
	if e != EventSetup && strings.Contains(body, "/.otpgate/setup/") {
		t.Error("a setup link in a mail other than setup")
	}
	// Outside the link and the dates, no run of 4 or more digits (a PIN is
	// 4–8 digits, a code 6); years are the only such run in the dates.
	rest := strings.ReplaceAll(body, link, "")
	rest = regexp.MustCompile(`20\d\d年| 20\d\d\b`).ReplaceAllString(rest, "")
	if run := regexp.MustCompile(`\d{4,}`).FindString(rest); run != "" {
		t.Errorf("body contains a code-like number %q", run)
	}
	for _, w := range []string{"otpauth:", "secret=", "シークレット"} {
		if strings.Contains(body, w) {
			t.Errorf("body contains %q", w)
		}
	}
}

func TestComposeErrors(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		to    string
		edit  func(*Data)
	}{
		{"unknown event", "password_changed", testTo, nil},
		{"empty event", "", testTo, nil},
		{"no recipient", EventLocked, "", nil},
		{"bad recipient", EventLocked, "not-an-address", nil},
		{"setup without link", EventSetup, testTo, func(d *Data) { d.Link = "" }},
		{"setup without link expiry", EventSetup, testTo, func(d *Data) { d.LinkExpires = time.Time{} }},
		{"setup with relative link", EventSetup, testTo, func(d *Data) { d.Link = "/.otpgate/setup/abc" }},
		{"setup with javascript link", EventSetup, testTo, func(d *Data) { d.Link = "javascript:alert(1)" }},
		{"setup with spaced link", EventSetup, testTo, func(d *Data) { d.Link = link + " x" }},
		{"activated without expiry", EventActivated, testTo, func(d *Data) { d.Expires = time.Time{} }},
		{"renewed without expiry", EventRenewed, testTo, func(d *Data) { d.Expires = time.Time{} }},
		{"reminder without expiry", EventRenewReminder, testTo, func(d *Data) { d.Expires = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := fullData()
			if tt.edit != nil {
				tt.edit(&d)
			}
			if m, err := Compose(tt.event, tt.to, d); err == nil {
				t.Fatalf("Compose succeeded: %+v", m)
			}
		})
	}
}

func TestComposeDefaults(t *testing.T) {
	// Only what the event needs: no issuer, no IDs, no location, no time.
	fixed := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	now = func() time.Time { return fixed }
	t.Cleanup(func() { now = time.Now })

	m, err := Compose(EventLocked, testTo, Data{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"いつもインターネットバンキングをご利用いただき",
		"2026年1月2日 12:04（日本時間）に", // now, in Asia/Tokyo
		"至急当金庫までご連絡ください",
		"contact the bank immediately.",
	} {
		if !strings.Contains(m.Text, w) {
			t.Errorf("body lacks %q:\n%s", w, m.Text)
		}
	}
	if strings.Contains(m.Text, "サービスID（") || strings.Contains(m.Text, "利用者ID（") {
		t.Errorf("ID lines without IDs:\n%s", m.Text)
	}

	// Another zone is named, not passed off as Japan time.
	d := fullData()
	d.Location = time.UTC
	m, err = Compose(EventActivated, testTo, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, "2026年4月1日 01:30（UTC）に") || !strings.Contains(m.Text, "1 Apr 2026 01:30 (UTC)") {
		t.Errorf("time not in UTC:\n%s", m.Text)
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"": "****", "a": "****", "ab": "****", "abc": "****bc", "yamada-taro": "****ro", "山田太郎": "****太郎",
	} {
		if got := mask(in); got != want {
			t.Errorf("mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestComposeThroughDir sends every composed mail through Dir and reads it
// back the way a mail client would: what the customer sees is what Compose
// wrote.
func TestComposeThroughDir(t *testing.T) {
	path := t.TempDir()
	d := &Dir{Path: path, From: testFrom}
	for e := range templates {
		m, err := Compose(e, testTo, fullData())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			t.Fatal(err)
		}
		var raw []byte
		for _, en := range entries {
			p := filepath.Join(path, en.Name())
			raw, err = os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
		}
		_, subject, body := parse(t, raw)
		if subject != m.Subject || body != m.Text {
			t.Errorf("%s: round trip changed the mail:\nsubject %q\nbody %q", e, subject, body)
		}
	}
}

// Every mail gives the bank's contact line where it asks the customer to
// contact the bank, in both languages, when one is configured.
func TestComposeContact(t *testing.T) {
	for e := range templates {
		d := fullData()
		d.Contact = "0120-000-000（平日9:00～17:00）"
		m, err := Compose(e, testTo, d)
		if err != nil {
			t.Fatal(err)
		}
		ja := strings.Index(m.Text, "お問い合わせ先：0120-000-000（平日9:00～17:00）\n")
		en := strings.Index(m.Text, "Contact: 0120-000-000（平日9:00～17:00）\n")
		if ja < 0 || en < ja || ja < strings.Index(m.Text, "至急デモ信用金庫までご連絡ください") {
			t.Errorf("%s: no contact line after the request to contact the bank:\n%s", e, m.Text)
		}
		if m, _ := Compose(e, testTo, fullData()); strings.Contains(m.Text, "お問い合わせ先") || strings.Contains(m.Text, "Contact:") {
			t.Errorf("%s: a contact line without a contact", e)
		}
	}
}

// Times are written as the pages write dates, with the hour and the zone:
// Japan time by name, any other by its offset.
func TestComposeTimes(t *testing.T) {
	d := fullData()
	d.Location = time.FixedZone("CET", 60*60)
	m, err := Compose(EventRevoked, testTo, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"2026年4月1日 02:30（UTC+01:00）に", "revoked on 1 Apr 2026 02:30 (UTC+01:00)"} {
		if !strings.Contains(m.Text, w) {
			t.Errorf("lacks %q:\n%s", w, m.Text)
		}
	}
	if strings.Contains(m.Text, "Apr 1,") || strings.Contains(m.Text, "(JST)") {
		t.Errorf("an old date format:\n%s", m.Text)
	}
}
