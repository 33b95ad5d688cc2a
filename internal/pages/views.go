package pages

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/display"
)

// The views are what the templates see: every text already chosen, localised
// and formatted, every URL built, so the templates only lay things out.

// layout is the part of every view that the layout template uses.
type layout struct {
	Lang       Lang
	Title      string // localised
	Issuer     string
	Stylesheet string // URL of the stylesheet
	CSRF       string
	Class      string // class of <body>
	Contact    string // "お問い合わせ：…" at the foot, or ""

	period time.Duration // of the codes, for T
	digits int
}

// T is the catalogue text in the page's language, with the gateway's
// period and digits; templates call it as {{.T "id"}}.
func (l layout) T(id string, args ...any) string {
	return text(l.Lang, l.period, l.digits, id, args...)
}

type confirmView struct {
	layout
	Action, CancelAction string
	Kind                 string
	Doubt                string // notice: why the details are not shown as sent
	Revoke               string // notice: the token will be revoked
	Fields               []fieldView
	File                 *fileView
	Expires              string // "15:04", Japan time; "" when unknown
	Error                string
	NextCode             string // when the next code appears (after a spent one)
	Attempts             string // attempts left, when the error text does not say it
	Renew                string // renewal reminder or ""
	TokenPage            string
}

type tokenView struct {
	layout
	State       string // localised state
	Locked      bool
	MaskedEmail string
	Expires     string // yyyy-mm-dd, Japan time, and the days left
	Error, Info string
	Step        int    // current step of the 1-2-3 start (0: not starting)
	SentTo      string // "a setup mail was sent to …" (issued, initialised)
	RenewFrom   string // "renewal possible from …" (active, renewal not open)

	// The actions; an empty action is not shown.
	Issue, Reissue, Confirm, Renew, Revoke string
	RenewIntro                             string
	EmailHint                              string // names the sender address when known

	Notice string     // why the customer is here, or ""
	Links  []linkView // the way back to the bank
}

type setupView struct {
	layout
	Action  string
	Error   string
	Done    bool
	Secret  string       // grouped in fours
	URI     template.URL // the otpauth: link, see setupOf
	QR      template.URL // data:image/png;base64,…
	Account string
}

type linkView struct{ Href, Text string }

type messageView struct {
	layout
	Body  string
	Links []linkView
}

// jst is Japan time. Japan has no daylight saving time, so a fixed zone is
// exact and does not depend on the tz database being installed.
var jst = time.FixedZone("JST", 9*60*60)

// date writes the day of t in Japan as the confirm page and the mails do
// (package display): 2026年12月7日, 7 Dec 2026.
func date(lang Lang, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return display.FormatDate(t.In(jst).Format("20060102"), display.Lang(lang)).Text
}

func viewOf(p Page, status int) (name string, data any, err error) {
	switch v := p.(type) {
	case ConfirmPage:
		return "confirm", confirmOf(&v), nil
	case *ConfirmPage:
		if v != nil {
			return "confirm", confirmOf(v), nil
		}
	case TokenPage:
		return "token", tokenOf(&v), nil
	case *TokenPage:
		if v != nil {
			return "token", tokenOf(v), nil
		}
	case SetupPage:
		return "setup", setupOf(&v), nil
	case *SetupPage:
		if v != nil {
			return "setup", setupOf(v), nil
		}
	case FilePage:
		return "file", filePageOf(&v), nil
	case *FilePage:
		if v != nil {
			return "file", filePageOf(v), nil
		}
	case MessagePage:
		return "message", messageOf(&v, status), nil
	case *MessagePage:
		if v != nil {
			return "message", messageOf(v, status), nil
		}
	}
	return "", nil, errors.New("pages: no page to render")
}

func layoutOf(c *Common, title string) layout {
	lang := Japanese
	if c.Lang == English {
		lang = English
	}
	l := layout{
		Lang:       lang,
		Title:      T(lang, title),
		Issuer:     c.Issuer,
		Stylesheet: c.base() + "/assets/" + stylesheetName + "?v=" + stylesheetVersion,
		CSRF:       c.CSRF,
		Class:      "page",
		period:     c.Period,
		digits:     c.Digits,
	}
	if c.Contact != "" {
		l.Contact = T(lang, "contact", c.Contact)
	}
	return l
}

// base is Base without a trailing slash, so URLs built on it have one slash.
func (c *Common) base() string { return strings.TrimRight(c.Base, "/") }

