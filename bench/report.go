package main

import (
	"cmp"
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

// passRatios is, per variant, the medians over the rounds of throughput
// and of its ratio to bare in the same round, and the latency of all
// rounds together with what it adds to bare's.
type passRatios struct {
	tput, ratio float64
	p50, p99    time.Duration
	add50       time.Duration
	add99       time.Duration
	failed      int
}

func (r *report) pass(variant string) passRatios {
	var tp, ratio []float64
	p := passRatios{}
	for _, m := range r.rounds {
		v, b := m[variant], m["bare"]
		if v == nil || b == nil {
			continue
		}
		tp = append(tp, v.throughput())
		ratio = append(ratio, v.throughput()/b.throughput())
		p.failed += v.failed
	}
	p.tput, p.ratio = median(tp), median(ratio)
	if l, b := r.lat[variant], r.lat["bare"]; l != nil && b != nil {
		p.p50, p.p99 = l.q(0.5), l.q(0.99)
		p.add50, p.add99 = p.p50-b.q(0.5), p.p99-b.q(0.99)
		p.failed += l.failed
	}
	return p
}

// scaleTput is the median pass-through of s over the rounds.
func (r *report) scaleTput(s *scaleRow) float64 {
	var tp []float64
	for _, t := range s.tput {
		tp = append(tp, t.throughput())
	}
	return median(tp)
}

// scaleRatio is the median over the rounds of s's pass-through to the
// first size's in the same round.
func (r *report) scaleRatio(s *scaleRow) float64 {
	var ratio []float64
	for i, t := range s.tput {
		if first := r.scale[0].tput; i < len(first) {
			ratio = append(ratio, t.throughput()/first[i].throughput())
		}
	}
	return median(ratio)
}

func (r *report) print(w io.Writer, o options) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "## otpgate bench, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: `%s`, %d CPUs (%s), %s; load average %s at the start, %s at the end; fsync of 4 KiB p50 %s.\n",
		host, runtime.NumCPU(), cpuModel(), runtime.Version(), r.loadStart, r.loadEnd, us(r.fsync))
	fmt.Fprintf(w, "Load generator, Caddy, gateway and bank share this process and these CPUs: only ratios within the run mean much.\n\n")

	fmt.Fprintf(w, "### Pass-through: GET /menu with a bound session (%d interleaved rounds of %v at %d in flight, then %v at %d req/s for latency)\n\n",
		len(r.rounds), o.dur, o.workers, o.latDur, o.latRate)
	fmt.Fprintln(w, "| server | req/s | ratio to bare | p50 | p99 | added p50 | added p99 | failed |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, v := range []string{"bare", "otpgate", "forward_auth"} {
		p := r.pass(v)
		fmt.Fprintf(w, "| %s | %.0f | %.3f | %s | %s | %s | %s | %d |\n", v, p.tput, p.ratio, us(p.p50), us(p.p99), us(p.add50), us(p.add99), p.failed)
	}
	gate := r.pass("otpgate")
	var perRound []string
	for _, m := range r.rounds {
		if v, b := m["otpgate"], m["bare"]; v != nil && b != nil {
			perRound = append(perRound, fmt.Sprintf("%.3f", v.throughput()/b.throughput()))
		}
	}
	fmt.Fprintf(w, "\notpgate ÷ bare per round: %s.\n", strings.Join(perRound, ", "))

	fmt.Fprintf(w, "\n### Step-up cycles: hold → confirm → release, %d customers each with its own secret\n\n", r.customers)
	fmt.Fprintln(w, "| load | cycles/s | pass-through req/s just before and after | ratio | hold p50 | hold p99 | confirm p50 | confirm p99 | other answers |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
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
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.3f | %s | %s | %s | %s | %s |\n", load, c.perSecond(), c.passAround, c.perSecond()/c.passAround,
			ms(c.hold.q(0.5)), ms(c.hold.q(0.99)), ms(c.confirm.q(0.5)), ms(c.confirm.q(0.99)), other)
	}
	fmt.Fprintf(w, "\nBank ledger: %d operations released by the cycles, %d answered 200 to the load generator, %d references executed twice.\n",
		r.ledgerEntries, r.releasedSeen, r.ledgerTwice)

	if len(r.parts) > 0 {
		fmt.Fprintf(w, "\n### Where the CPU goes in the cycles with 32 in flight (`go tool pprof -top %s`)\n\n", r.profile)
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
		fmt.Fprintf(w, "\n### Scale: a database per size, each gateway started alone, then all side by side in %d interleaved rounds; %d customers of each log in and cycle at %d/s\n\n", scaleRounds, scaleSample, scaleCycles)
		fmt.Fprintln(w, "| customers | seed | DB size | start-up | pass-through req/s | ratio to first | p50 | p99 | confirm p50 | confirm p99 | hold p99 | cycles |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, s := range r.scale {
			fmt.Fprintf(w, "| %d | %v | %.1f MiB | %s | %.0f | %.3f | %s | %s | %s | %s | %s | %d |\n", s.n, s.seed.Round(100*time.Millisecond),
				float64(s.size)/(1<<20), ms(s.startup), r.scaleTput(s), r.scaleRatio(s), us(s.lat.q(0.5)), us(s.lat.q(0.99)),
				ms(s.confirm.q(0.5)), ms(s.confirm.q(0.99)), ms(s.hold.q(0.99)), s.released)
		}
	}

	fmt.Fprintln(w, "\n### Targets (issue 10)\n\n| target | measured | |\n|---|---|---|")
	fmt.Fprintf(w, "| pass-through ≥ 0.97 of bare throughput | %.3f | %s |\n", gate.ratio, verdict(gate.ratio >= 0.97))
	fmt.Fprintf(w, "| ≤ 50 µs added at p99 | %s | %s |\n", us(gate.add99), verdict(gate.add99 <= 50*time.Microsecond))
	if len(r.cycles) > 0 {
		best := slices.MaxFunc(r.cycles, func(a, b *cycles) int { return cmp.Compare(a.perSecond()/a.passAround, b.perSecond()/b.passAround) })
		fmt.Fprintf(w, "| cycles/s ≥ 0.35 of pass-through req/s | %.0f/s ÷ %.0f = %.3f | %s |\n", best.perSecond(), best.passAround, best.perSecond()/best.passAround, verdict(best.perSecond() >= 0.35*best.passAround))
		if last := r.cycles[len(r.cycles)-1]; last.rate > 0 {
			fmt.Fprintf(w, "| confirm p99 ≤ 10 ms at 2,000 cycles/s | %s at %d/s | %s |\n", ms(last.confirm.q(0.99)), last.rate,
				verdict(last.rate >= 2000 && last.confirm.q(0.99) <= 10*time.Millisecond))
		}
	}
	if len(r.scale) > 1 {
		a, b := r.scale[0], r.scale[len(r.scale)-1]
		flat := b.confirm.q(0.5) <= a.confirm.q(0.5)*3/2 && r.scaleRatio(b) >= 0.9
		fmt.Fprintf(w, "| flat cost per request, %d → %d customers | confirm p50 %s → %s, pass-through ×%.3f | %s |\n", a.n, b.n,
			ms(a.confirm.q(0.5)), ms(b.confirm.q(0.5)), r.scaleRatio(b), verdict(flat))
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
