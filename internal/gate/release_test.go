package gate_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/token"
)

// The released request is the stored one byte for byte, with the
// confirming request's cookies but the gateway's CSRF cookie, and nothing
// else of the confirmation (DESIGN.md, Request flow 6).
func TestOutboundOf(t *testing.T) {
	t.Parallel()
	op := &challenge.Operation{Method: http.MethodPost, RequestURI: "/transfer/execute?a=%41&b=1", Host: "bank.example.jp",
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {"Basic eA=="}},
		Body:   []byte("amount=50000")}
	confirming := http.Header{
		"Cookie":       {"JSESSIONID=rotated; " + gate.CSRFCookie + "=secret; theme=dark", gate.CSRFCookie + "=again"},
		"Content-Type": {"application/json"},
		"X-Extra":      {"1"},
	}
	out, err := gate.OutboundOf(op, confirming)
	if err != nil {
		t.Fatal(err)
	}
	if out.Method != http.MethodPost || out.RequestURI != op.RequestURI || out.URL.RawQuery != "a=%41&b=1" || out.URL.Path != "/transfer/execute" ||
		out.Host != op.Host || string(out.Body) != "amount=50000" {
		t.Errorf("outbound %+v; want the stored request", out)
	}
	if got := out.Header.Values("Cookie"); len(got) != 1 || got[0] != "JSESSIONID=rotated; theme=dark" {
		t.Errorf("cookies %q; want the confirming request's without %s", got, gate.CSRFCookie)
	}
	if out.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || out.Header.Get("X-Extra") != "" || out.Header.Get("Authorization") != "Basic eA==" {
		t.Errorf("headers %v; want the stored ones only", out.Header)
	}
	out.Header.Set("Authorization", "changed")
	if op.Header.Get("Authorization") != "Basic eA==" {
		t.Error("the outbound headers share the stored operation's map")
	}
	if _, err := gate.OutboundOf(&challenge.Operation{RequestURI: "no-slash"}, nil); !errors.Is(err, challenge.ErrNotSent) {
		t.Errorf("unparsable stored URI: %v; want ErrNotSent", err)
	}
}

// What a release did is audited with the bank's real status, and a
// failure is told as "not executed" only when nothing reached the bank.
func TestReleaseOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		err    error
		code   string // refusal
		event  audit.Event
		detail string
	}{
		{"bank answered", http.StatusCreated, nil, "", audit.Released, "upstream status 201"},
		{"no status written", 0, nil, "", audit.Released, "upstream status 200"},
		{"nothing sent", 0, fmt.Errorf("%w: dial refused", challenge.ErrNotSent), gate.UpstreamNotSent, audit.ReleaseError, "not executed: "},
		{"no answer", 0, errors.New("connection reset"), gate.UpstreamFailed, audit.ReleaseError, "outcome unknown, not retried: "},
		{"answer cut off", http.StatusOK, errors.New("connection reset"), gate.UpstreamFailed, audit.ReleaseError, "upstream status 200, then failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			op, ref := e.g.Confirm(ctx, taro, e.hold().ID, e.code(), clientIP)
			if ref != nil {
				t.Fatal(ref)
			}
			sent := 0
			cctx, cancel := context.WithCancel(ctx)
			cancel() // the customer has gone: the release goes on
			rel, ref := e.g.Release(cctx, op, gate.Request{ClientIP: clientIP, Header: http.Header{}}, func(ctx context.Context, out gate.Outbound) (int, error) {
				sent++
				if ctx.Err() != nil {
					t.Errorf("release context ended with the customer's: %v", ctx.Err())
				}
				return tc.status, tc.err
			})
			if sent != 1 || rel.Action != gate.Forward || (ref == nil) != (tc.code == "") || (ref != nil && ref.Code != tc.code) {
				t.Fatalf("Release = %+v, %+v after %d sends; want %q", rel, ref, sent, tc.code)
			}
			if ref != nil && rel.Status != tc.status {
				t.Errorf("failed release reports status %d; want the bank's %d", rel.Status, tc.status)
			}
			last := e.audit()[len(e.audit())-1]
			if last.Event != tc.event || len(last.Detail) < len(tc.detail) || last.Detail[:len(tc.detail)] != tc.detail || last.Digest != op.Digest {
				t.Errorf("audit %+v; want %s %q…", last, tc.event, tc.detail)
			}
		})
	}
}

// The built-in revocation revokes the token and sends nothing; an
// operation of no known action is neither sent nor carried out.
func TestReleaseBuiltInAndUnknown(t *testing.T) {
	t.Parallel()
	never := func(context.Context, gate.Outbound) (int, error) {
		t.Error("sent to the bank")
		return 0, nil
	}
	e := newEnv(t)
	held, ref := e.g.HoldRevoke(ctx, taro, gate.Request{Method: http.MethodPost, URI: "/.otpgate/token/revoke", ClientIP: clientIP})
	if ref != nil {
		t.Fatal(ref)
	}
	op, ref := e.g.Confirm(ctx, taro, held.ID, e.code(), clientIP)
	if ref != nil {
		t.Fatal(ref)
	}
	if rel, ref := e.g.Release(ctx, op, gate.Request{ClientIP: clientIP}, never); ref != nil || rel.Action != gate.Revoke {
		t.Fatalf("releasing the revocation: %+v, %+v", rel, ref)
	}
	if st, err := e.tokens.Status(ctx, token.User{Service: taro.Service, ID: taro.User}); err != nil || st.State != token.Revoked {
		t.Errorf("token after the released revocation: %+v, %v", st, err)
	}
	if _, ref := e.g.Release(ctx, op, gate.Request{ClientIP: clientIP}, never); ref == nil || ref.Code != gate.EnrollmentRequired {
		t.Errorf("revoking again: %+v; want enrollment_required (no token)", ref)
	}

	for _, action := range []string{"", "transfer", "REVOKE_TOKEN"} {
		unknown := *op
		unknown.Action = action
		if rel, ref := e.g.Release(ctx, &unknown, gate.Request{ClientIP: clientIP}, never); ref == nil || ref.Code != gate.ChallengeGone || rel.Action != "" {
			t.Errorf("action %q: %+v, %+v; want refused", action, rel, ref)
		}
		if last := e.audit()[len(e.audit())-1]; last.Event != audit.ReleaseError {
			t.Errorf("action %q audited as %+v; want release_error", action, last)
		}
	}
}
