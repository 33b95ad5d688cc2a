package gate_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/token"
)

// A code is what a token app shows, exactly: anything else is a format
// error, refused before it is checked, so it never counts towards the lock.
func TestCode(t *testing.T) {
	t.Parallel()
	tokens, err := token.New(nil, nil, nil, token.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g := gate.New(nil, tokens, nil, nil, nil, nil)
	for _, tc := range []struct {
		raw, want string
	}{
		{"012345", "012345"},
		{" 012345\t", "012345"},
		{"12345", ""},
		{"1234567", ""},
		{"０１２３４５", ""}, // fullwidth
		{"٠١٢٣٤٥", ""}, // Arabic-Indic
		{"01 345", ""},
		{"", ""},
		{"1.2e+5", ""},
	} {
		code, ref := g.Code(tc.raw)
		if code != tc.want || (ref == nil) != (tc.want != "") {
			t.Errorf("Code(%q) = %q, %+v; want %q", tc.raw, code, ref, tc.want)
		}
		if ref != nil && (ref.Code != gate.OTPFormat || ref.Status != http.StatusBadRequest) {
			t.Errorf("Code(%q) refused with %+v; want 400 otp_format", tc.raw, ref)
		}
	}
}

// A right code returns the operation once; every answer after it is
// challenge_gone, and nothing is released twice.
func TestConfirmRightCodeOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	held := e.hold()
	code := e.code()
	var wg sync.WaitGroup
	ops := make([]*challenge.Operation, 8)
	refs := make([]*gate.Refusal, 8)
	for i := range ops {
		wg.Go(func() { ops[i], refs[i] = e.g.Confirm(ctx, taro, held.ID, code, clientIP) })
	}
	wg.Wait()
	released := 0
	for i, op := range ops {
		switch {
		case refs[i] == nil && op.Digest == held.Digest:
			released++
		case refs[i] != nil && (refs[i].Code == gate.ChallengeGone || refs[i].Code == gate.OTPReused):
		default:
			t.Errorf("confirmation %d: %+v, %+v", i, op, refs[i])
		}
	}
	if released != 1 {
		t.Fatalf("%d confirmations released the operation; want exactly 1", released)
	}
}

// Each outcome of a code check is one refusal, with the status of the
// HTTP contract; a wrong code says how many attempts are left.
func TestConfirmRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		confirm func(e *env, id string) *gate.Refusal
		code    string
		status  int
	}{
		{"wrong code", func(e *env, id string) *gate.Refusal {
			_, ref := e.g.Confirm(ctx, taro, id, e.wrong(), clientIP)
			return ref
		}, gate.InvalidOTP, http.StatusUnauthorized},
		{"format", func(e *env, id string) *gate.Refusal {
			_, ref := e.g.Confirm(ctx, taro, id, "12345", clientIP)
			return ref
		}, gate.OTPFormat, http.StatusBadRequest},
		{"another session", func(e *env, id string) *gate.Refusal {
			_, ref := e.g.Confirm(ctx, gate.HeaderCustomer("SVC01", "mallory"), id, e.code(), clientIP)
			return ref
		}, gate.ChallengeGone, http.StatusGone},
		{"unknown challenge", func(e *env, _ string) *gate.Refusal {
			_, ref := e.g.Confirm(ctx, taro, "AAAAAAAAAAAAAAAAAAAAAAAA", e.code(), clientIP)
			return ref
		}, gate.ChallengeGone, http.StatusGone},
		{"spent step", func(e *env, id string) *gate.Refusal {
			if _, ref := e.g.Confirm(ctx, taro, e.hold().ID, e.code(), clientIP); ref != nil {
				e.t.Fatal(ref)
			}
			_, ref := e.g.Confirm(ctx, taro, id, e.code(), clientIP)
			return ref
		}, gate.OTPReused, http.StatusConflict},
		{"locking code", func(e *env, id string) *gate.Refusal {
			var ref *gate.Refusal
			for range 5 {
				_, ref = e.g.Confirm(ctx, taro, id, e.wrong(), clientIP)
			}
			return ref
		}, gate.Locked, http.StatusLocked},
		{"token revoked meanwhile", func(e *env, id string) *gate.Refusal {
			if err := e.tokens.Revoke(ctx, token.User{Service: taro.Service, ID: taro.User}, clientIP); err != nil {
				e.t.Fatal(err)
			}
			_, ref := e.g.Confirm(ctx, taro, id, e.code(), clientIP)
			return ref
		}, gate.EnrollmentRequired, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ref := tc.confirm(e, e.hold().ID)
			if ref == nil || ref.Code != tc.code || ref.Status != tc.status {
				t.Fatalf("refusal %+v; want %d %s", ref, tc.status, tc.code)
			}
			var ce *token.CodeError
			if tc.code == gate.InvalidOTP && (!errors.As(ref, &ce) || ce.AttemptsLeft != 4) {
				t.Errorf("wrong code refused without its attempts left: %v", errors.Unwrap(ref))
			}
		})
	}
}