func confirmOf(p *ConfirmPage) confirmView {
	v := confirmView{layout: layoutOf(&p.Common, "title_confirm")}
	lang := v.Lang
	base := p.base()
	v.Action = base + "/confirm/" + url.PathEscape(p.ChallengeID)
	v.CancelAction = v.Action + "/cancel"
	if p.Action != "" {
		v.Action = p.Action
	}
	v.TokenPage = base + "/token"
	v.Kind = kindTitle(lang, p)
	v.Doubt = DoubtText(lang, p.Doubt)
	if p.Revoke {
		v.Revoke = T(lang, "revoke_notice")
	}
	v.Fields = fieldsOf(lang, p.Fields, p.Banks)
	v.File = fileOf(lang, p.File, p.FileUnreadable, topTransfers, p.FileList)
	if !p.Expires.IsZero() {
		v.Expires = T(lang, "expires_at", p.Expires.In(jst).Format("15:04"))
	}
	if p.Error != "" {
		v.Error = v.T(p.Error, p.AttemptsLeft)
		if p.AttemptsLeft > 0 && verbs(catalogue[p.Error].ja) == 0 { // the error text does not say it
			v.Attempts = T(lang, "attempts_left", p.AttemptsLeft)
		}
	}
	if !p.NextCode.IsZero() {
		v.NextCode = T(lang, "next_code_at", p.NextCode.In(jst).Format("15:04:05"))
	}
	if p.RenewOpen && p.RenewDaysLeft > 0 {
		v.Renew = T(lang, "renew_soon", p.RenewDaysLeft)
	}
	return v
}

// DoubtText is the notice for a ConfirmPage.Doubt code in lang ("" for
// none), for the confirm page and its JSON view alike. A code the catalogue
// does not know still gets a notice: the details may not be exact.
func DoubtText(lang Lang, doubt string) string {
	if doubt == "" {
		return ""
	}
	id := "doubt_" + doubt
	if _, ok := catalogue[id]; !ok {
		id = "doubt_other"
	}
	return T(lang, id)
}

// kindName is the localised name of an operation kind; a kind the catalogue
// does not know is shown as a protected operation, followed by its name.
func kindName(lang Lang, kind string) string {
	if _, ok := catalogue["kind_"+kind]; ok && kind != "other" {
		return T(lang, "kind_"+kind)
	}
	if kind == "" {
		return T(lang, "kind_other")
	}
	return T(lang, "kind_other") + " (" + kind + ")"
}

func fieldLabel(lang Lang, f Field) string {
	first, second := f.Label, f.LabelEn
	if lang == English {
		first, second = second, first
	}
	switch {
	case first != "":
		return first
	case second != "":
		return second
	}
	return T(lang, "field")
}

// The states of a token, as TokenPage.State names them.
const (
	stateNone        = "none"
	stateIssued      = "issued"
	stateInitialised = "initialised"
	stateActive      = "active"
	stateExpired     = "expired"
	stateRevoked     = "revoked"
)

