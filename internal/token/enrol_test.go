package token

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"image/png"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

var ctx = context.Background()

// issue runs STEP 1 and returns the link token from the mailed notice.
func (e *env) issue(u User, email, pin string) string {
	e.t.Helper()
	if _, err := e.m.Issue(ctx, u, email, pin, linkBase, "192.0.2.1"); err != nil {
		e.t.Fatalf("Issue: %v", err)
	}
	n, ok := e.mail.last(u, "setup")
	if !ok {
		e.t.Fatal("no setup notice mailed")
	}
	link, ok := strings.CutPrefix(n.Link, linkBase)
	if !ok {
		e.t.Fatalf("setup link %q does not start with %q", n.Link, linkBase)
	}
	return link
}

func TestIssueSetupActivateJourney(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{Issuer: "Example Shinkin Bank"})
	u := User{"SVC01", "taro"}
	const email, pin = "taro.yamada@example.jp", "73915284"

	res, err := e.m.Issue(ctx, u, email, pin, linkBase, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if res.MaskedEmail != "ta***@example.jp" || !res.LinkExpires.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("issue result %+v", res)
	}
	n, _ := e.mail.last(u, "setup")
	link := strings.TrimPrefix(n.Link, linkBase)
	if n.Email != email || !n.LinkExpires.Equal(res.LinkExpires) || len(link) != 43 {
		t.Errorf("setup notice %+v", n)
	}
	r := e.get(u)
	if r.State != Issued || r.Email != email || !strings.HasPrefix(r.PINHash, "$argon2id$v=19$m=19456,t=2,p=1$") ||
		r.LinkHash != hashLink(link) || strings.Contains(r.LinkHash, link) {
		t.Fatalf("issued record %+v", r)
	}

	e.clk.add(10 * time.Minute)
	sr, err := e.m.Setup(ctx, link, "SVC01", "taro", pin, "198.51.100.7")
	if err != nil {
		t.Fatal(err)
	}

	// The URI as a token app reads it.
	key, err := otp.NewKeyFromURL(sr.URI)
	if err != nil {
		t.Fatal(err)
	}
	if key.Type() != "totp" || key.Issuer() != "Example Shinkin Bank" || key.AccountName() != "SVC01-taro" ||
		key.Period() != 60 || key.Digits() != otp.DigitsSix || key.Algorithm() != otp.AlgorithmSHA1 || key.Secret() != sr.Secret {
		t.Errorf("URI %s: issuer %q account %q period %d digits %v algorithm %v", sr.URI,
			key.Issuer(), key.AccountName(), key.Period(), key.Digits(), key.Algorithm())
	}
	if !strings.Contains(sr.URI, "issuer=Example%20Shinkin%20Bank") || sr.Account != "SVC01-taro" {
		t.Errorf("URI %s, account %q", sr.URI, sr.Account)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(sr.Secret)
	if err != nil || len(raw) != 20 {
		t.Fatalf("secret %q: %d bytes, %v; want 20", sr.Secret, len(raw), err)
	}
	// The QR code holds the same URI.
	img, err := png.Decode(bytes.NewReader(sr.QRPNG))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 256 || b.Dy() != 256 {
		t.Errorf("QR is %v", b)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	// gozxing's finder-pattern search misses a few clean codes that phone
	// scanners read; its harder search and its reader for pure (generated)
	// codes are what a scanner's retries amount to.
	var qr *gozxing.Result
	for _, hints := range []map[gozxing.DecodeHintType]interface{}{
		nil, {gozxing.DecodeHintType_TRY_HARDER: true}, {gozxing.DecodeHintType_PURE_BARCODE: true},
	} {
		if qr, err = qrcode.NewQRCodeReader().Decode(bmp, hints); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("decoding QR: %v", err)
	}
	if qr.GetText() != sr.URI {
		t.Errorf("QR holds %q, want %q", qr.GetText(), sr.URI)
	}

	r = e.get(u)
	if r.State != Initialised || r.LinkHash != "" || r.PINHash != "" || e.linkCount() != 0 {
		t.Fatalf("record after setup %+v, %d links", r, e.linkCount())
	}
	if opened, err := e.sealer.Open(r.Secret, []byte(u.key())); err != nil || !bytes.Equal(opened, raw) {
		t.Fatalf("stored secret does not open to the delivered one: %v", err)
	}
	// Sealed at rest: neither the secret nor the PIN nor the link is in the file.
	file, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string][]byte{"raw secret": raw, "base32 secret": []byte(sr.Secret), "PIN": []byte(pin), "link": []byte(link)} {
		if bytes.Contains(file, s) {
			t.Errorf("the database file holds the %s in clear", name)
		}
	}

	// Before activation the token releases nothing.
	if req := e.requirement(u); req != PassLegacy {
		t.Errorf("requirement before activation %v, want PassLegacy", req)
	}

	// STEP 3, codes from an independent implementation.
	opts := totp.ValidateOpts{Period: 60, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	now := e.clk.now()
	bad := wrongCode(raw, now)
	err = e.m.Activate(ctx, u, bad, "192.0.2.1")
	var ce *CodeError
	if !errors.As(err, &ce) || ce.Outcome != CodeInvalid || ce.AttemptsLeft != 4 || !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("wrong first code: %v", err)
	}
	good, err := totp.GenerateCodeCustom(sr.Secret, now, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Activate(ctx, u, good, "192.0.2.1"); err != nil {
		t.Fatalf("Activate: %v", err)
	}
	st := e.status(u)
	if st.State != Active || !st.Expires.Equal(now.Add(365*day)) || st.Locked {
		t.Fatalf("status after activation %+v", st)
	}
	if r := e.get(u); !r.ActivatedAt.Equal(now) || r.Failures != 0 {
		t.Errorf("record after activation %+v", r)
	}
	if n, ok := e.mail.last(u, "activated"); !ok || !n.Expires.Equal(st.Expires) {
		t.Errorf("activated notice %+v, %v", n, ok)
	}
	// Activation spent the code's step.
	if c := e.check(u, good, ForOperation); c.Outcome != CodeReused {
		t.Errorf("activation code reused for an operation: %v", c.Outcome)
	}
	next, _ := totp.GenerateCodeCustom(sr.Secret, now.Add(time.Minute), opts)
	if c := e.check(u, next, ForOperation); c.Outcome != CodeOK {
		t.Errorf("next code: %v", c.Outcome)
	}
	if err := e.m.Activate(ctx, u, next, "192.0.2.1"); !errors.Is(err, ErrNotInitialised) {
		t.Errorf("activating twice: %v, want ErrNotInitialised", err)
	}
	// Once a company uses OTP, all of its users must.
	if req := e.requirement(User{"SVC01", "hanako"}); req != NeedEnrolment {
		t.Errorf("colleague's requirement %v, want NeedEnrolment", req)
	}

	want := []audit.Event{audit.Issued, audit.SetupDone, audit.CodeInvalid, audit.CodeOK, audit.Activated, audit.Refused}
	if got := e.auditEvents(u); !reflect.DeepEqual(got, want) {
		t.Errorf("audit %v, want %v", got, want)
	}
	var required bool
	for _, a := range e.audit() {
		if a.Event == audit.RequireOTP && a.Service == "SVC01" && a.Actor == "customer:taro" {
			required = true
		}
		if a.Event == audit.SetupDone && a.ClientIP != "198.51.100.7" {
			t.Errorf("setup audit client IP %q", a.ClientIP)
		}
	}
	if !required {
		t.Error("no require_otp audit record for the service")
	}
	e.assertAuditClean(pin, link, sr.Secret, good, bad, next)
	if got := e.mail.events(u); !reflect.DeepEqual(got, []string{"setup", "activated"}) {
		t.Errorf("notices %v", got)
	}
}

func TestIssueRefused(t *testing.T) {
	e := newEnv(t, Config{})
	active := User{"SVC", "active"}
	e.seed(active, nil)
	locked := User{"SVC", "locked"}
	e.seed(locked, func(r *Record) { r.State, r.Locked, r.LockedAt = Initialised, true, t0 })
	fresh := User{"SVC", "fresh"}
	for _, tc := range []struct {
		name       string
		u          User
		email, pin string
		want       error
	}{
		{"short PIN", fresh, "a@example.jp", "123", ErrPINFormat},
		{"long PIN", fresh, "a@example.jp", "123456789", ErrPINFormat},
		{"letter in PIN", fresh, "a@example.jp", "12a4", ErrPINFormat},
		{"full-width PIN", fresh, "a@example.jp", "１２３４", ErrPINFormat},
		{"empty PIN", fresh, "a@example.jp", "", ErrPINFormat},
		{"no at sign", fresh, "taro.example.jp", "1234", ErrEmailFormat},
		{"display name", fresh, "Taro <taro@example.jp>", "1234", ErrEmailFormat},
		{"angle brackets", fresh, "<taro@example.jp>", "1234", ErrEmailFormat},
		{"header injection", fresh, "taro@example.jp\r\nBcc: x@evil.example", "1234", ErrEmailFormat},
		{"two addresses", fresh, "a@example.jp, b@example.jp", "1234", ErrEmailFormat},
		{"too long", fresh, strings.Repeat("a", 64) + "@" + strings.Repeat("b", 187) + ".jp", "1234", ErrEmailFormat},
		{"empty", fresh, "", "1234", ErrEmailFormat},
		{"active token", active, "a@example.jp", "4829", ErrActiveToken},
		{"locked", locked, "a@example.jp", "4829", ErrLocked},
		{"bad user", User{"SVC", "a\x1fb"}, "a@example.jp", "1234", ErrInvalidUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.audit())
			_, err := e.m.Issue(ctx, tc.u, tc.email, tc.pin, linkBase, "192.0.2.1")
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			// A refusal for the token's state is audited (someone tried to
			// bind a phone); a malformed request is not.
			audited := 0
			if tc.want == ErrActiveToken || tc.want == ErrLocked {
				audited = 1
			}
			if len(e.audit()) != before+audited || e.linkCount() != 0 || len(e.mail.events(tc.u)) != 0 {
				t.Error("a refused issue wrote or mailed something")
			}
		})
	}
	if st := e.status(fresh); st.State != None {
		t.Errorf("fresh user is %v", st.State)
	}

	t.Run("no mailer", func(t *testing.T) {
		m, err := New(e.db, e.sealer, nil, Config{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Issue(ctx, fresh, "a@example.jp", "4829", linkBase, ""); !errors.Is(err, ErrNoMailer) {
			t.Fatalf("got %v, want ErrNoMailer", err)
		}
	})
}

func TestIssueMailFailureChangesNothing(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	e.mail.setFail("setup", errMailDown)
	_, err := e.m.Issue(ctx, u, "taro@example.jp", "4821", linkBase, "192.0.2.1")
	if !errors.Is(err, ErrMail) || !errors.Is(err, errMailDown) {
		t.Fatalf("got %v, want ErrMail wrapping the SMTP error", err)
	}
	if st := e.status(u); st.State != None || st.Email != "" {
		t.Errorf("status after failed mail %+v", st)
	}
	if n := len(e.audit()); n != 0 {
		t.Errorf("%d audit records after a failed mail", n)
	}
	if n := e.linkCount(); n != 0 {
		t.Errorf("%d setup links after a failed mail", n)
	}
	err = e.db.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(store.Tokens, u.key())
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a token record was written: %v", err)
	}
}

