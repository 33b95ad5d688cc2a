package challenge_test

import (
	"testing"

	"github.com/otpgate/otpgate/internal/token"
)

// The doubt travels with the paused operation: the confirm page, loaded
// later from the store, must still say that its details are not shown as
// sent.
func TestDoubtKept(t *testing.T) {
	e := newEnv(t)
	op := newOp(taro, sessTaro)
	op.Doubt, op.Fields = "conflicting_values", nil
	if req, err := e.m.Pause(ctx, op); err != nil || req != token.NeedCode {
		t.Fatalf("Pause = %v, %v; want NeedCode", req, err)
	}
	got, err := e.m.Get(ctx, op.ID, sessTaro)
	if err != nil {
		t.Fatal(err)
	}
	if got.Doubt != "conflicting_values" || len(got.Fields) != 0 {
		t.Errorf("Get: doubt %q, fields %+v; want the doubt and no fields", got.Doubt, got.Fields)
	}
}
