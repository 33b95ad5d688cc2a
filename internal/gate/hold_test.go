package gate_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
	"github.com/otpgate/otpgate/policy"
)

// Each protected request is held, passed through or refused according to
// the customer's token, and the audit trail records the decision: a held
// operation as a challenge, a pass-through with its digest and fields, a
// refusal as "refused" (SECURITY.md 25). Only a held operation is stored.
func TestHoldDecisions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		who     *gate.Customer
		prepare func(e *env)
		want    gate.Decision
		code    string      // the refusal's code
		event   audit.Event // the one audit record written
	}{
		{name: "active token", who: taro, want: gate.Held, event: audit.Challenge},
		{name: "no token, service without OTP", who: jiro, want: gate.PassThrough, event: audit.PassThrough},
		{name: "no token, service requires OTP", who: hanako, code: gate.EnrollmentRequired, event: audit.Refused},
		{name: "expired token", who: taro, prepare: func(e *env) { e.clk.add(366 * 24 * time.Hour) }, code: gate.TokenExpired, event: audit.Refused},
		{name: "locked", who: taro, prepare: lock, code: gate.Locked, event: audit.Refused},
		{name: "unknown customer", code: gate.LoginRequired, event: audit.Refused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			before := len(e.audit())
			m, r := transfer(t)
			var calls int
			d, op, ref := e.g.Hold(ctx, known(tc.who, &calls), m, r)
			if d != tc.want || (ref == nil) != (tc.code == "") || (ref != nil && ref.Code != tc.code) {
				t.Fatalf("Hold = %v, %+v; want %v %q", d, ref, tc.want, tc.code)
			}
			trail := e.audit()[before:]
			if len(trail) != 1 || trail[0].Event != tc.event {
				t.Fatalf("audit trail %+v; want one %s record", trail, tc.event)
			}
			rec := trail[0]
			if rec.Kind != "transfer" || rec.Rule != "furikomi" || rec.ClientIP != clientIP || rec.Request != "POST /transfer/execute?step=2" {
				t.Errorf("audit record %+v does not name the operation", rec)
			}
			switch d {
			case gate.Held:
				if got, ref := e.g.Operation(ctx, tc.who, op.ID); ref != nil || got.Digest != op.Digest || rec.Digest != op.Digest {
					t.Errorf("held operation %+v, %v; audited digest %s", got, ref, rec.Digest)
				}
			case gate.PassThrough:
				if rec.Digest != op.ComputeDigest() || rec.Fields["amount"] != "50000" {
					t.Errorf("pass-through audited as %+v; want its digest and shown fields", rec)
				}
			default:
				if ref.Status == 0 || ref.Message == "" || op != nil {
					t.Errorf("refusal %+v (operation %+v)", ref, op)
				}
			}
		})
	}
}

// lock locks taro with five wrong codes on a held operation.
func lock(e *env) {
	e.t.Helper()
	op := e.hold()
	for range 5 {
		e.g.Confirm(ctx, taro, op.ID, e.wrong(), clientIP)
	}
	if st, err := e.tokens.Status(ctx, token.User{Service: taro.Service, ID: taro.User}); err != nil || !st.Locked {
		e.t.Fatalf("taro after five wrong codes: %+v, %v; want locked", st, err)
	}
}

// A request the gateway cannot read as the bank does is refused before
// anything is looked up (identify is not called) or stored.
func TestHoldUnshowableRefusedFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m, r := transfer(t)
	m.Verdict, m.Err = policy.Refused, errors.New("otpgate: a body that cannot be read; send a form")
	before := len(e.audit())
	var calls int
	d, op, ref := e.g.Hold(ctx, known(taro, &calls), m, r)
	if d != gate.Refused || op != nil || ref == nil || ref.Code != gate.UnshowableRequest || ref.Status != http.StatusBadRequest || ref.Message != m.Err.Error() {
		t.Fatalf("Hold = %v, %+v, %+v; want 400 unshowable_request saying what to send", d, op, ref)
	}
	if calls != 0 || len(e.audit()) != before {
		t.Errorf("identified %d times and wrote %d audit records for an unreadable request", calls, len(e.audit())-before)
	}
}