// Issuing again replaces an unfinished issue: the first link dies, the
// second works once.
func TestReissueKillsOldLinkAndLinkWorksOnce(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	first := e.issue(u, "taro@example.jp", "5821")
	second := e.issue(u, "taro@phone.example.jp", "7264")
	if e.linkCount() != 1 {
		t.Fatalf("%d setup links stored, want 1", e.linkCount())
	}
	if _, err := e.m.Setup(ctx, first, "SVC", "taro", "5821", ""); !errors.Is(err, ErrLinkGone) {
		t.Fatalf("first link after re-issue: %v, want ErrLinkGone", err)
	}
	if _, err := e.m.Setup(ctx, second, "SVC", "taro", "7264", ""); err != nil {
		t.Fatalf("second link: %v", err)
	}
	if _, err := e.m.Setup(ctx, second, "SVC", "taro", "7264", ""); !errors.Is(err, ErrLinkGone) {
		t.Fatalf("used link: %v, want ErrLinkGone", err)
	}
	if r := e.get(u); r.Email != "taro@phone.example.jp" || r.State != Initialised {
		t.Errorf("record %+v", r)
	}
}

// After a revoke (made with a code) a new token starts afresh. Expired is
// refused: see TestIssueByState.
func TestIssueAllowedAfterRevoked(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "revoked"}
	e.seed(u, func(r *Record) { r.State, r.Secret = Revoked, nil })
	e.issue(u, "u@example.jp", "4829")
	if r := e.get(u); r.State != Issued || r.Secret != nil || !r.Expires.IsZero() {
		t.Errorf("record after issue %+v", r)
	}
}

