// Command etcdbench measures what a shared etcd store costs the step-up
// cycle, beside bbolt, in one run and on loopback only:
//
//	go run ./bench/etcdbench            # about 2 minutes on 2 cores
//	go run ./bench/etcdbench -quick     # a smoke run
//
// It starts a real 3-member etcd cluster (package etcdtest: each member a
// process, with fsync on, as in production), the demo bank behind package
// fleet's login, and one in-process Caddy with the gateway of
// Caddyfile.example in front of the bank: first on a bbolt file, then with
// the database line replaced by "store etcd { endpoints … }". For each
// store it seeds customers, logs them in through the gateway and measures
//
//   - the latency of a protected operation, one at a time: the hold (the
//     transfer paused, 401 with a challenge) and the confirmation (code
//     checked, operation released to the bank, the bank's answer), beside
//     the same transfer sent straight to the bank;
//   - hold→confirm→release cycles per second with -inflight cycles at once.
//
// It prints a markdown table; the README's multi-node section carries the
// latest one.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/otpgate/otpgate"
	"github.com/otpgate/otpgate/bench/fleet"
	_ "github.com/otpgate/otpgate/caddymodule"
	"github.com/otpgate/otpgate/internal/demobank"
	"github.com/otpgate/otpgate/internal/store/etcdstore"
	"github.com/otpgate/otpgate/internal/store/etcdstore/etcdtest"
)

type options struct {
	customers int
	serial    int
	inflight  int
	dur       time.Duration
}

func main() {
	var o options
	quick := flag.Bool("quick", false, "a smoke run with small numbers")
	flag.IntVar(&o.customers, "customers", 4000, "customers seeded per store (each may spend 2 time steps a minute)")
	flag.IntVar(&o.serial, "serial", 300, "protected operations measured one at a time, per store")
	flag.IntVar(&o.inflight, "inflight", 32, "cycles in flight in the throughput measurement")
	flag.DurationVar(&o.dur, "dur", 10*time.Second, "length of the throughput measurement, per store")
	flag.Parse()
	if *quick {
		o.customers, o.serial, o.dur = 600, 50, 2*time.Second
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "etcdbench:", err)
		os.Exit(1)
	}
}

// result is one store's measurements.
type result struct {
	store          string
	hold, confirm  []time.Duration // one at a time
	cycles         int             // released in the throughput run
	failed         int
	dur            time.Duration
	confirmLoaded  []time.Duration
	seed, loggedIn time.Duration
}

func run(o options) error {
	started := time.Now()
	load0 := fleet.Loadavg()
	dir, err := os.MkdirTemp("", "otpgate-etcdbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keyBytes := make([]byte, 32)
	rand.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)

	bank := demobank.New()
	bankAddr, stopBank, err := serve(fleet.Bank(bank))
	if err != nil {
		return err
	}
	defer stopBank()
	if err := os.WriteFile(filepath.Join(dir, "banks.csv"), otpgate.BankTableSample, 0o600); err != nil {
		return err
	}

	fleet.Logf("starting a 3-member etcd cluster (fsync on)")
	cluster, err := etcdtest.Start(filepath.Join(dir, "etcd"), etcdtest.Options{Fsync: true})
	if err != nil {
		return err
	}
	defer cluster.Close()

	direct := serialDirect(bankAddr, o.serial)
	port, err := freePort()
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var results []*result
	for i, kind := range []string{"bbolt", "etcd"} {
		r := &result{store: kind}
		t0 := time.Now()
		var cs []*fleet.Customer
		var storeLine string
		switch kind {
		case "bbolt":
			path := filepath.Join(dir, "otpgate.db")
			if cs, err = fleet.Seed(context.Background(), path, keyBytes, o.customers); err != nil {
				return err
			}
			storeLine = "database " + path
		case "etcd":
			if cs, err = seedEtcd(cluster.Endpoints(), keyBytes, i*o.customers, o.customers); err != nil {
				return err
			}
			storeLine = fmt.Sprintf("store etcd {\n\t\t\tendpoints %s\n\t\t}", strings.Join(cluster.Endpoints(), " "))
		}
		r.seed = time.Since(t0)
		if err := loadGateway(config(dir, key, port, bankAddr, storeLine), base); err != nil {
			return err
		}
		t0 = time.Now()
		if err := fleet.LoginAll(context.Background(), cs, base, 16); err != nil {
			return err
		}
		r.loggedIn = time.Since(t0)
		fleet.Logf("%s: %d customers seeded in %v, logged in through the gateway in %v", kind, len(cs), r.seed.Round(time.Millisecond), r.loggedIn.Round(time.Millisecond))
		next := &cursor{cs: cs}
		r.hold, r.confirm = serialCycles(base, next, o.serial, fmt.Sprintf("%s-s", kind))
		fleet.Logf("%s: one at a time: hold p50 %v, confirm and release p50 %v", kind, q(r.hold, 0.5), q(r.confirm, 0.5))
		r.cycles, r.failed, r.dur, r.confirmLoaded = loadedCycles(base, next, o.inflight, o.dur, kind+"-l")
		fleet.Logf("%s: %d in flight: %.0f cycles/s (%d failed), confirm p50 %v p99 %v", kind, o.inflight, float64(r.cycles)/r.dur.Seconds(), r.failed, q(r.confirmLoaded, 0.5), q(r.confirmLoaded, 0.99))
		results = append(results, r)
	}
	caddy.Stop()
	refs := map[string]int{}
	for _, e := range bank.Ledger() {
		refs[e.Params["to_bank"]]++
	}
	twice := 0
	for _, n := range refs {
		if n > 1 {
			twice++
		}
	}
	report(os.Stdout, o, results, direct, twice, load0, fleet.Loadavg(), time.Since(started))
	return nil
}

