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

// scaleRow is what one customer count measured.
type scaleRow struct {
	n         int
	seed      time.Duration
	size      int64
	startup   time.Duration
	tput, lat *measure
	cyc       *cycles
	loggedIn  int
}

// scaleSample is how many customers, spread over the key space, log in
// and take part in each scale measurement.
const scaleSample = 256

// measureScale seeds n customers into a fresh database, starts the gateway
// on it from nothing (as a restarted process opens its file), and measures
// pass-through with bound sessions and full cycles at a low fixed rate, so
// that the code check's latency is not queueing.
func measureScale(ctx context.Context, dir, key string, keyBytes []byte, n int, o options) (scaleRow, error) {
	row := scaleRow{n: n}
	db := filepath.Join(dir, fmt.Sprintf("scale-%d.db", n))
	t0 := time.Now()
	cs, err := fleet.Seed(ctx, db, keyBytes, n)
	if err != nil {
		return row, err
	}
	row.seed = time.Since(t0)
	if st, err := os.Stat(db); err == nil {
		row.size = st.Size()
	}
	logf("scale %d: seeded in %v, %d MiB", n, row.seed.Round(time.Millisecond), row.size>>20)
	if err := caddy.Stop(); err != nil {
		return row, err
	}
	if row.startup, err = load(config(dir, key, db, false)); err != nil {
		return row, err
	}
	sample := make([]*fleet.Customer, 0, scaleSample)
	for j := range scaleSample {
		sample = append(sample, cs[j*n/scaleSample])
	}
	cs = nil // a million customers are a few hundred MiB
	if err := fleet.LoginAll(ctx, sample, base(gatePort), 16); err != nil {
		return row, err
	}
	row.loggedIn = len(sample)
	row.tput, row.lat = passThrough("otpgate", base(gatePort), sample, o.workers, o.dur, o.latRate, o.latDur)
	row.cyc = runCycles(base(gatePort), sample, 16, 100, min(o.cycleDur, 3*time.Second))
	logf("scale %d: start-up %v; pass-through %.0f req/s p99 %v; confirm p50 %v p99 %v (%d cycles, other %v)", n,
		row.startup.Round(time.Millisecond), row.tput.throughput(), row.lat.q(0.99), row.cyc.confirm.q(0.5), row.cyc.confirm.q(0.99),
		row.cyc.released, row.cyc.other)
	return row, nil
}
