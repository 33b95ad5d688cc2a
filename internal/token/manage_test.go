package token

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
)

func TestRenew(t *testing.T) {
	expires := t0.Add(100 * day)
	for _, tc := range []struct {
		name    string
		at      time.Time
		right   bool
		wantErr error
		wantExp time.Time
	}{
		{"31 days before expiry", expires.Add(-31 * day), true, ErrRenewTooEarly, time.Time{}},
		{"31 days before, wrong code", expires.Add(-31 * day), false, ErrRenewTooEarly, time.Time{}},
		{"30 days before expiry", expires.Add(-30 * day), true, nil, expires.Add(365 * day)},
		{"10 days after expiry", expires.Add(10 * day), true, nil, expires.Add(10 * day).Add(365 * day)},
		{"in the window, wrong code", expires.Add(-day), false, ErrInvalidCode, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			u := User{"SVC", "taro"}
			secret := e.seed(u, func(r *Record) { r.Expires = expires })
			e.clk.set(tc.at)
			code := totpCode(secret, tc.at)
			if !tc.right {
				code = wrongCode(secret, tc.at)
			}
			got, err := e.m.Renew(ctx, u, code, "192.0.2.1")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Renew: %v, want %v", err, tc.wantErr)
			}
			r := e.get(u)
			if tc.wantErr == nil {
				if !got.Equal(tc.wantExp) || !r.Expires.Equal(tc.wantExp) || r.State != Active {
					t.Fatalf("expiry %v (stored %v, %s), want %v", got, r.Expires, r.State, tc.wantExp)
				}
				if n, ok := e.mail.last(u, "renewed"); !ok || !n.Expires.Equal(tc.wantExp) {
					t.Errorf("renewed notice %+v, %v", n, ok)
				}
				if ev := e.auditEvents(u); !reflect.DeepEqual(ev, []audit.Event{audit.CodeOK, audit.Renewed}) {
					t.Errorf("audit %v", ev)
				}
				return
			}
			if !r.Expires.Equal(expires) {
				t.Errorf("a refused renewal changed the expiry to %v", r.Expires)
			}
			var early *RenewTooEarlyError
			if errors.As(err, &early) {
				if !early.From.Equal(expires.Add(-30 * day)) {
					t.Errorf("renewal opens %v, want %v", early.From, expires.Add(-30*day))
				}
				// Asked too early, the code was not even looked at.
				if r.Failures != 0 || r.LastStep != 0 {
					t.Errorf("a too-early renewal counted: %+v", r)
				}
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		e := newEnv(t, Config{})
		for _, u := range []User{{"SVC", "nobody"}, {"SVC", "revoked"}} {
			if u.ID == "revoked" {
				e.seed(u, func(r *Record) { r.State = Revoked })
			}
			if _, err := e.m.Renew(ctx, u, "123456", ""); !errors.Is(err, ErrNoToken) {
				t.Errorf("%s: %v, want ErrNoToken", u.ID, err)
			}
		}
	})
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, func(r *Record) { r.State, r.Expires = Initialised, time.Time{} })
	if err := e.m.Activate(ctx, u, totpCode(secret, t0), ""); err != nil {
		t.Fatal(err)
	}
	expires := e.get(u).Expires
	if err := e.m.Revoke(ctx, u, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	r := e.get(u)
	if r.State != Revoked || r.Secret != nil || !r.Expires.Equal(expires) {
		t.Errorf("record after revoke %+v", r)
	}
	// The service requires OTP since the activation: a revoked user must enrol again.
	if req := e.requirement(u); req != NeedEnrolment {
		t.Errorf("requirement %v, want NeedEnrolment", req)
	}
	if err := e.m.Revoke(ctx, u, ""); !errors.Is(err, ErrNoToken) {
		t.Errorf("revoking twice: %v, want ErrNoToken", err)
	}
	if _, ok := e.mail.last(u, "revoked"); !ok {
		t.Error("no revoked notice")
	}
	for _, a := range e.audit() {
		if a.Event == audit.Revoked && (a.Actor != "customer" || a.ClientIP != "192.0.2.1") {
			t.Errorf("revoke audit %+v", a)
		}
	}
}