// cursor hands out customers that have a code left, in turn.
type cursor struct {
	mu sync.Mutex
	cs []*fleet.Customer
	i  int
}

// next returns a customer and its next code, or ok false when none of the
// customers has one now.
func (c *cursor) next() (cust *fleet.Customer, code string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for range len(c.cs) {
		cust = c.cs[c.i%len(c.cs)]
		c.i++
		if code, _, ok = cust.NextCode(now); ok {
			return cust, code, true
		}
	}
	return nil, "", false
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// cycle holds a transfer for c with reference ref and confirms it with
// code; it returns both latencies and whether the bank's answer came.
func cycle(base string, c *fleet.Customer, code, ref string) (hold, confirm time.Duration, ok bool) {
	form := url.Values{"to_bank": {ref}, "to_account": {"1 1234567"}, "amount": {"1000"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/transfer/execute", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
	t0 := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, 0, false
	}
	var held struct{ Challenge string }
	json.NewDecoder(res.Body).Decode(&held)
	res.Body.Close()
	hold = time.Since(t0)
	if res.StatusCode != http.StatusUnauthorized || held.Challenge == "" {
		return hold, 0, false
	}
	req, _ = http.NewRequest(http.MethodPost, base+"/.otpgate/confirm/"+held.Challenge, strings.NewReader(`{"otp":"`+code+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
	t0 = time.Now()
	res, err = client.Do(req)
	if err != nil {
		return hold, 0, false
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return hold, time.Since(t0), res.StatusCode == http.StatusOK
}

func serialCycles(base string, next *cursor, n int, tag string) (holds, confirms []time.Duration) {
	for i := range n {
		c, code, ok := next.next()
		if !ok {
			break
		}
		h, cf, ok := cycle(base, c, code, fmt.Sprintf("%s%06d", tag, i))
		if ok {
			holds, confirms = append(holds, h), append(confirms, cf)
		}
	}
	return holds, confirms
}

func loadedCycles(base string, next *cursor, inflight int, dur time.Duration, tag string) (released, failed int, took time.Duration, confirms []time.Duration) {
	var mu sync.Mutex
	var refs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for range inflight {
		wg.Go(func() {
			for i := 0; i < 1_000_000 && time.Now().Before(end); i++ {
				c, code, ok := next.next()
				if !ok {
					time.Sleep(10 * time.Millisecond) // every code spent: wait for the clock
					continue
				}
				_, cf, ok := cycle(base, c, code, fmt.Sprintf("%s%07d", tag, refs.Add(1)))
				mu.Lock()
				if ok {
					released++
					confirms = append(confirms, cf)
				} else {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return released, failed, time.Since(start), confirms
}

// serialDirect sends n transfers straight to the bank, one at a time.
func serialDirect(bankAddr string, n int) []time.Duration {
	var out []time.Duration
	form := func(i int) string {
		return url.Values{"to_bank": {fmt.Sprintf("D%06d", i)}, "to_account": {"1 1234567"}, "amount": {"1000"}}.Encode()
	}
	c := &fleet.Customer{Service: "F00000", User: "U0000000"}
	if err := c.Login(context.Background(), &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, "http://"+bankAddr); err != nil {
		fleet.Logf("direct: %v", err)
		return nil
	}
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, "http://"+bankAddr+"/transfer/execute", strings.NewReader(form(i)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "JSESSIONID="+c.Cookie)
		t0 := time.Now()
		res, err := client.Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		out = append(out, time.Since(t0))
	}
	return out
}

// seedEtcd writes n customers (fleet names from offset) into the cluster,
// sealed under key.
func seedEtcd(endpoints []string, key []byte, offset, n int) ([]*fleet.Customer, error) {
	s, reachErr, err := etcdstore.Open(etcdstore.Options{Endpoints: endpoints})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if reachErr != nil {
		return nil, reachErr
	}
	return fleet.SeedStore(context.Background(), s, key, offset, n)
}

// config is Caddyfile.example with the gateway on port, its files in dir,
// the key, the bank at bankAddr and storeLine for its database line.
func config(dir, key string, port int, bankAddr, storeLine string) string {
	cfg := string(otpgate.CaddyfileExample)
	for _, rep := range [][2]string{
		{"admin localhost:2019", fmt.Sprintf("admin off\n\tpersist_config off\n\tgrace_period 2s\n\tlog {\n\t\toutput file %s\n\t}", filepath.Join(dir, "caddy.log"))},
		{":8080 {", fmt.Sprintf(":%d {", port)},
		{"database otpgate.db", storeLine},
		{"secret_key {env.OTPGATE_SECRET_KEY}", "secret_key " + key},
		{"mail_dir mail", "mail_dir " + filepath.Join(dir, "mail")},
		{"bank_table internal/display/banks-sample.csv", "bank_table " + filepath.Join(dir, "banks.csv")},
		{"reverse_proxy 127.0.0.1:9080", "reverse_proxy " + bankAddr},
	} {
		if !strings.Contains(cfg, rep[0]) {
			panic(fmt.Sprintf("Caddyfile.example no longer holds %q", rep[0]))
		}
		cfg = strings.Replace(cfg, rep[0], rep[1], 1)
	}
	return cfg
}

func loadGateway(caddyfile, base string) error {
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the configuration: %w", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return fmt.Errorf("loading the configuration: %w", err)
	}
	c := &http.Client{Timeout: time.Second}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if res, err := c.Get(base + "/.otpgate/assets/otpgate.css"); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return nil
		}
	}
	return errors.New("the gateway does not answer 10 s after loading")
}

func serve(h http.Handler) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func q(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
}

func report(w io.Writer, o options, rs []*result, direct []time.Duration, twice int, load0, load1 string, took time.Duration) {
	fmt.Fprintf(w, "otpgate on bbolt and on a 3-member etcd cluster (loopback, fsync on), one run of %v; load average %s at the start, %s at the end; %d transfers executed twice\n\n",
		took.Round(time.Second), load0, load1, twice)
	fmt.Fprintln(w, "| store | hold p50 / p99 | confirm + release p50 / p99 | protected operation p50 (hold + confirm) | added to the bank's own p50 | cycles/s, "+fmt.Sprint(o.inflight)+" in flight | confirm p50 / p99 under load |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	bank := q(direct, 0.5)
	for _, r := range rs {
		total := q(r.hold, 0.5) + q(r.confirm, 0.5)
		fmt.Fprintf(w, "| %s | %v / %v | %v / %v | %v | %v | %.0f (%d failed) | %v / %v |\n", r.store,
			q(r.hold, 0.5), q(r.hold, 0.99), q(r.confirm, 0.5), q(r.confirm, 0.99), total, total-bank,
			float64(r.cycles)/r.dur.Seconds(), r.failed, q(r.confirmLoaded, 0.5), q(r.confirmLoaded, 0.99))
	}
	fmt.Fprintf(w, "\nThe same transfer straight to the bank: p50 %v, p99 %v (%d one at a time). Protected operations measured one at a time: %d per store.\n",
		bank, q(direct, 0.99), len(direct), o.serial)
	if len(rs) == 2 {
		b, e := rs[0], rs[1]
		fmt.Fprintf(w, "etcd adds %v to a protected operation's p50 over bbolt (hold %+v, confirm %+v).\n",
			(q(e.hold, 0.5)+q(e.confirm, 0.5))-(q(b.hold, 0.5)+q(b.confirm, 0.5)), q(e.hold, 0.5)-q(b.hold, 0.5), q(e.confirm, 0.5)-q(b.confirm, 0.5))
	}
}