func TestSetupWrongTries(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	const pin = "482193"
	link := e.issue(u, "taro@example.jp", pin)

	var first error
	for i, tc := range []struct {
		name                  string
		service, user, pinTry string
	}{
		{"wrong PIN", "SVC", "taro", "482194"},
		{"wrong user", "SVC", "jiro", pin},
		{"wrong service", "SVX", "taro", pin},
		{"all wrong", "X", "Y", "0000"},
		{"empty", "", "", ""},
	} {
		_, err := e.m.Setup(ctx, link, tc.service, tc.user, tc.pinTry, "203.0.113.9")
		if err != ErrSetupFailed {
			t.Fatalf("%s: %v, want ErrSetupFailed itself", tc.name, err)
		}
		if first == nil {
			first = err
		} else if err.Error() != first.Error() {
			t.Errorf("%s: message %q differs from %q: it tells which field was wrong", tc.name, err, first)
		}
		if r := e.get(u); i < 4 && r.SetupTries != i+1 {
			t.Errorf("%s: %d tries stored, want %d", tc.name, r.SetupTries, i+1)
		}
	}
	// The fifth wrong try killed the link: even the right data fails now.
	if _, err := e.m.Setup(ctx, link, "SVC", "taro", pin, ""); !errors.Is(err, ErrLinkGone) {
		t.Fatalf("after 5 wrong tries: %v, want ErrLinkGone", err)
	}
	r := e.get(u)
	if r.State != Issued || r.LinkHash != "" || r.PINHash != "" || e.linkCount() != 0 {
		t.Errorf("record after the link was killed %+v", r)
	}
	audits := e.audit()
	var failed []audit.Record
	for _, a := range audits {
		if a.Event == audit.SetupFailed {
			failed = append(failed, a)
		}
	}
	if len(failed) != 5 || !strings.Contains(failed[4].Detail, "killed") || failed[0].ClientIP != "203.0.113.9" ||
		failed[0].User != "taro" {
		t.Errorf("setup_failed records %+v", failed)
	}
	e.assertAuditClean(pin, "482194", link)
}

