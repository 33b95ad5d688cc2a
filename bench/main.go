// Command bench measures what otpgate costs a bank's customers, with one
// command and on loopback only:
//
//	go run ./bench            # about 7 minutes on 2 cores; prints a markdown table
//	go run ./bench -quick     # a smoke run of every phase, under a minute
//
// In one process it starts the demo bank (behind package fleet's login for
// many customers), a minimal forward_auth endpoint and one Caddy with three
// servers in front of the same bank: bare reverse_proxy, otpgate with the
// demo policy of Caddyfile.example, and forward_auth. It seeds customers
// straight into the gateway's database, logs each in through the gateway,
// and drives the load with vegeta as a library:
//
//   - pass-through: GET /menu with bound sessions through the three
//     servers in interleaved rounds; throughput and added latency are
//     ratios to bare reverse_proxy in the same run;
//   - step-up cycles (hold, confirm, release) with 32 and 128 customers in
//     flight and at a fixed rate, each between two short pass-through
//     measurements (its baseline), the first under a CPU profile that is
//     taken apart;
//   - scale: start-up and database size with 1k, 100k and 1M customers,
//     each started alone; then code-check latency and pass-through with
//     all three side by side in interleaved rounds.
//
// Every attack is bounded in time and the whole run in -budget; the
// temporary folder with the databases is removed at the end. bench/README.md
// carries the latest table.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/otpgate/otpgate"
	"github.com/otpgate/otpgate/bench/fleet"
	_ "github.com/otpgate/otpgate/caddymodule"
	"github.com/otpgate/otpgate/internal/demobank"
)

// Loopback ports: 19400-19499.
const (
	adminPort = 19400
	gatePort  = 19401
	barePort  = 19402
	fwdPort   = 19403
	bankPort  = 19410
	authPort  = 19411
)

type options struct {
	customers int
	scale     []int
	rounds    int
	dur       time.Duration
	workers   uint64
	latRate   int
	latDur    time.Duration
	cycleDur  time.Duration
	cycleRate int
	budget    time.Duration
	profile   string
}

