package gate_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

// The statuses of DESIGN.md's HTTP contract, and that every refusal says
// in English what happened, from the catalogue the pages use.
func TestRefuseStatus(t *testing.T) {
	t.Parallel()
	for code, status := range map[string]int{
		gate.LoginRequired:      http.StatusForbidden,
		gate.EnrollmentRequired: http.StatusForbidden,
		gate.TokenExpired:       http.StatusForbidden,
		gate.InvalidOTP:         http.StatusUnauthorized,
		gate.OTPReused:          http.StatusConflict,
		gate.Locked:             http.StatusLocked,
		gate.ChallengeGone:      http.StatusGone,
		gate.BodyTooLarge:       http.StatusRequestEntityTooLarge,
		gate.StoreUnavailable:   http.StatusServiceUnavailable,
		gate.CSRF:               http.StatusForbidden,
		gate.UpstreamFailed:     http.StatusBadGateway,
	} {
		ref := gate.Refuse(code, nil)
		if ref.Status != status || ref.Code != code {
			t.Errorf("Refuse(%s) = %d %s; want %d", code, ref.Status, ref.Code, status)
		}
		if want := "otpgate: " + pages.T(pages.English, code); !strings.HasPrefix(ref.Message, "otpgate: ") || ref.Message != want {
			t.Errorf("Refuse(%s).Message = %q; want %q", code, ref.Message, want)
		}
	}
	if ref := gate.Refuse("no_such_code", nil); ref.Status != http.StatusInternalServerError {
		t.Errorf("unknown code: status %d; want 500", ref.Status)
	}
	cause := errors.New("the cause")
	if ref := gate.RefuseSaying(gate.AmbiguousPath, "otpgate: say this", cause); ref.Message != "otpgate: say this" || ref.Status != http.StatusBadRequest || !errors.Is(ref, cause) {
		t.Errorf("RefuseSaying = %+v", ref)
	}
}

// Every error of the token lifecycle and the held operations is one
// refusal; what no sentinel names is a store failure (503), with its cause
// kept for the log.
func TestRefusalFor(t *testing.T) {
	t.Parallel()
	from := time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		err  error
		code string
	}{
		{challenge.ErrGone, gate.ChallengeGone},
		{fmt.Errorf("confirming: %w", challenge.ErrGone), gate.ChallengeGone},
		{&token.CodeError{Outcome: token.CodeInvalid, AttemptsLeft: 3}, gate.InvalidOTP},
		{&token.CodeError{Outcome: token.CodeReused}, gate.OTPReused},
		{&token.CodeError{Outcome: token.CodeLocked}, gate.Locked},
		{token.ErrLocked, gate.Locked},
		{&token.RenewTooEarlyError{From: from}, gate.RenewTooEarly},
		{token.ErrPINFormat, gate.PINFormat},
		{token.ErrEmailFormat, gate.EmailFormat},
		{token.ErrActiveToken, gate.ActiveToken},
		{token.ErrReissueNeedsToken, gate.ReissueNeedsToken},
		{token.ErrIssueChanged, gate.IssueChanged},
		{token.ErrMail, gate.MailFailed},
		{token.ErrNoMailer, gate.MailFailed},
		{token.ErrNotInitialised, gate.NotIssued},
		{token.ErrNoToken, gate.EnrollmentRequired},
		{token.ErrSetupFailed, gate.SetupFailed},
		{token.ErrLinkGone, gate.LinkGone},
		{token.ErrInvalidUser, gate.BadRequest},
		{store.ErrUnavailable, gate.StoreUnavailable},
		{errors.New("disk on fire"), gate.StoreUnavailable},
	} {
		ref := gate.RefusalFor(tc.err)
		if ref.Code != tc.code || !errors.Is(ref, tc.err) {
			t.Errorf("RefusalFor(%v) = %s (cause kept: %v); want %s", tc.err, ref.Code, errors.Is(ref, tc.err), tc.code)
		}
	}
	if ref := gate.RefusalFor(&token.CodeError{Outcome: token.CodeInvalid, AttemptsLeft: 3}); !strings.Contains(ref.Message, "3 attempts left") {
		t.Errorf("wrong code message %q does not say the attempts left", ref.Message)
	}
	if ref := gate.RefusalFor(&token.RenewTooEarlyError{From: from}); !strings.Contains(ref.Message, "2027-03-02") {
		t.Errorf("renewal message %q does not say from when", ref.Message)
	}
}

