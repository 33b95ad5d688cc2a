package challenge_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/challenge"
)

func TestRedactSessionIDs(t *testing.T) {
	for _, tt := range []struct{ uri, cookie, want string }{
		{"/transfer/execute?amount=5", "", "/transfer/execute?amount=5"},
		{"/a/b;x=1/c", "", "/a/b;x=1/c"},
		{"/transfer/execute;jsessionid=S3CR3T", "", "/transfer/execute;jsessionid=REDACTED"},
		{"/transfer/execute;JSESSIONID=S3CR3T?amount=5", "", "/transfer/execute;jsessionid=REDACTED?amount=5"},
		{"/a;jsessionid=S3CR3T/execute", "", "/a;jsessionid=REDACTED/execute"},
		{"/a;x=1;JSessionId=S3CR3T;y=2/b", "", "/a;jsessionid=REDACTED/b"},
		// Encoded, once or twice, letters or separator.
		{"/execute%3Bjsessionid=S3CR3T", "", "/execute;jsessionid=REDACTED"},
		{"/execute;%6Asessionid=S3CR3T", "", "/execute;jsessionid=REDACTED"},
		{"/execute;jsession%69d=S3CR3T", "", "/execute;jsessionid=REDACTED"},
		{"/execute%253B%256Asessionid%253DS3CR3T", "", "/execute;jsessionid=REDACTED"},
		{"/execute;%u006Asessionid=S3CR3T", "", "/execute;jsessionid=REDACTED"},
		// Overlong UTF-8 of 'j' (0x6a): C1 AA.
		{"/execute;%C1%AAsessionid=S3CR3T", "", "/execute;jsessionid=REDACTED"},
		{"/execute;\xc1\xaasessionid=S3CR3T", "", "/execute;jsessionid=REDACTED"},
		// Written without a ';' before it: the whole segment goes.
		{"/jsessionid=S3CR3T/execute", "", "/;jsessionid=REDACTED/execute"},
		{"/xjsessionidS3CR3T", "", "/x;jsessionid=REDACTED"},
		// In the query.
		{"/execute?jsessionid=S3CR3T&amount=5", "", "/execute?jsessionid=REDACTED&amount=5"},
		{"/execute?amount=5&%4AsessionID=S3CR3T", "", "/execute?amount=5&jsessionid=REDACTED"},
		{"/execute?next=%2Fa%3Bjsessionid%3DS3CR3T", "", "/execute?jsessionid=REDACTED"},
		// A bank whose session cookie has another name (Tomcat reads a path
		// parameter of that name too).
		{"/login;BANKSID=S3CR3T", "BANKSID", "/login;BANKSID=REDACTED"},
		{"/login;x=1;banksid=S3CR3T/menu", "BANKSID", "/login;BANKSID=REDACTED/menu"},
		{"/login%3B%20BankSid%20%3DS3CR3T", "BANKSID", "/login;BANKSID=REDACTED"},
		{"/menu?banksid=S3CR3T&a=1", "BANKSID", "/menu?BANKSID=REDACTED&a=1"},
		{"/inside/consider;x=1", "SID", "/inside/consider;x=1"},
		{"/login;jsessionid=S3CR3T", "BANKSID", "/login;jsessionid=REDACTED"},
	} {
		got := challenge.RedactSessionIDs(tt.uri, tt.cookie)
		if got != tt.want {
			t.Errorf("RedactSessionIDs(%q, %q) = %q, want %q", tt.uri, tt.cookie, got, tt.want)
		}
		if strings.Contains(got, "S3CR3T") {
			t.Errorf("RedactSessionIDs(%q, %q) = %q keeps the session ID", tt.uri, tt.cookie, got)
		}
	}
}

// The audit trail shows a release's outcome as far as the gateway knows
// it: the bank's status, "not executed" when nothing reached the bank, and
// "outcome unknown" when the bank gave no answer.
func TestRecordReleaseOutcome(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		err    error
		event  string
		detail string
	}{
		{"answered", http.StatusOK, nil, "released", "upstream status 200"},
		{"answered error", http.StatusInternalServerError, nil, "released", "upstream status 500"},
		{"not sent", 0, errors.Join(challenge.ErrNotSent, errors.New("dial tcp: connection refused")), "release_error", "not executed: "},
		{"cut off", http.StatusOK, errors.New("copying body: EOF"), "release_error", "upstream status 200, then failed; not retried: copying body: EOF"},
		{"unknown", 0, errors.New("EOF"), "release_error", "outcome unknown, not retried: EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			op := e.pause()
			res := e.confirm(op.ID, sessTaro, e.code())
			if res.Op == nil {
				t.Fatalf("right code: %+v", res)
			}
			if err := e.m.RecordRelease(ctx, res.Op, clientIP, tt.status, tt.err); err != nil {
				t.Fatal(err)
			}
			trail := e.audit()
			last := trail[len(trail)-1]
			if string(last.Event) != tt.event || !strings.HasPrefix(last.Detail, tt.detail) {
				t.Errorf("record %s %q; want %s %q", last.Event, last.Detail, tt.event, tt.detail)
			}
		})
	}
}
