package gate

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/display"
	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/token"
)

// Refusal is every "no" the gateway gives: the HTTP status, the code that
// JSON clients read in "error" and that pages look up in the catalogue, and
// an English message for JSON and the log. Refusals are made only by Refuse,
// which takes the status from the one table below.
type Refusal struct {
	Status  int
	Code    string
	Message string

	// cause is what led to the refusal, for the operator's log and for the
	// details some answers carry (a *token.CodeError's attempts left, a
	// *token.RenewTooEarlyError's date, a gone operation's fate); never
	// shown as is.
	cause error
	// text is the catalogue ID of the message: Code, or a text more
	// precise (challenge_gone_done).
	text string
	// saying says Message is the caller's own (RefuseSaying): the
	// catalogue text takes it as its argument in other languages.
	saying bool
	// words is the wording of the codes the message speaks of.
	words pages.Common
}

func (r *Refusal) Error() string { return r.Message }

// Unwrap returns the refusal's cause, if any.
func (r *Refusal) Unwrap() error { return r.cause }

// TextID is the catalogue ID of the refusal's text, for pages: its code,
// or a text more precise for the case (a gone operation's fate).
func (r *Refusal) TextID() string { return r.text }

// MessageIn is Message in lang: the catalogue's text in that language,
// with "otpgate: " before it as every message to clients has.
func (r *Refusal) MessageIn(lang pages.Lang) string {
	if lang != pages.English {
		lang = pages.Japanese
	}
	words := r.words
	words.Lang = lang
	if r.saying {
		if lang == pages.English {
			return r.Message
		}
		return "otpgate: " + words.T(r.text, strings.TrimPrefix(r.Message, "otpgate: "))
	}
	return "otpgate: " + words.T(r.text, args(lang, r.Code, r.cause)...)
}

// JSON is the refusal as API clients get it: "error" and "message" (in
// lang), and what they need to act on it — "attempts_left" after a wrong
// code, "renew_from" when renewal opens, the "outcome" of a failed
// release, the "fate" of a gone operation when the client's session held
// it (expired, cancelled, discarded, not_sent: not executed; done: handed
// to the bank).
func (r *Refusal) JSON(lang pages.Lang) map[string]any {
	v := map[string]any{"error": r.Code, "message": r.MessageIn(lang)}
	var early *token.RenewTooEarlyError
	switch {
	case r.Code == ChallengeGone && challenge.FateOf(r.cause) != challenge.FateUnknown:
		v["fate"] = string(challenge.FateOf(r.cause))
	case r.Code == InvalidOTP:
		v["attempts_left"] = r.AttemptsLeft()
	case r.Code == RenewTooEarly && errors.As(r.cause, &early):
		v["renew_from"] = early.From
	case r.Code == UpstreamFailed:
		v["outcome"] = "unknown"
	case r.Code == UpstreamNotSent:
		v["outcome"] = "not_executed"
	}
	return v
}

// AttemptsLeft is how many wrong codes the customer may still enter after
// the one an InvalidOTP refusal refuses; 0 for other refusals.
func (r *Refusal) AttemptsLeft() int {
	var ce *token.CodeError
	if r.Code == InvalidOTP && errors.As(r.cause, &ce) {
		return ce.AttemptsLeft
	}
	return 0
}

// Codes of refusals, as clients read them in JSON "error".
const (
	LoginRequired        = "login_required"
	LoginUnreadable      = "login_unreadable"
	EnrollmentRequired   = "enrollment_required"
	TokenExpired         = "token_expired"
	Locked               = "locked"
	ChallengeGone        = "challenge_gone"
	InvalidOTP           = "invalid_otp"
	OTPReused            = "otp_reused"
	OTPFormat            = "otp_format"
	CSRF                 = "csrf"
	BadRequest           = "bad_request"
	UnsupportedMediaType = "unsupported_media_type"
	PathTooLong          = "path_too_long"
	NotFound             = "not_found"
	BodyTooLarge         = "body_too_large"
	Busy                 = "busy"
	AmbiguousPath        = "ambiguous_path"
	UnshowableRequest    = "unshowable_request"
	StoreUnavailable     = "store_unavailable"
	UpstreamFailed       = "upstream_failed"
	UpstreamNotSent      = "upstream_not_sent"
	PINFormat            = "pin_format"
	EmailFormat          = "email_format"
	PINTrivial           = "pin_trivial"
	EmailNotRegistered   = "email_not_registered"
	EmailDomain          = "email_domain"
	ActiveToken          = "active_token"
	ReissueNeedsToken    = "reissue_requires_token_or_bank"
	IssueChanged         = "issue_changed"
	MailFailed           = "mail_failed"
	NotIssued            = "not_issued"
	RenewTooEarly        = "renew_too_early"
	SetupFailed          = "setup_failed"
	LinkGone             = "link_gone"
)

