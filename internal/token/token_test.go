package token

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// The tests' own TOTP must itself be right, or every test below proves
// nothing: RFC 6238 Appendix B, SHA-1, 8 digits, 30-second steps.
func TestIndependentTOTPMatchesRFC6238Vectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, tc := range []struct {
		unix int64
		want string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	} {
		if got := rfc6238(secret, time.Unix(tc.unix, 0), 30, 8); got != tc.want {
			t.Errorf("T=%d: got %s, want %s", tc.unix, got, tc.want)
		}
	}
}

func TestCheckWindow(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		name   string
		offset time.Duration
		want   Outcome
	}{
		{"current step", 0, CodeOK},
		{"previous step", -time.Minute, CodeOK},
		{"next step", time.Minute, CodeOK},
		{"two steps ago", -2 * time.Minute, CodeInvalid},
		{"two steps ahead", 2 * time.Minute, CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := User{"SVC", tc.name}
			secret := e.seed(u, nil)
			c := e.check(u, totpCode(secret, t0.Add(tc.offset)), ForOperation)
			if c.Outcome != tc.want {
				t.Fatalf("outcome %v, want %v", c.Outcome, tc.want)
			}
			if tc.want == CodeOK && c.Step != t0.Add(tc.offset).Unix()/60 {
				t.Errorf("step %d, want %d", c.Step, t0.Add(tc.offset).Unix()/60)
			}
		})
	}
}

func TestCheckReplay(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)

	if c := e.check(u, totpCode(secret, t0), ForOperation); c.Outcome != CodeOK {
		t.Fatalf("first use: %v", c.Outcome)
	}
	if c := e.check(u, totpCode(secret, t0), ForOperation); c.Outcome != CodeReused {
		t.Fatalf("same step twice: %v, want CodeReused", c.Outcome)
	}
	// A newer step spends every older one: an old code seen over a
	// shoulder is worthless after the customer used a newer one.
	if c := e.check(u, totpCode(secret, t0.Add(time.Minute)), ForOperation); c.Outcome != CodeOK {
		t.Fatalf("next step: %v", c.Outcome)
	}
	if c := e.check(u, totpCode(secret, t0.Add(-time.Minute)), ForOperation); c.Outcome != CodeReused {
		t.Fatalf("older step after a newer one: %v, want CodeReused", c.Outcome)
	}
	if r := e.get(u); r.Failures != 0 {
		t.Errorf("a reused code counted as a failure: %d", r.Failures)
	}
}

func TestCheckLocksAfterFiveFailuresAndSurvivesRestart(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)
	bad := wrongCode(secret, t0)

	for i := 1; i <= 4; i++ {
		c := e.check(u, bad, ForOperation)
		if c.Outcome != CodeInvalid || c.AttemptsLeft != 5-i || c.JustLocked {
			t.Fatalf("failure %d: %+v", i, c)
		}
	}
	c := e.check(u, bad, ForOperation)
	if c.Outcome != CodeLocked || !c.JustLocked || c.AttemptsLeft != 0 {
		t.Fatalf("5th failure: %+v, want CodeLocked and JustLocked", c)
	}

	e.reopen()
	if st := e.status(u); !st.Locked {
		t.Fatal("lock lost on reopening the database")
	}
	// The locked user's right code is refused, and spends nothing.
	c = e.check(u, totpCode(secret, t0), ForOperation)
	if c.Outcome != CodeLocked || c.JustLocked {
		t.Fatalf("right code while locked: %+v", c)
	}
	if r := e.get(u); r.LastStep != 0 {
		t.Errorf("a locked check spent step %d", r.LastStep)
	}
	if req := e.requirement(u); req != IsLocked {
		t.Errorf("requirement %v, want IsLocked", req)
	}
}

