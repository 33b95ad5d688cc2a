package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/bench/fleet"
)

// scaleRow is one customer count and what it measured.
type scaleRow struct {
	n       int
	db      string
	seed    time.Duration
	size    int64
	startup time.Duration
	// sample are the customers, spread over the key space, who log in
	// and take part.
	sample []*fleet.Customer

	tput               []*measure // per round
	lat, hold, confirm *measure   // all rounds
	released           int
	other              map[string]int
}

const (
	// scaleSample customers of each size log in: 2 time steps a minute
	// each are enough for the cycles of every round.
	scaleSample = 1000
	// scaleRounds of pass-through and cycles per size, interleaved.
	scaleRounds = 3
	// scalePort is the first port of the gateways measured side by side.
	scalePort = 19420
	// scaleCycles per second: low, so that their latency is the code
	// check's and not queueing.
	scaleCycles = 100
)

// prepareScale seeds n customers into a fresh database, starts the gateway
// alone on it from nothing (as a restarted process opens its file) to
// time its start-up, and logs the sample in.
func prepareScale(ctx context.Context, dir, key string, keyBytes []byte, n int) (*scaleRow, error) {
	row := &scaleRow{n: n, db: filepath.Join(dir, fmt.Sprintf("scale-%d.db", n)), lat: &measure{}, hold: &measure{}, confirm: &measure{}, other: map[string]int{}}
	t0 := time.Now()
	cs, err := fleet.Seed(ctx, row.db, keyBytes, n)
	if err != nil {
		return nil, err
	}
	row.seed = time.Since(t0)
	if st, err := os.Stat(row.db); err == nil {
		row.size = st.Size()
	}
	if err := caddy.Stop(); err != nil {
		return nil, err
	}
	if row.startup, err = load(config(dir, key, []gatewaySite{{gatePort, row.db}}, false), base(gatePort)); err != nil {
		return nil, err
	}
	k := min(scaleSample, n)
	for j := range k {
		row.sample = append(row.sample, cs[j*n/k])
	}
	if err := fleet.LoginAll(ctx, row.sample, base(gatePort), 16); err != nil {
		return nil, err
	}
	fleet.Logf("scale %d: seeded in %v, %d MiB, start-up %v", n, row.seed.Round(time.Millisecond), row.size>>20, row.startup.Round(time.Millisecond))
	return row, nil
}

// measureScales runs a gateway on each row's database side by side and
// measures them in interleaved rounds: throughput and latency of GET
// /menu with bound sessions, and full cycles at scaleCycles per second.
// The sessions bound while each started alone are in its database.
func measureScales(rows []*scaleRow, dir, key string, o options) error {
	sites := make([]gatewaySite, len(rows))
	for i, row := range rows {
		sites[i] = gatewaySite{scalePort + i, row.db}
	}
	if err := caddy.Stop(); err != nil {
		return err
	}
	if _, err := load(config(dir, key, sites, false), base(scalePort)); err != nil {
		return err
	}
	for round := range scaleRounds {
		for k := range rows {
			i := (k + round) % len(rows)
			row, b := rows[i], base(scalePort+i)
			t := throughput("scale", b, row.sample, o.workers, 2*time.Second)
			row.tput = append(row.tput, t)
			latency("scale", b, row.sample, o.latRate, 2*time.Second, row.lat)
			c := runCycles(b, row.sample, 16, scaleCycles, 2*time.Second, row.hold, row.confirm)
			row.released += c.released
			for k, v := range c.other {
				row.other[k] += v
			}
			fleet.Logf("scale %d, round %d: pass-through %.0f req/s; %d cycles", row.n, round+1, t.throughput(), c.released)
		}
	}
	return nil
}
