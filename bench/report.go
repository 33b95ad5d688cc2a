package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// passRatios is, per variant, the medians over the rounds of throughput,
// its ratio to bare in the same round, and the latency added to bare's in
// the same round at p50 and p99.
type passRatios struct {
	tput, ratio float64
	p50, p99    time.Duration
	add50       time.Duration
	add99       time.Duration
	failed      int
}

func (r *report) pass(variant string) passRatios {
	var tp, ratio []float64
	var p50, p99, a50, a99 []time.Duration
	failed := 0
	for _, m := range r.rounds {
		v, b := m[variant], m["bare"]
		if v[0] == nil || b[0] == nil {
			continue
		}
		tp = append(tp, v[0].throughput())
		ratio = append(ratio, v[0].throughput()/b[0].throughput())
		p50, p99 = append(p50, v[1].q(0.5)), append(p99, v[1].q(0.99))
		a50 = append(a50, v[1].q(0.5)-b[1].q(0.5))
		a99 = append(a99, v[1].q(0.99)-b[1].q(0.99))
		failed += v[0].failed + v[1].failed
	}
	return passRatios{median(tp), median(ratio), median(p50), median(p99), median(a50), median(a99), failed}
}

func (r *report) print(w io.Writer, o options) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "## otpgate bench, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: `%s`, %d CPUs (%s), %s; load average %s at the start, %s at the end; fsync of 4 KiB p50 %s.\n",
		host, runtime.NumCPU(), cpuModel(), runtime.Version(), r.loadStart, r.loadEnd, us(r.fsync))
	fmt.Fprintf(w, "Load generator, Caddy, gateway and bank share this process and these CPUs: only ratios within the run mean much.\n\n")

	fmt.Fprintf(w, "### Pass-through: GET /menu with a bound session (%d interleaved rounds, %v at %d in flight; latency at %d req/s)\n\n",
		len(r.rounds), o.dur, o.workers, o.latRate)
	fmt.Fprintln(w, "| server | req/s | ratio to bare | p50 | p99 | added p50 | added p99 | failed |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, v := range []string{"bare", "otpgate", "forward_auth"} {
		p := r.pass(v)
		fmt.Fprintf(w, "| %s | %.0f | %.3f | %s | %s | %s | %s | %d |\n", v, p.tput, p.ratio, us(p.p50), us(p.p99), us(p.add50), us(p.add99), p.failed)
	}
	gate := r.pass("otpgate")
	var perRound []string
	for _, m := range r.rounds {
		if v, b := m["otpgate"], m["bare"]; v[0] != nil && b[0] != nil {
			perRound = append(perRound, fmt.Sprintf("%.3f", v[0].throughput()/b[0].throughput()))
		}
	}
	fmt.Fprintf(w, "\notpgate ÷ bare per round: %s.\n", strings.Join(perRound, ", "))

	fmt.Fprintf(w, "\n### Step-up cycles: hold → confirm → release, %d customers each with its own secret\n\n", r.customers)
	fmt.Fprintln(w, "| load | cycles/s | ÷ otpgate pass-through req/s | hold p50 | hold p99 | confirm p50 | confirm p99 | other answers |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|")
	for _, c := range r.cycles {
		load := fmt.Sprintf("%d in flight", c.workers)
		if c.rate > 0 {
			load = fmt.Sprintf("fixed %d/s", c.rate)
		}
		if c.ranOut {
			load += " (ran out of customers with a time step left)"
		}
		other := "none"
		if len(c.other) > 0 {
			other = fmt.Sprint(c.other)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.3f | %s | %s | %s | %s | %s |\n", load, c.perSecond(), c.perSecond()/gate.tput,
			ms(c.hold.q(0.5)), ms(c.hold.q(0.99)), ms(c.confirm.q(0.5)), ms(c.confirm.q(0.99)), other)
	}
	fmt.Fprintf(w, "\nBank ledger: %d operations released by the cycles, %d answered 200 to the load generator, %d references executed twice.\n",
		r.ledgerEntries, r.releasedSeen, r.ledgerTwice)

	if len(r.parts) > 0 {
		fmt.Fprintf(w, "\n### Where the CPU goes in the cycle runs (`go tool pprof -top %s`)\n\n", r.profile)
		fmt.Fprintln(w, "Share of all CPU samples whose stack passes through the part (parts nest, so they overlap).")
		fmt.Fprintln(w, "\n| part | CPU % |\n|---|---:|")
		for i, p := range costParts {
			fmt.Fprintf(w, "| %s | %.1f |\n", p.name, r.parts[i])
		}
		fmt.Fprintln(w, "\nTop functions by own time:\n\n| function | flat % | cum % |\n|---|---:|---:|")
		for _, e := range r.top {
			fmt.Fprintf(w, "| `%s` | %.1f | %.1f |\n", e.name, e.flat, e.cum)
		}
	}

	if len(r.scale) > 0 {
		fmt.Fprintf(w, "\n### Scale: a fresh database per size; %d customers spread over it log in and cycle at 100/s\n\n", scaleSample)
		fmt.Fprintln(w, "| customers | seed | DB size | start-up | pass-through req/s | ratio to first | p50 | p99 | confirm p50 | confirm p99 | hold p99 |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		first := r.scale[0].tput.throughput()
		for _, s := range r.scale {
			fmt.Fprintf(w, "| %d | %v | %.1f MiB | %s | %.0f | %.3f | %s | %s | %s | %s | %s |\n", s.n, s.seed.Round(100*time.Millisecond),
				float64(s.size)/(1<<20), ms(s.startup), s.tput.throughput(), s.tput.throughput()/first, us(s.lat.q(0.5)), us(s.lat.q(0.99)),
				ms(s.cyc.confirm.q(0.5)), ms(s.cyc.confirm.q(0.99)), ms(s.cyc.hold.q(0.99)))
		}
	}

	fmt.Fprintln(w, "\n### Targets (issue 10)\n\n| target | measured | |\n|---|---|---|")
	fmt.Fprintf(w, "| pass-through ≥ 0.97 of bare throughput | %.3f | %s |\n", gate.ratio, verdict(gate.ratio >= 0.97))
	fmt.Fprintf(w, "| ≤ 50 µs added at p99 | %s | %s |\n", us(gate.add99), verdict(gate.add99 <= 50*time.Microsecond))
	if len(r.cycles) > 0 {
		best := slices.MaxFunc(r.cycles, func(a, b *cycles) int { return int(a.perSecond() - b.perSecond()) })
		fmt.Fprintf(w, "| cycles/s ≥ 0.35 of pass-through req/s | %.0f/s = %.3f | %s |\n", best.perSecond(), best.perSecond()/gate.tput, verdict(best.perSecond() >= 0.35*gate.tput))
		if last := r.cycles[len(r.cycles)-1]; last.rate > 0 {
			fmt.Fprintf(w, "| confirm p99 ≤ 10 ms at 2,000 cycles/s | %s at %d/s | %s |\n", ms(last.confirm.q(0.99)), last.rate,
				verdict(last.rate >= 2000 && last.confirm.q(0.99) <= 10*time.Millisecond))
		}
	}
	if len(r.scale) > 1 {
		a, b := r.scale[0], r.scale[len(r.scale)-1]
		flat := b.cyc.confirm.q(0.5) <= a.cyc.confirm.q(0.5)*3/2 && b.tput.throughput() >= 0.8*a.tput.throughput()
		fmt.Fprintf(w, "| flat cost per request, %d → %d customers | confirm p50 %s → %s, pass-through ×%.2f | %s |\n", a.n, b.n,
			ms(a.cyc.confirm.q(0.5)), ms(b.cyc.confirm.q(0.5)), b.tput.throughput()/a.tput.throughput(), verdict(flat))
		if b.n >= 1000000 {
			fmt.Fprintf(w, "| start-up ≤ 1 s at 1M | %s | %s |\n", ms(b.startup), verdict(b.startup <= time.Second))
		} else {
			fmt.Fprintf(w, "| start-up ≤ 1 s at 1M | not measured (-scale 1000000); %s at %d | |\n", ms(b.startup), b.n)
		}
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	fmt.Fprintf(w, "\nWall time %v; seeding %d customers took %v, logging them in through the gateway %v; the main database grew to %.1f MiB.\n",
		time.Since(r.started).Round(time.Second), r.customers, r.seed.Round(100*time.Millisecond), r.login.Round(100*time.Millisecond), float64(r.dbSize)/(1<<20))
}