func TestSetupExpiredLinkAndSweep(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	link := e.issue(u, "taro@example.jp", "4821")
	e.clk.add(24 * time.Hour)
	if _, err := e.m.Setup(ctx, link, "SVC", "taro", "4821", ""); !errors.Is(err, ErrLinkGone) {
		t.Fatalf("expired link: %v, want ErrLinkGone", err)
	}
	for _, bogus := range []string{"", "not-a-link", strings.Repeat("A", 43)} {
		if _, err := e.m.Setup(ctx, bogus, "SVC", "taro", "4821", ""); !errors.Is(err, ErrLinkGone) {
			t.Errorf("link %q: %v, want ErrLinkGone", bogus, err)
		}
	}
	if _, err := e.m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.linkCount(); n != 0 {
		t.Errorf("%d links after the sweep", n)
	}
	// Still issued: the customer issues again.
	r := e.get(u)
	if r.State != Issued || r.LinkHash != "" || r.PINHash != "" || !r.LinkExpires.IsZero() {
		t.Errorf("record after the sweep %+v", r)
	}
}

func TestMaskEmail(t *testing.T) {
	for in, want := range map[string]string{
		"taro.yamada@example.jp": "ta***@example.jp",
		"a@x.jp":                 "a***@x.jp",
		"ab@x.jp":                "ab***@x.jp",
		"山田太郎@example.jp":        "山田***@example.jp",
		"nobody":                 "***",
	} {
		if got := MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCodeErrorIs(t *testing.T) {
	for _, tc := range []struct {
		outcome Outcome
		is      error
		msg     string
	}{
		{CodeInvalid, ErrInvalidCode, "3 attempts left"},
		{CodeReused, ErrReusedCode, "already used"},
		{CodeLocked, ErrLocked, "locked"},
	} {
		err := error(&CodeError{Outcome: tc.outcome, AttemptsLeft: 3})
		for _, other := range []error{ErrInvalidCode, ErrReusedCode, ErrLocked} {
			if errors.Is(err, other) != (other == tc.is) {
				t.Errorf("outcome %v: errors.Is(%v) = %v", tc.outcome, other, !(other == tc.is))
			}
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("outcome %v: message %q lacks %q", tc.outcome, err, tc.msg)
		}
	}
}

func TestActivateLocks(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, func(r *Record) { r.State, r.Expires = Initialised, time.Time{} })
	bad := wrongCode(secret, t0)
	for range 4 {
		if err := e.m.Activate(ctx, u, bad, ""); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("wrong code: %v", err)
		}
	}
	if err := e.m.Activate(ctx, u, bad, ""); !errors.Is(err, ErrLocked) {
		t.Fatalf("5th wrong code: %v, want ErrLocked", err)
	}
	if n, ok := e.mail.last(u, "locked"); !ok || n.Email != u.ID+"@mail.example.jp" {
		t.Errorf("locked notice %+v, %v", n, ok)
	}
	if err := e.m.Activate(ctx, u, totpCode(secret, t0), ""); !errors.Is(err, ErrLocked) {
		t.Fatalf("right code while locked: %v, want ErrLocked", err)
	}
	got := e.auditEvents(u)
	if got[len(got)-3] != audit.CodeInvalid || got[len(got)-2] != audit.Locked || got[len(got)-1] != audit.Refused {
		t.Errorf("audit %v", got)
	}
	if _, err := e.m.Issue(ctx, u, "taro@example.jp", "4829", linkBase, ""); !errors.Is(err, ErrLocked) {
		t.Errorf("issue while locked: %v, want ErrLocked", err)
	}
}

