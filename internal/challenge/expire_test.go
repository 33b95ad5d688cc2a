package challenge_test

import (
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
)

// Operators see who has operations waiting (List, CountWaiting), and each
// held operation's end is audited exactly once: confirmed, cancelled, or —
// when nobody acts — expired, found by the worker (AuditExpired) or by the
// customer's next held operation, whichever comes first.
func TestHeldOperationsListedAndExpiryAudited(t *testing.T) {
	e := newEnv(t)
	confirmed, cancelled, abandoned := e.pause(), e.pause(), e.pause()
	if res := e.confirm(confirmed.ID, sessTaro, e.code()); res.Op == nil {
		t.Fatalf("right code: %+v", res)
	}
	if err := e.m.Cancel(ctx, cancelled.ID, sessTaro, clientIP); err != nil {
		t.Fatal(err)
	}

	n, complete, err := e.m.CountWaiting(ctx, 10)
	if err != nil || n != 1 || !complete {
		t.Errorf("CountWaiting = %d, %v, %v; want the one abandoned operation, all counted", n, complete, err)
	}
	for _, tc := range []struct{ service, user string }{{"", ""}, {taro.Service, ""}, {taro.Service, taro.ID}} {
		list, more, err := e.m.List(ctx, tc.service, tc.user, 10)
		if err != nil || more || len(list) != 1 || list[0].ID != abandoned.ID || list[0].User != taro.ID ||
			list[0].Kind != "transfer" || list[0].Digest != abandoned.Digest {
			t.Errorf("List(%q, %q) = %+v, %v, %v; want the abandoned operation", tc.service, tc.user, list, more, err)
		}
	}
	for _, tc := range []struct{ service, user string }{{"SVC02", ""}, {taro.Service, "ken"}} {
		if list, _, err := e.m.List(ctx, tc.service, tc.user, 10); err != nil || len(list) != 0 {
			t.Errorf("List(%q, %q) = %+v, %v; want none", tc.service, tc.user, list, err)
		}
	}

	// Before its expiry nothing is recorded; after it, once.
	if got, err := e.m.AuditExpired(ctx); err != nil || got != 0 {
		t.Fatalf("AuditExpired before the lifetime ended = %d, %v; want 0", got, err)
	}
	e.clk.add(6 * time.Minute)
	if n, _, _ := e.m.CountWaiting(ctx, 10); n != 0 {
		t.Errorf("CountWaiting after the lifetime = %d; want 0", n)
	}
	for i := range 2 {
		if got, err := e.m.AuditExpired(ctx); err != nil || got != 1-i {
			t.Fatalf("AuditExpired, round %d = %d, %v; want %d", i, got, err, 1-i)
		}
	}
	expired := e.events(audit.Expired)
	if len(expired) != 1 || expired[0].Digest != abandoned.Digest || expired[0].User != taro.ID || expired[0].Kind != "transfer" {
		t.Fatalf("expired records %+v; want one, of the abandoned operation", expired)
	}

	// An expiry the customer's next held operation finds first is
	// recorded by it, and not again by the worker.
	late := e.pause()
	e.clk.add(6 * time.Minute)
	e.pause()
	if got, err := e.m.AuditExpired(ctx); err != nil || got != 0 {
		t.Errorf("AuditExpired after the next hold recorded it = %d, %v; want 0", got, err)
	}
	expired = e.events(audit.Expired)
	if len(expired) != 2 || expired[1].Digest != late.Digest {
		t.Errorf("expired records %+v; want the late one recorded once", expired)
	}
	if got := len(e.events(audit.Cancelled)); got != 1 {
		t.Errorf("%d cancelled records; want the one the customer cancelled", got)
	}
}