// A store that fails refuses with 503 and lets nothing through.
func TestHoldStoreFailureRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.db.Close()
	m, r := transfer(t)
	var calls int
	for _, who := range []*gate.Customer{taro, jiro} {
		if d, _, ref := e.g.Hold(ctx, known(who, &calls), m, r); d != gate.Refused || ref.Code != gate.StoreUnavailable || ref.Status != http.StatusServiceUnavailable {
			t.Errorf("%s with the store closed: %v, %+v; want 503", who.User, d, ref)
		}
	}
	failing := func() (*gate.Customer, error) { return nil, store.ErrUnavailable }
	if d, _, ref := e.g.Hold(ctx, failing, m, r); d != gate.Refused || ref.Code != gate.StoreUnavailable {
		t.Errorf("identity lookup failing: %v, %+v; want 503", d, ref)
	}
}

// With conflicting values the bank may act on any of them: the operation
// is held with the doubt and no field.
func TestHoldConflictingShowsNoField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m, r := transfer(t)
	m.Verdict = policy.Conflicting
	var calls int
	d, op, _ := e.g.Hold(ctx, known(taro, &calls), m, r)
	if d != gate.Held || len(op.Fields) != 0 || op.Doubt != string(policy.Conflicting) || calls != 1 {
		t.Fatalf("Hold = %v, fields %+v, doubt %q; want held with no field", d, op.Fields, op.Doubt)
	}
}

// A held operation keeps the request as the bank will get it, without the
// headers of the connection (Connection and those it names) or the
// cookies, which are the confirming request's at release.
func TestHoldKeepsRequestWithoutHopHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op := e.hold()
	for _, h := range []string{"Connection", "X-Hop", "Cookie"} {
		if v := op.Header.Values(h); len(v) != 0 {
			t.Errorf("held %s: %q", h, v)
		}
	}
	if op.Header.Get("Authorization") != "Basic dGFybzpwdw==" || op.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("held headers %v lack the request's own", op.Header)
	}
	if op.Method != http.MethodPost || op.RequestURI != "/transfer/execute?step=2" || op.Host != "bank.example.jp" ||
		string(op.Body) != "amount=50000&to=1234567" || gate.ActionOf(op) != gate.Forward || op.Rule != "furikomi" {
		t.Errorf("held %+v", op)
	}
}

// The built-in revocation needs a token to revoke: a customer without one
// is refused whether or not their service requires OTP, and never passed
// through (review §3 item 5).
func TestHoldRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		who  *gate.Customer
		code string
	}{
		{"active token", taro, ""},
		{"no token, service without OTP", jiro, gate.EnrollmentRequired},
		{"no token, service requires OTP", hanako, gate.EnrollmentRequired},
		{"unknown customer", nil, gate.LoginRequired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			before := len(e.audit())
			op, ref := e.g.HoldRevoke(ctx, tc.who, gate.Request{Method: http.MethodPost, URI: "/.otpgate/token/revoke", Host: "bank.example.jp", ClientIP: clientIP})
			trail := e.audit()[before:]
			if tc.code == "" {
				if ref != nil || gate.ActionOf(op) != gate.Revoke || op.Rule != gate.RevokeRule || op.Kind != string(policy.TokenManagement) {
					t.Fatalf("HoldRevoke = %+v, %+v; want a held revocation", op, ref)
				}
				return
			}
			if op != nil || ref == nil || ref.Code != tc.code {
				t.Fatalf("HoldRevoke = %+v, %+v; want %s", op, ref, tc.code)
			}
			if len(trail) != 1 || trail[0].Event != audit.Refused || trail[0].Rule != gate.RevokeRule {
				t.Errorf("audit trail %+v; want one refused revocation", trail)
			}
		})
	}
}
