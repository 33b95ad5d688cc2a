package token

import (
	"strings"
	"testing"
	"time"
)

// Check refuses what New refuses, and leaves the configuration as it was
// (a caller checks at load, then hands the same value to New).
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	four := uint(4)
	for _, tc := range []struct {
		c    Config
		want string // "" accepted
	}{
		{Config{}, ""},
		{Config{Period: 30 * time.Second, Digits: 8, Algorithm: "SHA256", MaxFailures: 10}, ""},
		{Config{Period: 1500 * time.Millisecond}, "whole number of seconds"},
		{Config{Digits: 7}, "digits 7 must be 6 or 8"},
		{Config{Algorithm: "MD5"}, `algorithm "MD5"`},
		{Config{Skew: &four}, "skew 4"},
		{Config{MaxFailures: 11}, "max_failures 11"},
		{Config{MaxFailures: -1}, "max_failures -1"},
		{Config{Validity: 24 * time.Hour, RenewWindow: 48 * time.Hour}, "renew_window"},
		{Config{EnrolAddress: EnrolAddress{Mode: "phone"}}, "phone"},
	} {
		before := tc.c
		err := tc.c.Check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: Check() = %v; want %q", tc.c, err, tc.want)
		}
		if tc.c.Period != before.Period || tc.c.Digits != before.Digits || tc.c.Skew != before.Skew || tc.c.Issuer != before.Issuer {
			t.Errorf("Check changed the configuration: %+v, was %+v", tc.c, before)
		}
	}
}
