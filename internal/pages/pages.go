// Package pages renders otpgate's gateway pages: the confirm page of a paused
// operation, the token management page, the setup page opened on the phone and
// a generic message page, in Japanese or English.
//
// The pages are plain HTML built with html/template: no scripts and no inline
// styles, only the embedded stylesheet served by Assets and data: images, so
// they work under CSP. Every page shows the phishing notice (in the page
// language): a one-time password is asked for only on the five protected
// operations, never at login.
//
// Catalogue texts are plain text and are escaped like any other value; the
// only values given to the templates as trusted URLs are the otpauth: link and
// the data: URI of the QR code on the setup page (see setupOf in views.go).
package pages

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/zengin"
)

// Lang is a page language.
type Lang string

// The page languages. Japanese is the default.
const (
	Japanese Lang = "ja"
	English  Lang = "en"
)

// CSP is the Content-Security-Policy the gateway sends with these pages. The
// pages need nothing more: the stylesheet from Assets, data: images (the QR
// code) and forms posting to the gateway itself.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Negotiate picks the page language from an Accept-Language header: Japanese
// unless English is preferred over Japanese. Quality values are honoured, a
// language range matches its subtags ("en" and "en-US" are English), "*"
// stands for a language the header does not name, and a tie goes to Japanese:
//
//	"en-US,en;q=0.9" → en; "ja,en;q=0.5" → ja; "" → ja; "fr" → ja; "fr,*;q=0.1" → ja.
func Negotiate(acceptLanguage string) Lang {
	var ja, en, star float64
	var jaSeen, enSeen, starSeen bool
	for _, part := range strings.Split(acceptLanguage, ",") {
		tag, params, _ := strings.Cut(part, ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		q, ok := quality(params)
		if !ok {
			continue
		}
		primary, _, _ := strings.Cut(tag, "-")
		switch primary {
		case "ja":
			ja, jaSeen = max(ja, q), true
		case "en":
			en, enSeen = max(en, q), true
		case "*":
			star, starSeen = max(star, q), true
		}
	}
	if starSeen {
		if !jaSeen {
			ja = star
		}
		if !enSeen {
			en = star
		}
	}
	if en > ja {
		return English
	}
	return Japanese
}

// quality reads the q parameter of one Accept-Language element (1 when
// absent); ok is false when it is malformed, and the element is then ignored.
func quality(params string) (q float64, ok bool) {
	q = 1
	for p := range strings.SplitSeq(params, ";") {
		name, value, found := strings.Cut(strings.TrimSpace(p), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || v < 0 || v > 1 {
			return 0, false
		}
		q = v
	}
	return q, true
}

// Common is on every page.
type Common struct {
	Lang   Lang   // page language; anything but English is Japanese
	Base   string // gateway base path, e.g. "/.otpgate" (form actions and asset URL are built from it)
	CSRF   string // CSRF token put in a hidden field named "csrf" in every form ("" = no field)
	Issuer string // the bank's name shown in the header, e.g. "デモ信用金庫"
	// Contact is how to reach the bank, shown at the foot of every page
	// ("0120-000-000（平日9:00～17:00）"); "" shows none.
	Contact string
	// Period and Digits are those of the codes (the gateway's period and
	// digits), so that texts such as "changes every 60 seconds" say what
	// the token app shows. Zero: 60 seconds and 6 digits.
	Period time.Duration
	Digits int
}

// Field is one item the customer confirms (amount, payee…). The label shown
// is Label on Japanese pages and LabelEn on English ones, falling back to the
// other, then to the catalogue's "field".
type Field struct {
	Label, LabelEn, Value string
	// Format is how Value is shown (policy.Field.Format, see package
	// internal/display): "yen", "account", "date", "code", "bank",
	// "branch", or "" as it is. A value that does not read exactly one way
	// in its format is shown as received, with a note saying why; a value
	// the policy escaped (Doubt "escaped_characters") therefore stays
	// escaped. A branch is named within the bank of the nearest "bank"
	// field before it.
	Format string
}

// ConfirmPage shows a paused operation and asks for the code that releases it.
type ConfirmPage struct {
	Common
	ChallengeID string
	Kind        string  // transfer | bill_payment | bulk_transfer | token_management | user_change
	Fields      []Field // what the customer confirms: read from the stored request
	// Method and Path are not shown: "POST /transfer/execute" means
	// nothing to a customer and reads like an error. The JSON view and the
	// audit trail keep them. Deprecated: the gateway stops setting them.
	Method, Path string
	// Title and TitleEn name the operation in the bank's own wording
	// (policy.Rule.Title); empty: the name of Kind.
	Title, TitleEn string
	// Revoke says the operation revokes the customer's own token (the
	// gateway's token_management rule): the page says so in words.
	Revoke bool
	// Banks names the codes of fields of format "bank" and "branch"; nil
	// names none, and such codes are shown as sent, with a note.
	Banks *display.BankTable
	// File summarises the transfer file held with the operation
	// (policy.SummariseFile), nil when the rule shows no file.
	// FileUnreadable says the rule shows a file but none could be read
	// from the held request. Either problem is shown prominently.
	File           *zengin.Summary
	FileUnreadable bool
	// FileList, if set, is the URL of the page listing every transfer of
	// File (a FilePage); the confirm page shows the largest ten.
	FileList      string
	Expires       time.Time // end of the challenge's life; zero: not shown
	AttemptsLeft  int       // shown when Error is set: in "invalid_otp" ("残り%d回"), after any other error when > 0
	Error         string    // message ID or ""
	RenewDaysLeft int       // >0 and RenewOpen: "your token expires in N days", link to the token page
	RenewOpen     bool
	// NextCode, if set, is when the token app shows its next code: the
	// page says so after a code of a spent time step (otp_reused).
	NextCode time.Time
	// Action, if set, is where the code is posted instead of
	// Base+"/confirm/"+ChallengeID: the gateway passes the operation's own
	// path, so the bank's answer lands where its relative links resolve.
	Action string
	// Doubt, if set, is why Fields are not the request's values as sent
	// (challenge.Operation.Doubt): "conflicting_values" (no fields: the
	// details cannot be shown) or "escaped_characters" (values shown with
	// \uXXXX escapes). The page says so in a notice above the details.
	Doubt string
}

// TokenPage shows the user's token and the actions that apply to its state.
type TokenPage struct {
	Common
	State       string    // none | issued | initialised | active | expired | revoked
	Locked      bool      // too many wrong codes: no actions, contact the bank
	MaskedEmail string    // e.g. "ta***@example.jp"
	Expires     time.Time // zero if none
	DaysLeft    int
	RenewOpen   bool      // renewal allowed now (window open or expired)
	RenewFrom   time.Time // first day of renewal, shown while it is not open and as the date of "renew_too_early"; zero: unknown
	Error, Info string    // message IDs or ""
	// AttemptsLeft is the argument of "invalid_otp" (a wrong code at STEP 3 or renewal).
	AttemptsLeft int
	// MailFrom is the sender address of the setup mail, named on the
	// issue form so the customer can let it through their mail filter
	// before the mail is sent; "" names none.
	MailFrom string
	// Notice, if set, says why the customer is here (a message ID):
	// "enrol_not_executed" or "renew_not_executed" (a protected operation
	// they started needs a token first, and was not executed),
	// "enrol_at_login" (sent here by their first login).
	Notice string
	// Home is the bank's menu, linked from the page ("" links nowhere);
	// after a login the link continues there.
	Home string
}

// SetupPage is opened on the customer's phone from the mailed link (STEP 2):
// a small screen, no JavaScript, large inputs. When Secret is set it shows the
// result instead of the form.
type SetupPage struct {
	Common
	Link    string // the link token from the URL path; the form posts to Base+"/setup/"+Link
	Error   string // message ID or ""
	Secret  string // base32, shown grouped in fours for typing
	URI     string // otpauth://… link that opens the token app
	QRPNG   []byte // QR code of URI, shown as a data: image
	Account string // label of the account in the app
}

// MessagePage explains a situation (error, lock, cancellation…) with links.
type MessagePage struct {
	Common
	Status int    // HTTP status, for the styling only; 0: the status given to Render
	Title  string // message ID
	Body   string // message ID
	Args   []any  // for Body
	Links  []Link
}

// Link is a link on a message page. Text is a message ID.
type Link struct{ Href, Text string }

// Page is one of ConfirmPage, TokenPage, SetupPage, MessagePage and
// FilePage (or a pointer to one).
type Page interface{ page() }

func (ConfirmPage) page() {}
func (TokenPage) page()   {}
func (SetupPage) page()   {}
func (MessagePage) page() {}

//go:embed templates/*.html
var templateFS embed.FS

var templates = map[string]*template.Template{
	"confirm": parse("confirm"),
	"token":   parse("token"),
	"setup":   parse("setup"),
	"message": parse("message"),
	"file":    parse("file"),
}

func parse(name string) *template.Template {
	return template.Must(template.New("layout.html").Funcs(template.FuncMap{
		"t": func(lang Lang, id string, args ...any) string { return T(lang, id, args...) },
	}).ParseFS(templateFS, "templates/layout.html", "templates/filesummary.html", "templates/"+name+".html"))
}

// Render writes the page with the given status (0 means 200) and the header
// Content-Type: text/html; charset=utf-8. The caller sets the security
// headers (CSP above, no-store, frame and referrer policies). The page is
// rendered in full before anything is written, so on error nothing has been
// sent and the caller can still answer 500.
func Render(w http.ResponseWriter, status int, p Page) error {
	if status == 0 {
		status = http.StatusOK
	}
	if status < 100 || status > 999 {
		return fmt.Errorf("pages: invalid status %d", status)
	}
	name, data, err := viewOf(p, status)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := templates[name].Execute(&buf, data); err != nil {
		return fmt.Errorf("pages: rendering %s page: %w", name, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err = w.Write(buf.Bytes())
	return err
}
