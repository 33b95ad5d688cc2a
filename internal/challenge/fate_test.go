package challenge_test

import (
	"errors"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/challenge"
)

// A gone operation tells the session that held it what became of it, so a
// revisited confirm page can say whether money moved; any other session
// learns nothing; and the fate is forgotten a day after the operation's
// expiry.
func TestGoneSaysWhatBecameOfIt(t *testing.T) {
	e := newEnv(t)
	fate := func(id, sess string) challenge.Fate {
		t.Helper()
		_, err := e.m.Get(ctx, id, sess)
		if !errors.Is(err, challenge.ErrGone) {
			t.Fatalf("Get of a gone operation: %v; want ErrGone", err)
		}
		return challenge.FateOf(err)
	}

	cancelled := e.pause()
	if err := e.m.Cancel(ctx, cancelled.ID, sessTaro, clientIP); err != nil {
		t.Fatal(err)
	}
	done := e.pause()
	if res := e.confirm(done.ID, sessTaro, e.code()); res.Op == nil {
		t.Fatalf("right code: %+v", res)
	}
	notSent := e.pause()
	e.clk.add(time.Minute)
	if res := e.confirm(notSent.ID, sessTaro, e.code()); res.Op == nil {
		t.Fatalf("right code: %+v", res)
	}
	if err := e.m.RecordRelease(ctx, notSent, clientIP, 0, challenge.ErrNotSent); err != nil {
		t.Fatal(err)
	}
	// Six held: the caps keep five, so the first is discarded for the newest.
	var held []*challenge.Operation
	for range challenge.DefaultMaxOps + 1 {
		held = append(held, e.pause())
	}
	discarded := held[0]

	for _, tc := range []struct {
		name string
		id   string
		want challenge.Fate
	}{
		{"cancelled", cancelled.ID, challenge.FateCancelled},
		{"confirmed", done.ID, challenge.FateDone},
		{"confirmed, nothing reached the bank", notSent.ID, challenge.FateNotSent},
		{"discarded for a newer one", discarded.ID, challenge.FateDiscarded},
	} {
		if got := fate(tc.id, sessTaro); got != tc.want {
			t.Errorf("%s: fate %q; want %q", tc.name, got, tc.want)
		}
		if got := fate(tc.id, sessOther); got != challenge.FateUnknown {
			t.Errorf("%s: another session is told %q; want nothing", tc.name, got)
		}
	}
	if _, err := e.m.Confirm(ctx, cancelled.ID, sessTaro, e.code(), clientIP); challenge.FateOf(err) != challenge.FateCancelled {
		t.Errorf("Confirm of a cancelled operation: %v; want its fate", err)
	}

	// Past their lifetime, the held ones expired; the discarded one too,
	// as it would have.
	e.clk.add(6 * time.Minute)
	for _, op := range held {
		if got := fate(op.ID, sessTaro); got != challenge.FateExpired {
			t.Errorf("held past its lifetime: fate %q; want expired", got)
		}
	}
	if got := fate(done.ID, sessTaro); got != challenge.FateDone {
		t.Errorf("confirmed, after its lifetime: fate %q; want done", got)
	}
	e.clk.add(challenge.FateMemory)
	if got := fate(done.ID, sessTaro); got != challenge.FateUnknown {
		t.Errorf("a day after its expiry: fate %q; want it forgotten", got)
	}
}