func tokenOf(p *TokenPage) tokenView {
	v := tokenView{layout: layoutOf(&p.Common, "title_token")}
	lang := v.Lang
	base := p.base()
	switch p.State {
	case stateNone, stateIssued, stateInitialised, stateActive, stateExpired, stateRevoked:
		v.State = T(lang, "state_"+p.State)
	default:
		v.State = T(lang, "state_unknown")
	}
	v.Locked = p.Locked
	if p.Locked {
		sep := "・"
		if lang == English {
			sep = ", "
		}
		v.State += sep + T(lang, "state_locked")
	}
	v.MaskedEmail = p.MaskedEmail
	if p.State == stateActive || p.State == stateExpired {
		// A revoked or replaced token's expiry is no one's concern.
		v.Expires = date(lang, p.Expires)
	}
	if v.Expires != "" && p.State == stateActive && p.DaysLeft > 0 {
		v.Expires += T(lang, "in_parentheses", T(lang, "days_left", p.DaysLeft))
	}
	v.Error = tokenMessage(v.layout, p, p.Error)
	v.Info = tokenMessage(v.layout, p, p.Info)
	switch p.Notice {
	case "enrol_not_executed", "renew_not_executed", "enrol_at_login":
		v.Notice = T(lang, p.Notice)
	}
	if p.Home != "" {
		text := "back_to_menu"
		if p.Notice == "enrol_at_login" {
			text = "continue_to_menu"
		}
		v.Links = []linkView{{Href: p.Home, Text: T(lang, text)}}
	}
	v.EmailHint = T(lang, "email_hint")
	if p.MailFrom != "" {
		v.EmailHint = T(lang, "email_hint_from", p.MailFrom)
	}

	// A locked token can do nothing: every action needs a right code (or,
	// for issuing, no token in use), and only the bank can unlock it.
	if p.Locked {
		return v
	}
	issue := base + "/token/issue"
	switch p.State {
	case stateNone, stateRevoked:
		v.Step = 1
		v.Issue = issue
	case stateIssued, stateInitialised:
		v.Step = 2
		if p.State == stateInitialised {
			v.Step = 3
		}
		if p.Info != "issue_sent" { // which says the same
			v.SentTo = T(lang, "sent_to", maskedOr(lang, p.MaskedEmail))
		}
		v.Confirm = base + "/token/confirm"
		v.Reissue = issue
	case stateActive:
		if p.RenewOpen {
			v.Renew = base + "/token/renew"
			v.RenewIntro = T(lang, "renew_intro")
		} else if !p.RenewFrom.IsZero() {
			v.RenewFrom = T(lang, "renew_from", date(lang, p.RenewFrom))
		}
		v.Revoke = base + "/token/revoke"
	case stateExpired:
		v.Renew = base + "/token/renew"
		v.RenewIntro = T(lang, "renew_expired_intro")
	}
	return v
}

// tokenMessage formats a message ID of the token page with the argument its
// text takes.
func tokenMessage(l layout, p *TokenPage, id string) string {
	lang := l.Lang
	switch id {
	case "":
		return ""
	case "invalid_otp":
		return T(lang, id, p.AttemptsLeft)
	case "issue_sent":
		return T(lang, id, maskedOr(lang, p.MaskedEmail))
	case "renewed":
		return T(lang, id, date(lang, p.Expires))
	case "renew_too_early":
		if p.RenewFrom.IsZero() {
			return T(lang, "renew_too_early_nodate")
		}
		return T(lang, id, date(lang, p.RenewFrom))
	}
	return l.T(id)
}

func maskedOr(lang Lang, masked string) string {
	if masked == "" {
		return T(lang, "your_mobile_address")
	}
	return masked
}

func setupOf(p *SetupPage) setupView {
	v := setupView{layout: layoutOf(&p.Common, "title_setup")}
	v.Action = p.base() + "/setup/" + url.PathEscape(p.Link)
	if p.Error != "" {
		v.Error = v.T(p.Error)
	}
	if p.Secret == "" {
		return v
	}
	v.Done = true
	v.Secret = group4(p.Secret)
	v.Account = p.Account
	// html/template lets only http, https and mailto through a URL attribute
	// and would turn the otpauth: link into "#ZgotmplZ". The link is the
	// whole point of the page (it opens the token app), and the gateway
	// builds it from the secret it generated, so it is trusted here — but
	// only with the otpauth scheme, so that a wrong value can never become,
	// say, a javascript: link.
	if u, err := url.Parse(p.URI); err == nil && strings.EqualFold(u.Scheme, "otpauth") {
		v.URI = template.URL(p.URI)
	}
	// The data: URI is built here from a constant prefix and base64, whose
	// alphabet cannot leave the attribute; html/template would reject data:.
	if len(p.QRPNG) > 0 {
		v.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(p.QRPNG))
	}
	return v
}

// group4 writes a base32 secret in groups of four for typing: "ABCD EFGH IJ".
func group4(secret string) string {
	s := strings.ToUpper(strings.Join(strings.Fields(secret), ""))
	s = strings.TrimRight(s, "=")
	var b strings.Builder
	for i, r := range []rune(s) {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func messageOf(p *MessagePage, status int) messageView {
	title := p.Title
	if title == "" {
		title = "title_notice"
	}
	v := messageView{layout: layoutOf(&p.Common, title)}
	if p.Status != 0 {
		status = p.Status
	}
	switch {
	case status >= 500:
		v.Class = "page status-error status-server"
	case status >= 400:
		v.Class = "page status-error"
	default:
		v.Class = "page status-ok"
	}
	if p.Body != "" {
		v.Body = v.T(p.Body, p.Args...)
	}
	for _, l := range p.Links {
		v.Links = append(v.Links, linkView{Href: l.Href, Text: T(v.Lang, l.Text)})
	}
	return v
}