func TestResetThenIssueAgain(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	e.seed(u, func(r *Record) { r.Locked, r.LockedAt, r.Failures, r.LastStep = true, t0, 5, 4242 })
	if err := e.m.Reset(ctx, u, "hanako", "10.0.0.5"); err != nil {
		t.Fatal(err)
	}
	r := e.get(u)
	want := &Record{Service: "SVC", User: "taro", State: None, Email: "taro@mail.example.jp", LastStep: 4242}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("record after reset %+v, want %+v", r, want)
	}
	if n, ok := e.mail.last(u, "reset"); !ok || n.Email != "taro@mail.example.jp" {
		t.Errorf("reset notice %+v, %v", n, ok)
	}
	var found bool
	for _, a := range e.audit() {
		if a.Event == audit.Reset && a.User == "taro" && a.Actor == "admin:hanako" && a.ClientIP == "10.0.0.5" {
			found = true
		}
	}
	if !found {
		t.Errorf("no token_reset audit record by admin:hanako in %+v", e.audit())
	}

	e.issue(u, "taro@new-phone.example.jp", "5687")
	if st := e.status(u); st.State != Issued {
		t.Fatalf("state after issuing again %v", st.State)
	}
	// A reset in the middle of an issue kills its link too.
	if err := e.m.Reset(ctx, u, "hanako", ""); err != nil {
		t.Fatal(err)
	}
	if n := e.linkCount(); n != 0 {
		t.Errorf("%d links after a reset", n)
	}
}

func TestUnlock(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)
	bad := wrongCode(secret, t0)
	for range 5 {
		e.check(u, bad, ForOperation)
	}
	if err := e.m.Unlock(ctx, u, "hanako", "10.0.0.5"); err != nil {
		t.Fatal(err)
	}
	if r := e.get(u); r.Locked || r.Failures != 0 {
		t.Fatalf("record after unlock %+v", r)
	}
	if c := e.check(u, totpCode(secret, t0), ForOperation); c.Outcome != CodeOK {
		t.Errorf("right code after unlock: %v", c.Outcome)
	}
	n := len(e.audit())
	if err := e.m.Unlock(ctx, u, "hanako", ""); err != nil {
		t.Fatal(err)
	}
	if len(e.audit()) != n {
		t.Error("unlocking an unlocked user wrote an audit record")
	}
	if got := e.mail.events(u); !reflect.DeepEqual(got, []string{"unlocked"}) {
		t.Errorf("notices %v", got)
	}
	if ev := e.auditEvents(u); !reflect.DeepEqual(ev, []audit.Event{audit.Unlocked}) {
		t.Errorf("audit %v", ev)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, Config{})
	for _, u := range []User{{"B", "2"}, {"A", "9"}, {"B", "1"}} {
		e.seed(u, func(r *Record) { r.PINHash = "$argon2id$..." })
	}
	all, err := e.m.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []User
	for _, r := range all {
		got = append(got, User{r.Service, r.User})
		if r.Secret != nil || r.PINHash != "" {
			t.Errorf("%s/%s: secret or PIN hash listed", r.Service, r.User)
		}
	}
	if want := []User{{"A", "9"}, {"B", "1"}, {"B", "2"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	b, err := e.m.List(ctx, "B")
	if err != nil || len(b) != 2 {
		t.Errorf("List(B): %d records, %v", len(b), err)
	}
	// Get is the raw record.
	if r := e.get(User{"A", "9"}); r.Secret == nil {
		t.Error("Get blanked the sealed secret")
	}
}

func TestSweepReminders(t *testing.T) {
	e := newEnv(t, Config{})
	expires := t0.Add(100 * day)
	u := User{"SVC", "taro"}
	v := User{"SVC", "jiro"}
	secret := e.seed(u, func(r *Record) { r.Expires = expires })
	e.seed(v, func(r *Record) { r.Expires = expires })
	e.seed(User{"SVC", "old"}, func(r *Record) { r.Expires = t0.Add(-day) })

	sweep := func(want int) {
		t.Helper()
		n, err := e.m.Sweep(ctx)
		if err != nil || n != want {
			t.Fatalf("Sweep at %v = %d, %v; want %d", e.clk.now(), n, err, want)
		}
	}
	sweep(0)
	e.clk.set(expires.Add(-30*day - time.Minute))
	sweep(0)
	e.clk.set(expires.Add(-30 * day))
	e.mail.setFail("renew_reminder", errMailDown)
	sweep(2) // queued; the mail fails and waits in the outbox for its retry
	sweep(0) // queued once, whatever the mail did
	if n := e.queued(); n != 2 {
		t.Fatalf("%d notices queued after the failed mails; want the 2 reminders", n)
	}
	e.mail.setFail("renew_reminder", nil)
	e.clk.add(time.Hour) // past the back-off
	e.drain()
	if n, ok := e.mail.last(u, "renew_reminder"); !ok || !n.Expires.Equal(expires) || e.queued() != 0 {
		t.Errorf("reminder %+v, %v; %d still queued", n, ok, e.queued())
	}

	// A renewal sets a new expiry date, which gets its own reminder.
	newExp, err := e.m.Renew(ctx, u, totpCode(secret, e.clk.now()), "")
	if err != nil {
		t.Fatal(err)
	}
	sweep(0)
	e.clk.set(newExp.Add(-29 * day))
	sweep(1) // taro's new date; jiro's token has expired meanwhile
	if got := e.mail.events(u); !reflect.DeepEqual(got, []string{"renew_reminder", "renewed", "renew_reminder"}) {
		t.Errorf("notices %v", got)
	}
}
