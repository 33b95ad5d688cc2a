package mail

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/otpgate/otpgate/internal/display"
)

// Event is a kind of mail the gateway sends.
type Event string

// The events that mail the customer. Every change to a token is notified, so a
// customer learns at once of a change they did not make.
const (
	// EventSetup carries the setup link for the phone (STEP 1 of the start of
	// use). Needs Data.Link and Data.LinkExpires.
	EventSetup Event = "setup"
	// EventIssued goes to the address registered before a new issue whose
	// setup mail went to another address: a customer whose password was
	// stolen learns that someone is enrolling a phone in their name.
	EventIssued Event = "issued"
	// EventActivated: the first right code was entered; the token is in use.
	// Needs Data.Expires.
	EventActivated Event = "activated"
	// EventRenewed: the token was renewed. Needs Data.Expires (the new expiry).
	EventRenewed Event = "renewed"
	// EventRevoked: the customer revoked the token (before changing phones).
	EventRevoked Event = "revoked"
	// EventReset: the bank reset the token (lost phone, paper procedure).
	EventReset Event = "reset"
	// EventLocked: too many wrong codes; operations are blocked.
	EventLocked Event = "locked"
	// EventUnlocked: the lock was lifted.
	EventUnlocked Event = "unlocked"
	// EventRenewReminder: the renewal window opened. Needs Data.Expires.
	EventRenewReminder Event = "renew_reminder"
)

// Data fills a message. Fields unused by an event are ignored.
type Data struct {
	// ServiceID and UserID identify the customer. Mails show them masked
	// except for their last two characters: enough for a customer with
	// several users to tell which one is meant, while a mail, which is not a
	// confidential channel, does not carry half of a login.
	ServiceID, UserID string
	// Issuer is the bank's name as customers know it, e.g. "Demo Shinkin
	// Bank" or "デモ信用金庫"; it signs the mail. Default: "当金庫" / "the bank".
	Issuer string
	// Link is the absolute setup URL (EventSetup).
	Link string
	// LinkExpires is when the setup link stops working (EventSetup).
	LinkExpires time.Time
	// Expires is the token's expiry (activated, renewed, renew_reminder).
	Expires time.Time
	// At is when the event happened. Default: now.
	At time.Time
	// Location is the time zone times are written in. Default: Asia/Tokyo.
	Location *time.Location
	// Contact is how to reach the bank (a phone number and its hours),
	// given wherever a mail asks the customer to contact the bank.
	// Default: none, and the mail names only the bank.
	Contact string
}

// tokyo is loaded once. Japan has kept +09:00 without daylight saving since
// 1951, so a fixed zone is an exact stand-in where tzdata is missing.
var tokyo = sync.OnceValue(func() *time.Location {
	if loc, err := time.LoadLocation("Asia/Tokyo"); err == nil {
		return loc
	}
	return time.FixedZone("JST", 9*60*60)
})

// now is the clock; tests replace it.
var now = time.Now