// Rules whose names would make the audit trail ambiguous are refused at
// load: the same name twice (unnamed rules are named after their kind), or
// a name of the gateway's built-in operations.
func TestCheckRules(t *testing.T) {
	t.Parallel()
	rule := func(kind, name string) policy.Rule { return policy.Rule{Kind: policy.Kind(kind), Name: name} }
	for _, tc := range []struct {
		name  string
		rules []policy.Rule
		want  string // part of the error; "" accepts
	}{
		{"distinct", []policy.Rule{rule("transfer", ""), rule("transfer", "furikomi"), rule("bill_payment", "")}, ""},
		{"same name", []policy.Rule{rule("transfer", "pay"), rule("bill_payment", "pay")}, `rules 1 and 2 are both named "pay"`},
		{"two unnamed of one kind", []policy.Rule{rule("transfer", ""), rule("user_change", ""), rule("transfer", "")}, `rules 1 and 3 are both named "transfer"`},
		{"unnamed like a named", []policy.Rule{rule("transfer", "bill_payment"), rule("bill_payment", "")}, `both named "bill_payment"`},
		{"the built-in revocation", []policy.Rule{rule("token_management", gate.RevokeRule)}, "built-in"},
		{"another case", []policy.Rule{rule("transfer", "OTPGATE_revoke")}, "built-in"},
		{"any otpgate name", []policy.Rule{rule("transfer", "otpgate-x")}, "built-in"},
	} {
		err := gate.CheckRules(tc.rules)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.want)
		}
	}
}

