package token

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// Issue by password alone, from every state a user's token can be in
// (SECURITY.md 28): allowed only for a user who never had a token, whose
// token the bank reset, who revoked it with a code, or whose issue is not
// activated yet; refused — and audited — otherwise, with nothing mailed or
// written. When allowed, the address registered before is told of the
// issue unless the setup mail itself goes there.
func TestIssueByState(t *testing.T) {
	t.Parallel() // argon2id is slow
	// A lock that lifts after an hour, so that "lock over" is a state too.
	e := newEnv(t, Config{LockDuration: time.Hour})
	const newAddr = "new@phone.example.jp"
	reset := func(r *Record) {
		*r = Record{Service: r.Service, User: r.User, State: None, Email: r.Email, LastStep: 42}
	}
	pending := func(st State) func(r *Record) {
		return func(r *Record) {
			r.State, r.ActivatedAt, r.Expires = st, time.Time{}, time.Time{}
			if st == Issued {
				r.Secret, r.LinkHash, r.LinkExpires = nil, "deadbeef", t0.Add(time.Hour)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		mod    func(r *Record) // nil: no record at all
		email  string          // the address issued to; default newAddr
		want   error
		notice bool // the previous address gets the "issued" notice
	}{
		{name: "never enrolled"},
		{name: "reset by the bank", mod: reset, notice: true},
		{name: "reset, same address again", mod: reset, email: "same"},
		{name: "revoked with a code", mod: func(r *Record) { r.State, r.Secret = Revoked, nil }, notice: true},
		{name: "issued, setup pending", mod: pending(Issued), notice: true},
		{name: "set up, activation pending", mod: pending(Initialised), notice: true},
		{name: "active", want: ErrActiveToken, mod: func(*Record) {}},
		{name: "active, renewal open", want: ErrActiveToken, mod: func(r *Record) { r.Expires = t0.Add(10 * day) }},
		{name: "expires this instant", want: ErrReissueNeedsToken, mod: func(r *Record) { r.Expires = t0 }},
		{name: "expired yesterday", want: ErrReissueNeedsToken, mod: func(r *Record) { r.Expires = t0.Add(-day) }},
		{name: "expired years ago", want: ErrReissueNeedsToken, mod: func(r *Record) { r.Expires = t0.Add(-3 * 365 * day) }},
		{name: "expired and locked", want: ErrLocked, mod: func(r *Record) { r.Expires, r.Locked, r.LockedAt = t0.Add(-day), true, t0 }},
		{name: "expired, lock over", want: ErrReissueNeedsToken, mod: func(r *Record) {
			r.Expires, r.Locked, r.LockedAt = t0.Add(-day), true, t0.Add(-2*time.Hour)
		}},
		{name: "active and locked", want: ErrLocked, mod: func(r *Record) { r.Locked, r.LockedAt = true, t0 }},
		{name: "activation pending and locked", want: ErrLocked, mod: func(r *Record) {
			pending(Initialised)(r)
			r.Locked, r.LockedAt = true, t0
		}},
		{name: "revoked and locked", want: ErrLocked, mod: func(r *Record) { r.State, r.Secret, r.Locked, r.LockedAt = Revoked, nil, true, t0 }},
		{name: "revoked, lock over", mod: func(r *Record) {
			r.State, r.Secret, r.Locked, r.LockedAt = Revoked, nil, true, t0.Add(-2*time.Hour)
		}, notice: true},
		{name: "unknown state", want: ErrReissueNeedsToken, mod: func(r *Record) { r.State = "suspended" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := User{"SVC", strings.NewReplacer(" ", "-", ",", "").Replace(tc.name)}
			prev := ""
			if tc.mod != nil {
				e.seed(u, tc.mod)
				prev = e.get(u).Email
			}
			email := tc.email
			switch email {
			case "":
				email = newAddr
			case "same":
				email = prev
			}
			before, auditBefore, links := e.get(u), len(e.audit()), e.linkCount()
			_, err := e.m.Issue(ctx, u, email, "2468", linkBase, "192.0.2.7")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Issue: %v, want %v", err, tc.want)
			}
			trail := e.audit()[auditBefore:]

			if tc.want != nil {
				if got := e.get(u); !reflect.DeepEqual(got, before) {
					t.Errorf("a refused issue changed the record:\n%+v\nwas\n%+v", got, before)
				}
				if n := len(e.mail.events(u)); n != 0 || e.linkCount() != links {
					t.Errorf("a refused issue mailed %d notices, links %d → %d", n, links, e.linkCount())
				}
				if len(trail) != 1 || trail[0].Event != audit.Refused || trail[0].Actor != "customer" ||
					trail[0].ClientIP != "192.0.2.7" || !strings.HasPrefix(trail[0].Detail, "token issue, state ") ||
					!strings.Contains(trail[0].Detail, tc.want.Error()) {
					t.Errorf("audit of the refusal %+v; want one refused record naming the state and the reason", trail)
				}
				return
			}

			if r := e.get(u); r.State != Issued || r.Email != email || r.Secret != nil || r.Locked {
				t.Errorf("record after issue %+v", r)
			}
			setup, ok := e.mail.last(u, "setup")
			if !ok || setup.Email != email {
				t.Errorf("setup notice %+v, %v; want one to %s", setup, ok, email)
			}
			old, ok := e.mail.last(u, "issued")
			if ok != tc.notice || (ok && (old.Email != prev || !old.At.Equal(t0))) {
				t.Errorf("issued notice %+v (sent %v); want sent %v to the previous address %q", old, ok, tc.notice, prev)
			}
			if len(trail) != 1 || trail[0].Event != audit.Issued {
				t.Fatalf("audit %+v; want one token_issued record", trail)
			}
			if named := strings.Contains(trail[0].Detail, "previous address "+MaskEmail(prev)); named != tc.notice {
				t.Errorf("audit detail %q: names the notified previous address %v, want %v", trail[0].Detail, named, tc.notice)
			}
		})
	}
}

// The notice to the previous address is part of the issue: when it cannot
// be sent, nothing is issued (the setup mail's link is never stored).
func TestIssueNoticeFailureChangesNothing(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	e.seed(u, func(r *Record) { r.State, r.Secret = Revoked, nil })
	before := e.get(u)
	e.mail.setFail("issued", errMailDown)
	_, err := e.m.Issue(ctx, u, "taro@new-phone.example.jp", "2468", linkBase, "")
	if !errors.Is(err, ErrMail) || !errors.Is(err, errMailDown) {
		t.Fatalf("Issue: %v; want ErrMail wrapping the relay's error", err)
	}
	if got := e.get(u); !reflect.DeepEqual(got, before) {
		t.Errorf("record changed:\n%+v\nwas\n%+v", got, before)
	}
	if e.linkCount() != 0 || len(e.audit()) != 0 {
		t.Errorf("links %d, audit %+v; want none", e.linkCount(), e.audit())
	}
}

// hookNotifier runs hook before recording a notice.
type hookNotifier struct {
	*fakeNotifier
	hook func(Notice)
}

func (h hookNotifier) Notify(ctx context.Context, n Notice) error {
	h.hook(n)
	return h.fakeNotifier.Notify(ctx, n)
}

// Another issue that lands while this one is mailing replaces an address
// this one did not warn: this one is refused, not committed.
func TestIssueRacingIssueRefused(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	e.seed(u, func(r *Record) { r.State, r.Secret = Revoked, nil })
	var once bool
	n := hookNotifier{fakeNotifier: e.mail, hook: func(n Notice) {
		if n.Event != "setup" || once {
			return
		}
		once = true
		err := e.db.Update(ctx, func(tx store.Tx) error {
			r, err := load(tx, u)
			if err != nil {
				return err
			}
			r.State, r.Email = Issued, "interloper@example.jp"
			return save(tx, r)
		})
		if err != nil {
			t.Error(err)
		}
	}}
	m, err := New(e.db, e.sealer, n, Config{EnrolAddress: EnrolAddress{Mode: AnyAddress}})
	if err != nil {
		t.Fatal(err)
	}
	m.Now = e.clk.now
	if _, err := m.Issue(ctx, u, "taro@new-phone.example.jp", "2468", linkBase, ""); !errors.Is(err, ErrIssueChanged) {
		t.Fatalf("Issue: %v; want ErrIssueChanged", err)
	}
	if r := e.get(u); r.Email != "interloper@example.jp" || r.LinkHash != "" {
		t.Errorf("record %+v; want the other issue's, untouched", r)
	}
	if e.linkCount() != 0 || len(e.audit()) != 0 {
		t.Errorf("links %d, audit %+v; want none", e.linkCount(), e.audit())
	}
}

// The attack of issue 6 class 4 on the lifecycle alone: a token expires;
// issuing by password is refused; a code from the token renews it; after a
// bank reset the issue works and the old address is told.
func TestReenrolExpiredNeedsTokenOrBank(t *testing.T) {
	t.Parallel() // argon2id is slow
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)
	const old = "taro@mail.example.jp"
	e.clk.add(366 * day)
	if _, err := e.m.Issue(ctx, u, "attacker@evil.example", "9371", linkBase, "198.51.100.9"); !errors.Is(err, ErrReissueNeedsToken) {
		t.Fatalf("issue over an expired token: %v; want ErrReissueNeedsToken", err)
	}
	if _, err := e.m.Renew(ctx, u, totpCode(secret, e.clk.now()), ""); err != nil {
		t.Fatalf("renew after expiry with a code: %v", err)
	}
	if st := e.status(u); st.State != Active {
		t.Fatalf("state after renewal %v", st.State)
	}
	if err := e.m.Reset(ctx, u, "hanako", ""); err != nil {
		t.Fatal(err)
	}
	e.issue(u, "taro@new-phone.example.jp", "2468")
	if n, ok := e.mail.last(u, "issued"); !ok || n.Email != old {
		t.Errorf("issued notice %+v, %v; want one to %s", n, ok, old)
	}
	want := []string{"renewed", "reset", "setup", "issued"}
	if got := e.mail.events(u); !reflect.DeepEqual(got, want) {
		t.Errorf("notices %v; want %v (nothing to the attacker)", got, want)
	}
}