func TestCheckRightCodeResetsFailures(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)
	bad := wrongCode(secret, t0)
	for range 4 {
		e.check(u, bad, ForOperation)
	}
	if c := e.check(u, totpCode(secret, t0), ForOperation); c.Outcome != CodeOK || c.AttemptsLeft != 5 {
		t.Fatalf("right code: %+v", c)
	}
	if r := e.get(u); r.Failures != 0 {
		t.Fatalf("failures %d after a right code", r.Failures)
	}
	// Counting starts over: four more failures do not lock.
	for range 4 {
		if c := e.check(u, bad, ForOperation); c.Outcome != CodeInvalid {
			t.Fatalf("outcome %v, want CodeInvalid", c.Outcome)
		}
	}
}

func TestCheckLockDuration(t *testing.T) {
	e := newEnv(t, Config{LockDuration: 15 * time.Minute})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)
	bad := wrongCode(secret, t0)
	for range 5 {
		e.check(u, bad, ForOperation)
	}
	e.clk.add(14 * time.Minute)
	if c := e.check(u, totpCode(secret, e.clk.now()), ForOperation); c.Outcome != CodeLocked {
		t.Fatalf("before the lock ran out: %v, want CodeLocked", c.Outcome)
	}
	e.clk.add(2 * time.Minute)
	if st := e.status(u); st.Locked {
		t.Fatal("status still locked after LockDuration")
	}
	if c := e.check(u, totpCode(secret, e.clk.now()), ForOperation); c.Outcome != CodeOK {
		t.Fatalf("after the lock ran out: %v, want CodeOK", c.Outcome)
	}
	if r := e.get(u); r.Locked || r.Failures != 0 {
		t.Errorf("record still locked: %+v", r)
	}
}

func TestCheckPurposeAndNoToken(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		name  string
		state State
		exp   time.Duration // expiry relative to now
		p     Purpose
		want  Outcome
	}{
		{"no token", None, 0, ForOperation, CodeNoToken},
		{"issued only", Issued, 0, ForOperation, CodeNoToken},
		{"initialised, operation", Initialised, 0, ForOperation, CodeNoToken},
		{"initialised, activation", Initialised, 0, ForActivation, CodeOK},
		{"active, activation", Active, day, ForActivation, CodeNoToken},
		{"active, renewal", Active, day, ForRenewal, CodeOK},
		{"expired, operation", Active, -day, ForOperation, CodeNoToken},
		{"expired, renewal", Active, -day, ForRenewal, CodeOK},
		{"revoked", Revoked, day, ForOperation, CodeNoToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := User{"SVC", tc.name}
			var secret []byte
			if tc.state != None {
				secret = e.seed(u, func(r *Record) {
					r.State = tc.state
					if tc.exp != 0 {
						r.Expires = t0.Add(tc.exp)
					}
				})
			}
			c := e.check(u, totpCode(secret, t0), tc.p)
			if c.Outcome != tc.want {
				t.Fatalf("outcome %v, want %v", c.Outcome, tc.want)
			}
			if tc.want == CodeNoToken {
				if r := e.get(u); r.Failures != 0 || r.LastStep != 0 {
					t.Errorf("a refused check changed the record: %+v", r)
				}
			}
		})
	}
}

// Timing is not measured (too noisy for a test), but a check that cannot
// succeed must do the same HMAC work as a real one: without fakeCheck it
// would allocate next to nothing.
func TestCheckWithoutTokenDoesFakeWork(t *testing.T) {
	e := newEnv(t, Config{})
	tx := memTx{}
	locked := User{"SVC", "locked"}
	sealed, _ := e.sealer.Seal(make([]byte, 20), []byte(locked.key()))
	if err := save(tx, &Record{Service: "SVC", User: "locked", State: Active, Secret: sealed, Expires: t0.Add(day), Locked: true}); err != nil {
		t.Fatal(err)
	}
	work := testing.AllocsPerRun(20, func() { e.m.match(fakeSecret, "123456", t0) })
	for _, u := range []User{{"SVC", "nobody"}, locked} {
		got := testing.AllocsPerRun(20, func() {
			if _, err := e.m.CheckInTx(tx, u, "123456", ForOperation, t0); err != nil {
				t.Fatal(err)
			}
		})
		if got < work {
			t.Errorf("%s: check allocates %.0f, a real comparison %.0f: fake work skipped", u.ID, got, work)
		}
	}
}