// Cancelling discards the operation, audited; a second cancel or a
// confirmation after it finds nothing.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op := e.hold()
	if ref := e.g.Cancel(ctx, hanako, op.ID, clientIP); ref == nil || ref.Code != gate.ChallengeGone {
		t.Errorf("cancel by another customer: %+v; want challenge_gone", ref)
	}
	if ref := e.g.Cancel(ctx, taro, op.ID, clientIP); ref != nil {
		t.Fatalf("cancel: %+v", ref)
	}
	if ref := e.g.Cancel(ctx, taro, op.ID, clientIP); ref == nil || ref.Code != gate.ChallengeGone {
		t.Errorf("second cancel: %+v; want challenge_gone", ref)
	}
	if _, ref := e.g.Confirm(ctx, taro, op.ID, e.code(), clientIP); ref == nil || ref.Code != gate.ChallengeGone {
		t.Errorf("confirmation after cancel: %+v; want challenge_gone", ref)
	}
	n := 0
	for _, r := range e.audit() {
		if r.Event == audit.Cancelled && r.Digest == op.Digest {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d cancel records; want 1", n)
	}
}

func TestMarkedChallenge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, id string
		ok       bool
	}{
		{"/transfer/execute;otpgate=abc", "abc", true},
		{"/transfer/execute;otpgate=abc/more", "abc", true},
		{"/transfer/execute;otpgate=abc;x=1", "abc", true},
		{"/a;otpgate=abc/b", "abc", true},
		{"/transfer/execute", "", false},
		{"/transfer/execute;otp=abc", "", false},
	} {
		id, ok := gate.MarkedChallenge(tc.path)
		if id != tc.id || ok != tc.ok {
			t.Errorf("MarkedChallenge(%q) = %q, %v; want %q, %v", tc.path, id, ok, tc.id, tc.ok)
		}
	}
}

// The confirm form posts to the operation's own path only for an
// operation forwarded to the bank at a same-origin path.
func TestConfirmAt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		uri    string
		action gate.Action
		want   string
	}{
		{"/transfer/execute?amount=5", gate.Forward, "/transfer/execute;otpgate=ID"},
		{"/.otpgate/token/revoke", gate.Revoke, ""},
		{"/transfer/execute", "", ""},
		{"//evil.example/transfer", gate.Forward, ""},
		{`/\evil.example/transfer`, gate.Forward, ""},
		{"evil.example/transfer", gate.Forward, ""},
		{"*", gate.Forward, ""},
	} {
		op := &challenge.Operation{ID: "ID", RequestURI: tc.uri, Action: string(tc.action)}
		if got := gate.ConfirmAt(op); got != tc.want {
			t.Errorf("ConfirmAt(%q, %q) = %q; want %q", tc.uri, tc.action, got, tc.want)
		}
	}
}