func TestPINHash(t *testing.T) {
	t.Parallel() // argon2id is slow
	h, err := hashPIN("0042")
	if err != nil {
		t.Fatal(err)
	}
	ap, salt, key, err := parsePIN(h)
	if err != nil {
		t.Fatal(err)
	}
	if ap != (argonParams{m: 19456, t: 2, p: 1}) || len(salt) != 16 || len(key) != 32 {
		t.Fatalf("parameters %+v, salt %d bytes, hash %d bytes", ap, len(salt), len(key))
	}
	if verifyPIN(h, "0042") != 1 || verifyPIN(h, "0043") != 0 {
		t.Error("verifyPIN disagrees with hashPIN")
	}
	if verifyPIN("", "0042") != 0 {
		t.Error("an empty hash verified")
	}
	// A tampered record must not make a setup try allocate gigabytes.
	for _, bad := range []string{
		strings.Replace(h, "m=19456", "m=4194304", 1),
		strings.Replace(h, "t=2", "t=1000", 1),
		strings.Replace(h, "$argon2id$", "$argon2i$", 1),
		strings.Replace(h, "v=19", "v=16", 1),
		h[:len(h)-10],
	} {
		if _, _, _, err := parsePIN(bad); err == nil {
			t.Errorf("parsePIN accepted %q", bad)
		}
	}
}