func main() {
	var o options
	var scale string
	quick := flag.Bool("quick", false, "a smoke run of every phase with small numbers (under a minute)")
	flag.IntVar(&o.customers, "customers", 30000, "customers seeded and logged in for pass-through and cycles (each may spend 2 time steps a minute)")
	flag.StringVar(&scale, "scale", "1000,100000,1000000", "customer counts for the scale measurements, comma-separated (a count is skipped when the budget left cannot seed it)")
	flag.IntVar(&o.rounds, "rounds", 10, "interleaved rounds of the pass-through comparison")
	flag.DurationVar(&o.dur, "dur", 2*time.Second, "length of each throughput attack")
	flag.Uint64Var(&o.workers, "workers", 16, "requests in flight in the pass-through throughput attacks")
	flag.IntVar(&o.latRate, "lat-rate", 400, "requests per second of the pass-through latency attacks (below saturation)")
	flag.DurationVar(&o.latDur, "lat-dur", 2*time.Second, "length of each latency attack")
	flag.DurationVar(&o.cycleDur, "cycle-dur", 10*time.Second, "length of each step-up cycle attack")
	flag.IntVar(&o.cycleRate, "cycle-rate", 2000, "cycles per second of the fixed-rate cycle attack (lowered to 70% of what 32 in flight reached)")
	flag.DurationVar(&o.budget, "budget", 9*time.Minute, "no phase starts after this much time")
	flag.StringVar(&o.profile, "profile", "", "write the step-up CPU profile here (default: a temporary file, kept and named in the output)")
	flag.Parse()
	if *quick {
		o.customers, scale, o.rounds, o.dur, o.latDur, o.cycleDur = 2000, "1000", 1, time.Second, time.Second, 2*time.Second
	}
	for _, s := range strings.Split(scale, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 300 {
			fmt.Fprintf(os.Stderr, "bench: -scale %q: want customer counts of at least 300\n", s)
			os.Exit(2)
		}
		o.scale = append(o.scale, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// report is everything measured, printed at the end.
type report struct {
	started            time.Time
	loadStart, loadEnd string
	fsync              time.Duration
	customers          int
	seed, login        time.Duration
	dbSize             int64
	rounds             []map[string]*measure // variant -> throughput
	lat                map[string]*measure   // variant -> latency, all rounds
	cycles             []*cycles
	profile            string
	parts              []float64
	top                []profileEntry
	ledgerTwice        int
	ledgerEntries      int
	releasedSeen       int
	scale              []*scaleRow
	notes              []string
}

func run(o options) error {
	r := &report{started: time.Now(), loadStart: fleet.Loadavg(), customers: o.customers}
	deadline := r.started.Add(o.budget)
	dir, err := os.MkdirTemp("", "otpgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)

	bank := demobank.New()
	stopBank, err := serve(bankPort, fleet.Bank(bank))
	if err != nil {
		return err
	}
	defer stopBank()
	// The minimal forward_auth endpoint: every request is allowed, as
	// an authentication service answers for a valid session.
	stopAuth, err := serve(authPort, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Auth-User", "S001/U001")
		w.WriteHeader(http.StatusOK)
	}))
	if err != nil {
		return err
	}
	defer stopAuth()
	// The example names the sample bank table relative to the repository.
	if err := os.WriteFile(filepath.Join(dir, "banks.csv"), otpgate.BankTableSample, 0o600); err != nil {
		return err
	}
	r.fsync = fsyncLatency(dir)
	fleet.Logf("fsync of 4 KiB on the temporary folder: p50 %v", r.fsync)

	ctx := context.Background()
	db := filepath.Join(dir, "main.db")
	t0 := time.Now()
	cs, err := fleet.Seed(ctx, db, keyBytes, o.customers)
	if err != nil {
		return err
	}
	r.seed = time.Since(t0)
	fleet.Logf("seeded %d customers in %v", o.customers, r.seed.Round(time.Millisecond))
	if _, err := load(config(dir, key, []gatewaySite{{gatePort, db}}, true), base(gatePort)); err != nil {
		return err
	}
	defer caddy.Stop()
	gw, bare, fwd := base(gatePort), base(barePort), base(fwdPort)
	t0 = time.Now()
	if err := fleet.LoginAll(ctx, cs, gw, 16); err != nil {
		return err
	}
	r.login = time.Since(t0)
	fleet.Logf("logged in %d customers through the gateway in %v", o.customers, r.login.Round(time.Millisecond))
	menu := cs[:min(len(cs), 1000)]

	// Pass-through, interleaved: each round starts with another variant, so
	// a burst of other work on the machine falls on every variant alike.
	variants := []struct{ name, base string }{{"bare", bare}, {"otpgate", gw}, {"forward_auth", fwd}}
	r.lat = map[string]*measure{}
	for _, v := range variants {
		r.lat[v.name] = &measure{}
	}
	for round := range o.rounds {
		if time.Now().After(deadline) {
			r.notes = append(r.notes, fmt.Sprintf("pass-through: budget spent after %d rounds", round))
			break
		}
		m := map[string]*measure{}
		for k := range variants {
			v := variants[(k+round)%len(variants)]
			m[v.name] = throughput(v.name, v.base, menu, o.workers, o.dur)
			latency(v.name, v.base, menu, o.latRate, o.latDur, r.lat[v.name])
			fleet.Logf("round %d %-12s %8.0f req/s (failed %d)", round+1, v.name, m[v.name].throughput(), m[v.name].failed)
		}
		r.rounds = append(r.rounds, m)
	}

	// Step-up cycles under a CPU profile, each run between two short
	// pass-through measurements of the gateway: its baseline.
	around := func(run func() *cycles) *cycles {
		before := throughput("otpgate", gw, menu, o.workers, 2*time.Second).throughput()
		c := run()
		c.passAround = (before + throughput("otpgate", gw, menu, o.workers, 2*time.Second).throughput()) / 2
		return c
	}
	if time.Now().Before(deadline) {
		profPath := o.profile
		if profPath == "" {
			f, err := os.CreateTemp("", "otpgate-bench-cycles-*.pprof")
			if err != nil {
				return err
			}
			f.Close()
			profPath = f.Name()
		}
		f, err := os.Create(profPath)
		if err != nil {
			return err
		}
		for _, w := range []uint64{32, 128} {
			c := around(func() *cycles {
				// The profile is of the run with 32 in flight.
				if w == 32 {
					if err := pprof.StartCPUProfile(f); err != nil {
						fleet.Logf("no CPU profile: %v", err)
					}
					defer pprof.StopCPUProfile()
				}
				return runCycles(gw, cs, w, 0, o.cycleDur, nil, nil)
			})
			r.cycles = append(r.cycles, c)
			fleet.Logf("cycles, %d in flight: %.0f/s over %v (pass-through around it %.0f req/s); hold p50 %v p99 %v; confirm p50 %v p99 %v; other %v",
				w, c.perSecond(), c.dur.Round(time.Millisecond), c.passAround, c.hold.q(0.5), c.hold.q(0.99), c.confirm.q(0.5), c.confirm.q(0.99), c.other)
		}
		f.Close()
		r.profile = profPath
		if ts, err := readTraces(profPath); err != nil {
			r.notes = append(r.notes, "profile not read: "+err.Error())
		} else {
			for _, p := range costParts {
				r.parts = append(r.parts, partShare(ts, p))
			}
		}
		if es, err := readProfile(profPath); err == nil {
			r.top = es[:min(len(es), 15)]
		}
		rate := min(o.cycleRate, int(0.7*r.cycles[0].perSecond()))
		if rate > 0 && time.Now().Before(deadline) {
			c := around(func() *cycles { return runCycles(gw, cs, 64, rate, o.cycleDur, nil, nil) })
			r.cycles = append(r.cycles, c)
			fleet.Logf("cycles at %d/s: %.0f/s; confirm p50 %v p99 %v; other %v", rate, c.perSecond(), c.confirm.q(0.5), c.confirm.q(0.99), c.other)
		}
	}
	for _, c := range r.cycles {
		r.releasedSeen += c.released
	}
	refs := map[string]int{}
	for _, e := range bank.Ledger() {
		if ref := e.Params["to_bank"]; strings.HasPrefix(ref, "B") {
			refs[ref]++
			r.ledgerEntries++
		}
	}
	for _, n := range refs {
		if n > 1 {
			r.ledgerTwice++
		}
	}
	if st, err := os.Stat(db); err == nil {
		r.dbSize = st.Size()
	}

	// Scale: a fresh database per size, each started alone, then measured
	// side by side in interleaved rounds.
	var rows []*scaleRow
	for _, n := range o.scale {
		// Seeding runs at 15,000-20,000 customers a second here. A size
		// that cannot be seeded and measured in the budget left is not
		// started.
		if need := time.Duration(n/12000)*time.Second + time.Minute; time.Until(deadline) < need {
			r.notes = append(r.notes, fmt.Sprintf("scale %d: not measured, %v of the budget left and it needs about %v", n, time.Until(deadline).Round(time.Second), need))
			continue
		}
		row, err := prepareScale(ctx, dir, key, keyBytes, n)
		if err != nil {
			return fmt.Errorf("scale %d: %w", n, err)
		}
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		if err := measureScales(rows, dir, key, o); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		r.scale = rows
	}
	r.loadEnd = fleet.Loadavg()
	r.print(os.Stdout, o)
	return nil
}

// serve runs h on 127.0.0.1:port until the returned stop is called.
func serve(port int, h http.Handler) (stop func(), err error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

func base(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }

// gatewaySite is one otpgate server: its port and database.
type gatewaySite struct {
	port int
	db   string
}

// mustReplace replaces old in s once, and panics when s lacks it: the
// example changed, and the benchmark must follow it, not measure
// something else.
func mustReplace(s, old, new string) string {
	if !strings.Contains(s, old) {
		panic(fmt.Sprintf("Caddyfile.example no longer holds %q", old))
	}
	return strings.Replace(s, old, new, 1)
}

// config is Caddyfile.example with its site repeated for each gateway
// (the test's ports, files and key), and with the bare and forward_auth
// servers beside them when both is set.
func config(dir, key string, gateways []gatewaySite, both bool) string {
	ex := string(otpgate.CaddyfileExample)
	i := strings.Index(ex, ":8080 {")
	if i < 0 {
		panic("Caddyfile.example no longer holds its site :8080")
	}
	var b strings.Builder
	b.WriteString(mustReplace(ex[:i], "admin localhost:2019", fmt.Sprintf("admin localhost:%d\n\tpersist_config off\n\tgrace_period 2s\n\tlog {\n\t\toutput file %s\n\t}", adminPort, filepath.Join(dir, "caddy.log"))))
	for _, g := range gateways {
		site := ex[i:]
		for _, rep := range [][2]string{
			{":8080 {", fmt.Sprintf(":%d {", g.port)},
			{"database otpgate.db", "database " + g.db},
			{"secret_key {env.OTPGATE_SECRET_KEY}", "secret_key " + key},
			{"mail_dir mail", "mail_dir " + filepath.Join(dir, "mail")},
			{"bank_table internal/display/banks-sample.csv", "bank_table " + filepath.Join(dir, "banks.csv")},
			{"reverse_proxy 127.0.0.1:9080", fmt.Sprintf("reverse_proxy 127.0.0.1:%d", bankPort)},
		} {
			site = mustReplace(site, rep[0], rep[1])
		}
		b.WriteString(site + "\n")
	}
	if both {
		fmt.Fprintf(&b, `
:%d {
	reverse_proxy 127.0.0.1:%d
}

:%d {
	forward_auth 127.0.0.1:%d {
		uri /auth
		copy_headers X-Auth-User
	}
	reverse_proxy 127.0.0.1:%d
}
`, barePort, bankPort, fwdPort, authPort, bankPort)
	}
	return b.String()
}

// load adapts and loads a Caddyfile and returns how long until the
// gateway at base answered.
func load(caddyfile, base string) (time.Duration, error) {
	t0 := time.Now()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return 0, fmt.Errorf("adapting the configuration: %w", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return 0, fmt.Errorf("loading the configuration: %w", err)
	}
	c := &http.Client{Timeout: time.Second}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		res, err := c.Get(base + "/.otpgate/assets/otpgate.css")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return time.Since(t0), nil
		}
	}
	return 0, errors.New("the gateway does not answer 10 s after loading")
}

// fsyncLatency is the median of 50 writes of 4 KiB each followed by
// fdatasync, on the folder the databases live in: the floor under a
// durable commit.
func fsyncLatency(dir string) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var ds []time.Duration
	for i := range 50 {
		t0 := time.Now()
		f.WriteAt(buf, int64(i)*4096)
		f.Sync()
		ds = append(ds, time.Since(t0))
	}
	return median(ds)
}