// Compose returns the message for an event: a Japanese subject and body, then
// an English section, then the notice every mail ends with (the bank never
// asks for a one-time password at login or by mail or phone; the five
// operations that do ask; "if this was not you, contact the bank").
//
// The setup mail carries the link and nothing else that grants access: never a
// PIN, a TOTP secret or a code. Compose fails for an unknown event, an invalid
// recipient, or when a field the event needs is missing.
func Compose(e Event, to string, d Data) (Message, error) {
	if _, err := parseRecipient(to); err != nil {
		return Message{}, fmt.Errorf("composing %q mail: %w", e, err)
	}
	t, ok := templates[e]
	if !ok {
		return Message{}, fmt.Errorf("composing mail: unknown event %q", e)
	}
	c := newComposer(d)
	if err := t.check(d); err != nil {
		return Message{}, fmt.Errorf("composing %q mail: %w", e, err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", c.greeting())
	b.WriteString(t.ja(c))
	if ids := c.ids(); ids != "" {
		fmt.Fprintf(&b, "\n%s\n", ids)
	}
	fmt.Fprintf(&b, "\n----- English -----\n%s", t.en(c))
	fmt.Fprintf(&b, "\n%s", c.notice())
	return Message{
		To:      to,
		Subject: "【ワンタイムパスワード】" + t.subjectJA + " / " + t.subjectEN,
		Text:    b.String(),
	}, nil
}

// template is the wording of one event. ja and en return whole lines, each
// ending in "\n".
type template struct {
	subjectJA, subjectEN string
	check                func(Data) error
	ja, en               func(c composer) string
}

func needNothing(Data) error { return nil }

func needExpires(d Data) error {
	if d.Expires.IsZero() {
		return errors.New("token expiry (Data.Expires) is missing")
	}
	return nil
}

func needLink(d Data) error {
	if d.Link == "" {
		return errors.New("setup link (Data.Link) is missing")
	}
	if d.LinkExpires.IsZero() {
		return errors.New("setup link expiry (Data.LinkExpires) is missing")
	}
	// The link sits alone on its line so mobile clients make it clickable;
	// whitespace would cut it, a relative URL would lead nowhere.
	if strings.ContainsAny(d.Link, " \t\r\n") {
		return errors.New("setup link contains whitespace")
	}
	u, err := url.Parse(d.Link)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("setup link is not an absolute http(s) URL")
	}
	return nil
}

var templates = map[Event]template{
	EventSetup: {
		subjectJA: "トークン発行のご案内",
		subjectEN: "OTP token setup",
		check:     needLink,
		ja: func(c composer) string {
			return "ワンタイムパスワードのトークン発行を受け付けました。\n" +
				"次の手順で利用開始のお手続きをお願いいたします。\n" +
				"\n" +
				"1. このURLを、トークンとしてお使いになるスマートフォンで開いてください。\n" +
				c.d.Link + "\n" +
				"このURLの有効期限は" + c.ja(c.d.LinkExpires) + "です。一度だけご利用いただけます。\n" +
				"\n" +
				"2. 表示された画面で、サービスID、利用者ID、およびトークン発行時にお客さまご自身で設定された利用開始パスワードを入力してください。\n" +
				"\n" +
				"3. トークンの初期設定が終わりましたら、インターネットバンキングの画面（ブラウザ）に戻り、トークンに表示されたワンタイムパスワードを入力して、利用開始のお手続きを完了してください。\n" +
				"\n" +
				"有効期限を過ぎた場合は、お手数ですが、もう一度トークン発行からお手続きください。\n"
		},
		en: func(c composer) string {
			return "Your one-time password token is ready to set up. Open the link above on your phone, enter your service ID, user ID and the activation PIN you chose, then return to Internet Banking in your browser and enter the first code shown by the token.\n" +
				"The link works once, until " + c.en(c.d.LinkExpires) + ".\n"
		},
	},
	EventIssued: {
		subjectJA: "トークン発行のお知らせ",
		subjectEN: "New OTP token issued",
		check:     needNothing,
		ja: func(c composer) string {
			return c.ja(c.at()) + "に、下記の利用者IDで、ワンタイムパスワードの新しいトークンの発行を受け付けました。\n" +
				"初期設定用のメールは、このメールアドレスではなく、発行時に指定されたメールアドレスに送信しています。\n" +
				"お手続き中だったトークンの発行がある場合、そのリンクや設定は無効になりました。\n" +
				"お客さまご自身のお手続きでない場合は、ログインパスワードが第三者に知られているおそれがあります。至急" + c.issuerJA() + "までご連絡ください。\n"
		},
		en: func(c composer) string {
			return "On " + c.en(c.at()) + ", a new one-time password token was issued for the user ID below. Its setup mail was sent to the address given when it was issued, not to this one. Any token setup that was still in progress no longer works.\n" +
				"If you did not do this, someone may know your login password: contact " + c.issuerEN() + " immediately.\n"
		},
	},
	EventActivated: {
		subjectJA: "利用開始のお知らせ",
		subjectEN: "OTP token activated",
		check:     needExpires,
		ja: func(c composer) string {
			return c.ja(c.at()) + "に、ワンタイムパスワードの利用を開始しました。\n" +
				"トークンの有効期限は" + c.jaDate(c.d.Expires) + "です。\n" +
				"今後、振込・払込などのお取引には、トークンに表示されるワンタイムパスワードの入力が必要です。\n"
		},
		en: func(c composer) string {
			return "Your one-time password token was activated on " + c.en(c.at()) + ". It expires on " + c.enDate(c.d.Expires) + ".\n"
		},
	},
	EventRenewed: {
		subjectJA: "トークン更新のお知らせ",
		subjectEN: "OTP token renewed",
		check:     needExpires,
		ja: func(c composer) string {
			return c.ja(c.at()) + "に、ワンタイムパスワードのトークンを更新しました。\n" +
				"新しい有効期限は" + c.jaDate(c.d.Expires) + "です。\n"
		},
		en: func(c composer) string {
			return "Your one-time password token was renewed on " + c.en(c.at()) + ". It now expires on " + c.enDate(c.d.Expires) + ".\n"
		},
	},
	EventRevoked: {
		subjectJA: "トークン失効のお知らせ",
		subjectEN: "OTP token revoked",
		check:     needNothing,
		ja: func(c composer) string {
			return c.ja(c.at()) + "に、お客さまのお手続きにより、ワンタイムパスワードのトークンを失効しました。\n" +
				"このトークンは今後ご利用いただけません。新しいスマートフォンなどでご利用になる場合は、ログイン後、トークン発行のお手続きをしてください。\n"
		},
		en: func(c composer) string {
			return "Your one-time password token was revoked on " + c.en(c.at()) + " and can no longer be used. To use a new phone, log in and issue a new token.\n"
		},
	},
	EventReset: {
		subjectJA: "トークン初期化のお知らせ",
		subjectEN: "OTP token reset by the bank",
		check:     needNothing,
		ja: func(c composer) string {
			return c.ja(c.at()) + "に、お届けに基づき、" + c.issuerJA() + "にてワンタイムパスワードのトークンを初期化（失効）しました。\n" +
				"これまでのトークンは今後ご利用いただけません。ログイン後、トークン発行のお手続きをしてください。\n"
		},
		en: func(c composer) string {
			return "At your request, " + c.issuerEN() + " reset your one-time password token on " + c.en(c.at()) + ". The old token no longer works; log in and issue a new one.\n"
		},
	},
	EventLocked: {
		subjectJA: "ロックのお知らせ",
		subjectEN: "OTP locked",
		check:     needNothing,
		ja: func(c composer) string {
			return "ワンタイムパスワードの入力誤りが所定の回数に達したため、" + c.ja(c.at()) + "に、ワンタイムパスワードをロックしました。\n" +
				"ロック中は、ワンタイムパスワードが必要なお取引・お手続きをご利用いただけません。\n" +
				"ロックの解除については、" + c.issuerJA() + "までお問い合わせください。\n"
		},
		en: func(c composer) string {
			return "Your one-time password was locked on " + c.en(c.at()) + " after too many wrong codes. Transfers and other operations that need a code are blocked; contact " + c.issuerEN() + " to unlock it.\n"
		},
	},
	EventUnlocked: {
		subjectJA: "ロック解除のお知らせ",
		subjectEN: "OTP unlocked",
		check:     needNothing,
		ja: func(c composer) string {
			return c.ja(c.at()) + "に、ワンタイムパスワードのロックを解除しました。\n" +
				"ワンタイムパスワードが必要なお取引・お手続きを、再びご利用いただけます。\n"
		},
		en: func(c composer) string {
			return "Your one-time password was unlocked on " + c.en(c.at()) + ". Operations that need a code are available again.\n"
		},
	},
	EventRenewReminder: {
		subjectJA: "トークン有効期限のお知らせ（更新のお願い）",
		subjectEN: "OTP token renewal",
		check:     needExpires,
		ja: func(c composer) string {
			return "ワンタイムパスワードのトークンの有効期限は" + c.jaDate(c.d.Expires) + "です。\n" +
				"トークンの更新ができるようになりました。ログイン後、トークン管理の画面から更新のお手続きをしてください。\n" +
				"有効期限を過ぎても更新はできますが、更新されるまでは、ワンタイムパスワードが必要なお取引・お手続きをご利用いただけません。\n"
		},
		en: func(c composer) string {
			return "Your one-time password token expires on " + c.enDate(c.d.Expires) + ". It can be renewed now: log in and renew it under token management. It can still be renewed after it expires, but until then operations that need a code are blocked.\n"
		},
	},
}

// composer formats the parts every mail shares.
type composer struct {
	d   Data
	loc *time.Location
}

func newComposer(d Data) composer {
	loc := d.Location
	if loc == nil {
		loc = tokyo()
	}
	return composer{d: d, loc: loc}
}

func (c composer) at() time.Time {
	if c.d.At.IsZero() {
		return now()
	}
	return c.d.At
}

// ja and en write a time as the pages do (package display: 2026年12月7日,
// 7 Dec 2026) with the hour and its zone, since the customer may not be in
// the zone the bank assumes: 2026年12月7日 15:04（日本時間）, 7 Dec 2026
// 15:04 (Japan time). jaDate and enDate write the day alone, for a
// token's expiry, which the pages show as a day.
func (c composer) ja(t time.Time) string {
	return c.jaDate(t) + " " + t.In(c.loc).Format("15:04") + "（" + c.zone(t, "日本時間") + "）"
}

func (c composer) en(t time.Time) string {
	return c.enDate(t) + " " + t.In(c.loc).Format("15:04") + " (" + c.zone(t, "Japan time") + ")"
}

func (c composer) jaDate(t time.Time) string {
	return display.FormatDate(t.In(c.loc).Format("20060102"), display.Japanese).Text
}

func (c composer) enDate(t time.Time) string {
	return display.FormatDate(t.In(c.loc).Format("20060102"), display.English).Text
}

// zone names the zone t is written in: Japan time by name, any other by
// its offset from UTC, which a customer abroad can work with.
func (c composer) zone(t time.Time, japan string) string {
	_, off := t.In(c.loc).Zone()
	switch {
	case off == 9*60*60:
		return japan
	case off == 0:
		return "UTC"
	}
	return t.In(c.loc).Format("UTC-07:00")
}

func (c composer) issuerJA() string {
	if c.d.Issuer == "" {
		return "当金庫"
	}
	return c.d.Issuer
}

func (c composer) issuerEN() string {
	if c.d.Issuer == "" {
		return "the bank"
	}
	return c.d.Issuer
}

func (c composer) greeting() string {
	if c.d.Issuer == "" {
		return "いつもインターネットバンキングをご利用いただき、誠にありがとうございます。"
	}
	return "いつも" + c.d.Issuer + "のインターネットバンキングをご利用いただき、誠にありがとうございます。"
}

// ids names the user the mail is about, masked (see Data).
func (c composer) ids() string {
	var parts []string
	if c.d.ServiceID != "" {
		parts = append(parts, "サービスID（Service ID）："+mask(c.d.ServiceID))
	}
	if c.d.UserID != "" {
		parts = append(parts, "利用者ID（User ID）："+mask(c.d.UserID))
	}
	return strings.Join(parts, "\n")
}

// mask keeps the last two characters behind a fixed run of stars, so the
// mail tells neither the ID nor its length; IDs of two characters or fewer
// are not shown at all.
func mask(s string) string {
	r := []rune(s)
	if len(r) <= 2 {
		return "****"
	}
	return "****" + string(r[len(r)-2:])
}

// notice is the anti-phishing warning every mail ends with. A customer who
// learns where codes are asked for recognises a fake page that asks at login.
func (c composer) notice() string {
	ja, en := c.issuerJA(), c.issuerEN()
	return "――――――――――――――――――――\n" +
		"■ワンタイムパスワードに関するご注意\n" +
		ja + "が、ログイン時や、メール・電話などでワンタイムパスワードをお尋ねすることは一切ありません。\n" +
		"ワンタイムパスワードの入力をお願いするのは、次のお取引・お手続きのときだけです。\n" +
		"・都度指定方式による振替・振込\n" +
		"・各種料金の払込\n" +
		"・総合振込、給与・賞与振込\n" +
		"・ワンタイムパスワードトークン管理\n" +
		"・利用者登録情報変更\n" +
		"これ以外の画面で入力を求められた場合は、不正なサイトのおそれがあります。入力せずに" + ja + "までご連絡ください。\n" +
		"このメールの内容にお心当たりがない場合は、至急" + ja + "までご連絡ください。\n" +
		c.contact("お問い合わせ先：") +
		"\n" +
		en + " never asks for a one-time password at login, by e-mail or by phone. A code is asked for only for transfers, bill payments, bulk and payroll transfers, token management and changes to user registration; a page asking for one anywhere else is fake.\n" +
		"If you did not do this, contact " + en + " immediately.\n" +
		c.contact("Contact: ")
}

// contact is the bank's contact line, or nothing when none is configured.
func (c composer) contact(label string) string {
	if c.d.Contact == "" {
		return ""
	}
	return label + c.d.Contact + "\n"
}