// A Gate's refusals say what its codes look like: their digits and period,
// not the defaults.
func TestRefusalWordedForTheCodes(t *testing.T) {
	t.Parallel()
	tokens, err := token.New(nil, nil, nil, token.Config{Digits: 8, Period: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(nil, tokens, nil, nil, nil, nil)
	if _, ref := g.Code("123456"); ref == nil || !strings.Contains(ref.Message, "8-digit") {
		t.Errorf("a 6-digit code refused with %+v; want the message to ask for 8 digits", ref)
	}
	if ref := g.RefusalFor(token.ErrReusedCode); !strings.Contains(ref.Message, "30 seconds") {
		t.Errorf("reused code: %q; want it to say up to 30 seconds", ref.Message)
	}
	if ref := gate.RefusalFor(token.ErrReusedCode); !strings.Contains(ref.Message, "60 seconds") {
		t.Errorf("reused code, default wording: %q", ref.Message)
	}
}

// What an API client reads of a refusal: its code and message, and the
// details it acts on.
func TestRefusalJSON(t *testing.T) {
	t.Parallel()
	from := time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ref  *gate.Refusal
		key  string
		want any
	}{
		{gate.RefusalFor(&token.CodeError{Outcome: token.CodeInvalid, AttemptsLeft: 2}), "attempts_left", 2},
		{gate.RefusalFor(&token.RenewTooEarlyError{From: from}), "renew_from", from},
		{gate.Refuse(gate.UpstreamFailed, nil), "outcome", "unknown"},
		{gate.Refuse(gate.UpstreamNotSent, nil), "outcome", "not_executed"},
		{gate.Refuse(gate.Locked, nil), "error", gate.Locked},
	} {
		v := tc.ref.JSON(pages.English)
		if v[tc.key] != tc.want || v["error"] != tc.ref.Code || v["message"] != tc.ref.Message {
			t.Errorf("%s: %v; want %s = %v", tc.ref.Code, v, tc.key, tc.want)
		}
	}
	if n := gate.Refuse(gate.Locked, nil).AttemptsLeft(); n != 0 {
		t.Errorf("attempts left of a lock: %d", n)
	}
}

// JSON messages are in the client's language, worded for the gateway's
// codes, and keep the "otpgate: " every message to clients starts with.
func TestRefusalJSONLanguage(t *testing.T) {
	t.Parallel()
	from := time.Date(2027, 3, 2, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		ref    *gate.Refusal
		ja, en string
	}{
		{"wrong code", gate.RefusalFor(&token.CodeError{Outcome: token.CodeInvalid, AttemptsLeft: 2}), "あと2回", "2 attempts left"},
		{"renewal date", gate.RefusalFor(&token.RenewTooEarlyError{From: from}), "2027年3月2日から", "from 2027-03-02"},
		{"reused code", gate.Refuse(gate.OTPReused, nil), "最大60秒", "up to 60 seconds"},
		{"said by the caller", gate.RefuseSaying(gate.AmbiguousPath, "otpgate: path has %2F", nil), "（path has %2F）", "otpgate: path has %2F"},
	} {
		ja, en := tc.ref.JSON(pages.Japanese)["message"].(string), tc.ref.JSON(pages.English)["message"].(string)
		if !strings.HasPrefix(ja, "otpgate: ") || !strings.Contains(ja, tc.ja) {
			t.Errorf("%s: Japanese message %q; want %q in it", tc.name, ja, tc.ja)
		}
		if !strings.HasPrefix(en, "otpgate: ") || !strings.Contains(en, tc.en) || en != tc.ref.Message {
			t.Errorf("%s: English message %q; want %q in it, as Message %q", tc.name, en, tc.en, tc.ref.Message)
		}
	}
}

// A gone operation's refusal says what became of it when the session held
// it: the fate in JSON, and a text of its own for each fate.
func TestRefusalGoneFate(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, f := range []challenge.Fate{challenge.FateExpired, challenge.FateCancelled, challenge.FateDiscarded, challenge.FateDone, challenge.FateNotSent} {
		ref := gate.RefusalFor(fmt.Errorf("loading: %w", &challenge.GoneError{Fate: f}))
		if ref.Code != gate.ChallengeGone || ref.Status != http.StatusGone {
			t.Errorf("%s: %s %d", f, ref.Code, ref.Status)
		}
		v := ref.JSON(pages.Japanese)
		msg, _ := v["message"].(string)
		if v["fate"] != string(f) || seen[msg] || ref.TextID() != "challenge_gone_"+string(f) || pages.T(pages.Japanese, ref.TextID()) == ref.TextID() {
			t.Errorf("%s: JSON %v, text %s; want the fate and a message of its own", f, v, ref.TextID())
		}
		seen[msg] = true
	}
	ref := gate.RefusalFor(challenge.ErrGone)
	if v := ref.JSON(pages.English); v["fate"] != nil || ref.TextID() != gate.ChallengeGone {
		t.Errorf("unknown fate: %v, text %s", v, ref.TextID())
	}
}

// Every refusal has a status of its own in the table and a text in the
// catalogue, in both languages, that pages show.
func TestEveryRefusalHasStatusAndText(t *testing.T) {
	t.Parallel()
	for _, code := range []string{
		gate.LoginRequired, gate.LoginUnreadable, gate.EnrollmentRequired, gate.TokenExpired, gate.Locked,
		gate.ChallengeGone, gate.InvalidOTP, gate.OTPReused, gate.OTPFormat, gate.CSRF, gate.BadRequest,
		gate.UnsupportedMediaType, gate.PathTooLong, gate.NotFound, gate.BodyTooLarge, gate.AmbiguousPath,
		gate.UnshowableRequest, gate.StoreUnavailable, gate.UpstreamFailed, gate.UpstreamNotSent, gate.PINFormat,
		gate.PINTrivial, gate.EmailFormat, gate.EmailNotRegistered, gate.EmailDomain, gate.ActiveToken,
		gate.ReissueNeedsToken, gate.IssueChanged, gate.MailFailed, gate.NotIssued, gate.RenewTooEarly,
		gate.SetupFailed, gate.LinkGone,
	} {
		if ref := gate.Refuse(code, nil); ref.Status < 400 || ref.Status >= 500 && ref.Status != http.StatusServiceUnavailable && ref.Status != http.StatusBadGateway {
			t.Errorf("%s: status %d", code, ref.Status)
		}
		for _, lang := range []pages.Lang{pages.Japanese, pages.English} {
			if pages.T(lang, code) == code {
				t.Errorf("%s: no %v text in the catalogue", code, lang)
			}
		}
	}
}