// One code submitted many times at once (double clicks, two tabs, an
// attacker racing the customer) releases exactly one operation.
func TestCheckConcurrentSameCode(t *testing.T) {
	e := newEnv(t, Config{})
	u := User{"SVC", "taro"}
	secret := e.seed(u, nil)
	code := totpCode(secret, t0)

	const n = 20
	outcomes := make([]Outcome, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			err := e.db.Update(context.Background(), func(tx store.Tx) error {
				c, err := e.m.CheckInTx(tx, u, code, ForOperation, e.clk.now())
				outcomes[i] = c.Outcome // set on every run: Batch may run fn twice
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, o := range outcomes {
		switch o {
		case CodeOK:
			ok++
		case CodeReused:
		default:
			t.Errorf("unexpected outcome %v", o)
		}
	}
	if ok != 1 {
		t.Fatalf("%d checks accepted one code, want exactly 1", ok)
	}
}

func TestRequirement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		setup func(e *env, u User)
		want  Requirement
	}{
		{"service without OTP, no token", Config{}, nil, PassLegacy},
		{"require all", Config{RequireAll: true}, nil, NeedEnrolment},
		{"required service", Config{RequireServices: []string{"SVC"}}, nil, NeedEnrolment},
		{"other service listed", Config{RequireServices: []string{"OTHER"}}, nil, PassLegacy},
		{"bank switched it on", Config{}, func(e *env, u User) {
			if err := e.m.RequireOTP(context.Background(), u.Service, "hanako"); err != nil {
				t.Fatal(err)
			}
		}, NeedEnrolment},
		{"colleague activated", Config{}, func(e *env, u User) {
			colleague := User{u.Service, "boss"}
			secret := e.seed(colleague, func(r *Record) { r.State = Initialised; r.Expires = time.Time{} })
			if err := e.m.Activate(context.Background(), colleague, totpCode(secret, t0), "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
		}, NeedEnrolment},
		{"active token", Config{}, func(e *env, u User) { e.seed(u, nil) }, NeedCode},
		{"expired token", Config{}, func(e *env, u User) {
			e.seed(u, func(r *Record) { r.Expires = t0.Add(-time.Second) })
		}, NeedRenewal},
		{"locked token", Config{}, func(e *env, u User) {
			e.seed(u, func(r *Record) { r.Locked, r.LockedAt, r.Failures = true, t0, 5 })
		}, IsLocked},
		{"set up but not activated, legacy service", Config{}, func(e *env, u User) {
			e.seed(u, func(r *Record) { r.State = Initialised })
		}, PassLegacy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			u := User{"SVC", "taro"}
			if tc.setup != nil {
				tc.setup(e, u)
			}
			if got := e.requirement(u); got != tc.want {
				t.Fatalf("requirement %v, want %v", got, tc.want)
			}
		})
	}
}

// IDs are joined into one key with a control character; an ID holding one
// must not reach another user's record.
func TestInvalidUserRefused(t *testing.T) {
	e := newEnv(t, Config{})
	for _, u := range []User{{"", "x"}, {"x", ""}, {"A\x1fB", "C"}, {"A", "B\nC"}, {"A", "\xff"}} {
		err := e.db.View(context.Background(), func(tx store.Tx) error {
			_, err := e.m.RequirementInTx(tx, u, t0)
			return err
		})
		if !errors.Is(err, ErrInvalidUser) {
			t.Errorf("RequirementInTx(%q): %v, want ErrInvalidUser", u, err)
		}
		if _, err := e.m.Get(context.Background(), u); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Get(%q): %v, want ErrInvalidUser", u, err)
		}
	}
}
