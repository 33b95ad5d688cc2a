package token

import (
	"testing"
	"time"
)

// FuzzCanIssue searches the records for one over which a new token could be
// issued with the login password alone although the customer has, or had,
// a token that only its holder or the bank may replace (issue 6, class 4).
func FuzzCanIssue(f *testing.F) {
	f.Add(string(Active), int64(-1), false, int64(0))      // expired a second ago: the attack
	f.Add(string(Active), int64(86400), false, int64(0))   // active
	f.Add(string(Expired), int64(-86400), false, int64(0)) // stored as expired
	f.Add(string(Revoked), int64(0), false, int64(0))
	f.Add(string(None), int64(0), true, int64(60)) // locked a minute ago
	f.Add("suspended", int64(0), false, int64(0))
	m, err := New(nil, nil, nil, Config{LockDuration: time.Hour, EnrolAddress: EnrolAddress{Mode: AnyAddress}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, state string, expiresIn int64, locked bool, lockedAgo int64) {
		r := &Record{Service: "S001", User: "U001", State: State(state), Locked: locked}
		if expiresIn != 0 {
			r.Expires = t0.Add(time.Duration(expiresIn) * time.Second)
			r.ActivatedAt = r.Expires.Add(-365 * 24 * time.Hour)
		}
		if locked {
			r.LockedAt = t0.Add(-time.Duration(lockedAgo) * time.Second)
		}
		if m.canIssue(r, t0) != nil {
			return
		}
		switch {
		case r.State == Active || r.State == Expired:
			t.Fatalf("issue by password allowed over a %s token expiring %v", r.State, r.Expires)
		case r.State != None && r.State != Revoked && r.State != Issued && r.State != Initialised:
			t.Fatalf("issue by password allowed in the unknown state %q", r.State)
		case locked && !r.LockedAt.Add(time.Hour).Before(t0) && !r.LockedAt.Add(time.Hour).Equal(t0):
			t.Fatalf("issue by password allowed while locked since %v", r.LockedAt)
		}
	})
}
