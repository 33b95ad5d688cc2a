package store

import (
	"testing"
	"time"
)

func TestTimeCursor(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Unix(-1, 0), ""},
		{time.Time{}, ""},
		{time.Unix(0, 0), "0000000000000000"},
		{time.Unix(0, 255), "00000000000000ff"},
		{time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC), "18a23004ba3da000"},
		{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "g"}, // past int64 nanoseconds: after every hex key
	}
	for _, tc := range tests {
		if got := TimeCursor(tc.t); got != tc.want {
			t.Errorf("TimeCursor(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// plainTx is a Tx that cannot expire keys (as token's test double).
type plainTx struct{ Tx }

func TestPutTTLNeedsAnExpiringTx(t *testing.T) {
	if err := PutTTL(plainTx{}, Pending, "k", []byte("v"), time.Minute); err == nil {
		t.Error("PutTTL on a Tx without PutTTL succeeded")
	}
}