// statuses is the one table from a refusal to its HTTP status (DESIGN.md,
// "The HTTP contract"). A browser may be answered otherwise where a page
// serves it better (a redirect to the token page, a wrong code shown on the
// confirm page), never with a status that lets more through.
var statuses = map[string]int{
	LoginRequired:        http.StatusForbidden,
	LoginUnreadable:      http.StatusBadRequest,
	EnrollmentRequired:   http.StatusForbidden,
	TokenExpired:         http.StatusForbidden,
	Locked:               http.StatusLocked,
	ChallengeGone:        http.StatusGone,
	InvalidOTP:           http.StatusUnauthorized,
	OTPReused:            http.StatusConflict,
	OTPFormat:            http.StatusBadRequest,
	CSRF:                 http.StatusForbidden,
	BadRequest:           http.StatusBadRequest,
	UnsupportedMediaType: http.StatusUnsupportedMediaType,
	PathTooLong:          http.StatusRequestURITooLong,
	NotFound:             http.StatusNotFound,
	BodyTooLarge:         http.StatusRequestEntityTooLarge,
	Busy:                 http.StatusServiceUnavailable,
	AmbiguousPath:        http.StatusBadRequest,
	UnshowableRequest:    http.StatusBadRequest,
	StoreUnavailable:     http.StatusServiceUnavailable,
	UpstreamFailed:       http.StatusBadGateway,
	UpstreamNotSent:      http.StatusBadGateway,
	PINFormat:            http.StatusBadRequest,
	EmailFormat:          http.StatusBadRequest,
	PINTrivial:           http.StatusBadRequest,
	EmailNotRegistered:   http.StatusForbidden,
	EmailDomain:          http.StatusForbidden,
	ActiveToken:          http.StatusConflict,
	ReissueNeedsToken:    http.StatusForbidden,
	IssueChanged:         http.StatusConflict,
	MailFailed:           http.StatusBadGateway,
	NotIssued:            http.StatusConflict,
	RenewTooEarly:        http.StatusConflict,
	SetupFailed:          http.StatusUnauthorized,
	LinkGone:             http.StatusGone,
}

// Refuse returns the refusal code, with the status from the table and the
// catalogue's English text as its message (worded for codes of the default
// period and digits; Gate.Refuse words them for the gateway's). cause,
// which may be nil, is kept for the log. An unknown code is a programming
// error and refuses with 500.
func Refuse(code string, cause error) *Refusal {
	return refuse(pages.Common{Lang: pages.English}, code, cause)
}

// Refuse is the package's Refuse with the message worded for g's codes:
// "the 8-digit number", "up to 30 seconds".
func (g *Gate) Refuse(code string, cause error) *Refusal {
	cfg := g.tokens.Config()
	return refuse(pages.Common{Lang: pages.English, Period: cfg.Period, Digits: cfg.Digits}, code, cause)
}

func refuse(words pages.Common, code string, cause error) *Refusal {
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	text := code
	if f := challenge.FateOf(cause); code == ChallengeGone && f != challenge.FateUnknown {
		text = code + "_" + string(f)
	}
	r := &Refusal{Status: status, Code: code, cause: cause, text: text, words: words}
	r.Message = r.MessageIn(pages.English)
	return r
}

// args are the arguments of the text of a refusal code with cause, in lang.
func args(lang pages.Lang, code string, cause error) []any {
	var ce *token.CodeError
	var early *token.RenewTooEarlyError
	switch {
	case code == InvalidOTP && errors.As(cause, &ce):
		return []any{ce.AttemptsLeft}
	case code == RenewTooEarly && errors.As(cause, &early):
		if lang == pages.English {
			return []any{early.From.Format(time.DateOnly)}
		}
		return []any{display.FormatDate(early.From.In(jst).Format("20060102"), display.Japanese).Text}
	}
	return nil
}

// jst is Japan time, in which the pages write days.
var jst = time.FixedZone("JST", 9*60*60)

// RefuseSaying is Refuse with message instead of the catalogue's text, for
// refusals whose message says exactly what was wrong with the request
// (which path reading, which field) and what to send instead. In other
// languages the catalogue's text quotes it.
func RefuseSaying(code, message string, cause error) *Refusal {
	r := Refuse(code, cause)
	r.Message, r.saying = message, true
	return r
}

// RefusalFor turns an error of the token lifecycle or the held operations
// into the refusal the customer gets. What no sentinel names is a store
// failure: 503, with the error kept for the log.
func RefusalFor(err error) *Refusal { return refusalFor(Refuse, err) }

// RefusalFor is the package's RefusalFor worded for g's codes (Gate.Refuse).
func (g *Gate) RefusalFor(err error) *Refusal { return refusalFor(g.Refuse, err) }

func refusalFor(refuse func(string, error) *Refusal, err error) *Refusal {
	var ce *token.CodeError
	var early *token.RenewTooEarlyError
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return refuse(s.code, err)
		}
	}
	switch {
	case errors.As(err, &ce) && ce.Outcome == token.CodeInvalid:
		return refuse(InvalidOTP, err)
	case errors.As(err, &early):
		return refuse(RenewTooEarly, err)
	}
	return refuse(StoreUnavailable, err)
}

// sentinels are the errors with a refusal of their own, in the order they
// are tried (a *token.CodeError matches ErrReusedCode or ErrLocked by its
// outcome).
var sentinels = []struct {
	err  error
	code string
}{
	{challenge.ErrGone, ChallengeGone},
	{token.ErrReusedCode, OTPReused},
	{token.ErrLocked, Locked},
	{token.ErrPINFormat, PINFormat},
	{token.ErrEmailFormat, EmailFormat},
	{token.ErrPINTrivial, PINTrivial},
	{token.ErrAddressNotRegistered, EmailNotRegistered},
	{token.ErrAddressDomain, EmailDomain},
	{token.ErrActiveToken, ActiveToken},
	{token.ErrReissueNeedsToken, ReissueNeedsToken},
	{token.ErrIssueChanged, IssueChanged},
	{token.ErrMail, MailFailed},
	{token.ErrNoMailer, MailFailed},
	{token.ErrNotInitialised, NotIssued},
	{token.ErrNoToken, EnrollmentRequired},
	{token.ErrSetupFailed, SetupFailed},
	{token.ErrLinkGone, LinkGone},
	{token.ErrInvalidUser, BadRequest},
	{errOTPFormat, OTPFormat},
}
