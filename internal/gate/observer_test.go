package gate_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/gate"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) { r.mu.Lock(); r.calls = append(r.calls, s); r.mu.Unlock() }

func (r *recorder) Decided(kind, outcome string) { r.add("decided " + kind + " " + outcome) }
func (r *recorder) CodeChecked(result string)    { r.add("code " + result) }
func (r *recorder) Released(kind, outcome string, took time.Duration) {
	if took < 0 {
		outcome += " (negative duration)"
	}
	r.add("released " + kind + " " + outcome)
}

// The observer is told each decision, code check and release once, with
// the kind and outcome and never who or where.
func TestObserverToldEachDecision(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	e.g.Observe(rec)
	m, r := transfer(t)
	var calls int
	e.g.Hold(ctx, known(nil, &calls), m, r) // no session: refused
	op := e.hold()
	e.g.Confirm(ctx, taro, op.ID, e.wrong(), clientIP)
	op, ref := e.g.Confirm(ctx, taro, op.ID, e.code(), clientIP)
	if ref != nil {
		t.Fatal(ref)
	}
	e.g.Release(ctx, op, gate.Request{ClientIP: clientIP, Header: http.Header{}}, func(context.Context, gate.Outbound) (int, error) {
		return http.StatusCreated, nil
	})
	op, _ = e.g.Confirm(ctx, taro, e.hold().ID, e.code(), clientIP) // the spent step
	if op != nil {
		t.Fatal("a spent step released an operation")
	}
	want := []string{"decided transfer refused", "decided transfer held", "code invalid", "code ok", "released transfer 2xx",
		"decided transfer held", "code reused"}
	if !slices.Equal(rec.calls, want) {
		t.Errorf("observer told %q;\nwant %q", rec.calls, want)
	}
}

func TestReleaseOutcome(t *testing.T) {
	for _, tc := range []struct {
		status int
		err    error
		want   string
	}{
		{200, nil, "2xx"}, {302, nil, "3xx"}, {404, nil, "4xx"}, {503, nil, "5xx"}, {0, nil, "2xx"},
		{0, fmt.Errorf("%w: dial", challenge.ErrNotSent), "not_sent"},
		{0, errors.New("reset"), "unknown"}, {200, errors.New("cut off"), "unknown"},
	} {
		if got := gate.ReleaseOutcome(tc.status, tc.err); got != tc.want {
			t.Errorf("ReleaseOutcome(%d, %v) = %q; want %q", tc.status, tc.err, got, tc.want)
		}
	}
}
