// Package caddyconf reads and checks values of otpgate's Caddy
// configuration: a Caddyfile option's one argument (a string, a duration or
// a number) and the durations a JSON configuration can write negative,
// which the handler, the app and the store modules share, and the
// placeholders a header identity may be read from (identity.go).
package caddyconf

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// OneArg reads the one value of the option at d's current token.
func OneArg(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: missing value", name)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s: one value expected, got extra %q", name, d.Val())
	}
	return nil
}

// DurationArg reads the option's one value as a duration (Caddy's units,
// days included), refusing a negative one.
func DurationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	var s string
	if err := OneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v < 0 {
		return d.Errf("%s %q: want a duration such as 90s, 5m, 24h or 30d", name, s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// IntArg reads a whole number that ok accepts; want says which.
func IntArg(d *caddyfile.Dispenser, dst *int, want string, ok func(int) bool) error {
	name := d.Val()
	var s string
	if err := OneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || !ok(n) {
		return d.Errf("%s %q: want %s", name, s, want)
	}
	*dst = n
	return nil
}

// CheckDurations refuses a negative duration (the Caddyfile parser cannot
// write one; JSON can), naming the option.
func CheckDurations(ds map[string]caddy.Duration) error {
	names := make([]string, 0, len(ds))
	for name := range ds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if d := ds[name]; d < 0 {
			return fmt.Errorf("otpgate: %s %s: want a positive duration such as 5m or 30d", name, time.Duration(d))
		}
	}
	return nil
}
