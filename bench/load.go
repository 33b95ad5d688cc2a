package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/otpgate/otpgate/bench/fleet"
)

// attack runs one vegeta attack and hands every result to each, in the
// order they arrive. rate 0 is as fast as workers allow (a closed loop of
// workers requests in flight); otherwise workers is where vegeta starts,
// and it adds more to hold the rate.
func attack(name string, tr vegeta.Targeter, rate int, workers uint64, dur time.Duration, each func(*vegeta.Result)) {
	opts := []func(*vegeta.Attacker){vegeta.Workers(workers), vegeta.Redirects(vegeta.NoFollow),
		vegeta.Timeout(10 * time.Second), vegeta.KeepAlive(true), vegeta.Connections(int(workers) * 2)}
	if rate == 0 {
		opts = append(opts, vegeta.MaxWorkers(workers))
	} else {
		opts = append(opts, vegeta.MaxWorkers(max(workers, 512)))
	}
	a := vegeta.NewAttacker(opts...)
	for res := range a.Attack(tr, vegeta.Rate{Freq: rate, Per: time.Second}, dur, name) {
		each(res)
	}
}

// measure is the metrics of one attack.
type measure struct {
	m      vegeta.Metrics
	failed int // answers other than 200
}

func (ms *measure) add(r *vegeta.Result) {
	ms.m.Add(r)
	if r.Code != http.StatusOK {
		ms.failed++
	}
}

func (ms *measure) close() *measure { ms.m.Close(); return ms }

// throughput is successful answers per second of the attack's duration.
func (ms *measure) throughput() float64 {
	d := ms.m.Duration + ms.m.Wait
	if d <= 0 {
		return 0
	}
	return float64(int(ms.m.Requests)-ms.failed) / d.Seconds()
}

func (ms *measure) q(p float64) time.Duration { return ms.m.Latencies.Quantile(p) }

// menuTargeter asks for base/menu with the session cookies of cs in turn,
// so that each request carries a bank session that the gateway bound.
func menuTargeter(base string, cs []*fleet.Customer) vegeta.Targeter {
	headers := make([]http.Header, len(cs))
	for i, c := range cs {
		headers[i] = http.Header{"Cookie": {"JSESSIONID=" + c.Cookie}, "Accept": {"text/html"}}
	}
	var n atomic.Uint64
	u := base + "/menu"
	return func(t *vegeta.Target) error {
		t.Method, t.URL, t.Header = http.MethodGet, u, headers[int(n.Add(1))%len(headers)]
		return nil
	}
}

// throughput measures GET /menu at base with workers requests in flight
// for dur.
func throughput(name, base string, cs []*fleet.Customer, workers uint64, dur time.Duration) *measure {
	m := &measure{}
	attack(name, menuTargeter(base, cs), 0, workers, dur, m.add)
	return m.close()
}

// latency adds to lat the latencies of GET /menu at base at a fixed rate
// well below saturation (at saturation latency is only queueing).
func latency(name, base string, cs []*fleet.Customer, rate int, dur time.Duration, lat *measure) {
	attack(name, menuTargeter(base, cs), rate, 8, dur, lat.add)
}

// cycler drives full step-up cycles through vegeta: a hold
// (POST /transfer/execute as an API client, answered 401 with a challenge),
// then a confirmation with the customer's code (answered with the bank's
// own 200 once the operation is released). Its targeter prefers
// confirmations of answered holds and otherwise holds an operation for the
// next customer who has no cycle open and a time step left, so every
// request in flight belongs to a different customer. When no customer is
// left, the attack stops.
type cycler struct {
	base string
	cs   []*fleet.Customer

	mu       sync.Mutex
	ready    []job          // answered holds, oldest first
	open     []bool         // customer has a cycle under way
	byURL    map[string]int // request URL -> customer
	next     int            // where the search for a customer goes on
	released map[string]int // ref -> releases the load generator saw

	hold, confirm *measure
	other         map[string]int // unexpected answers, "hold 503" -> count
	noCustomer    bool
}

type job struct {
	cust int
	id   string
	ref  string
}

func newCycler(base string, cs []*fleet.Customer, hold, confirm *measure) *cycler {
	return &cycler{base: base, cs: cs, open: make([]bool, len(cs)), byURL: map[string]int{},
		released: map[string]int{}, other: map[string]int{}, hold: hold, confirm: confirm}
}

// refSeq numbers the holds of the whole run, so that the bank's ledger
// tells every operation apart.
var refSeq atomic.Uint64

var (
	jsonHeader = http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}
	formJSON   = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
)

func withCookie(h http.Header, c *fleet.Customer) http.Header {
	h = h.Clone()
	h.Set("Cookie", "JSESSIONID="+c.Cookie)
	return h
}

func (cy *cycler) target(t *vegeta.Target) error {
	cy.mu.Lock()
	defer cy.mu.Unlock()
	now := time.Now()
	if len(cy.ready) > 0 {
		j := cy.ready[0]
		cy.ready = cy.ready[1:]
		c := cy.cs[j.cust]
		code, _, ok := c.NextCode(now)
		if !ok {
			return fmt.Errorf("customer %d has no time step left although it was ready", j.cust)
		}
		t.Method, t.URL = http.MethodPost, cy.base+"/.otpgate/confirm/"+j.id+"?ref="+j.ref
		t.Body, t.Header = []byte(`{"otp":"`+code+`"}`), withCookie(jsonHeader, c)
		cy.byURL[t.URL] = j.cust
		return nil
	}
	for range len(cy.cs) {
		i := cy.next
		cy.next = (cy.next + 1) % len(cy.cs)
		c := cy.cs[i]
		if cy.open[i] || !c.Ready(now) {
			continue
		}
		cy.open[i] = true
		ref := fmt.Sprintf("B%08d", refSeq.Add(1))
		t.Method, t.URL = http.MethodPost, cy.base+"/transfer/execute?ref="+ref
		t.Body = []byte(url.Values{"to_bank": {ref}, "to_account": {"1 1234567"}, "amount": {"1000"}}.Encode())
		t.Header = withCookie(formJSON, c)
		cy.byURL[t.URL] = i
		return nil
	}
	cy.noCustomer = true
	return vegeta.ErrNoTargets
}

// result takes one answer: an answered hold queues its confirmation.
func (cy *cycler) result(r *vegeta.Result) {
	cy.mu.Lock()
	defer cy.mu.Unlock()
	i, ok := cy.byURL[r.URL]
	if !ok {
		if r.Error != "" && r.Error != vegeta.ErrNoTargets.Error() {
			cy.other["targeter: "+r.Error]++
		}
		return
	}
	delete(cy.byURL, r.URL)
	u, _ := url.Parse(r.URL)
	ref := u.Query().Get("ref")
	if u.Path == "/transfer/execute" {
		cy.hold.m.Add(r)
		var v struct{ Challenge string }
		if r.Code == http.StatusUnauthorized && json.Unmarshal(r.Body, &v) == nil && v.Challenge != "" {
			cy.ready = append(cy.ready, job{cust: i, id: v.Challenge, ref: ref})
			return
		}
		cy.hold.failed++
		cy.other[fmt.Sprintf("hold %d %s", r.Code, r.Error)]++
		cy.open[i] = false
		return
	}
	cy.confirm.add(r)
	cy.open[i] = false
	if r.Code == http.StatusOK {
		cy.released[ref]++
		return
	}
	cy.other[fmt.Sprintf("confirm %d %s", r.Code, r.Error)]++
}

// cycles is what one run of full cycles measured.
type cycles struct {
	workers       uint64
	rate          int // 0: as fast as the workers go
	dur           time.Duration
	released      int
	hold, confirm *measure
	other         map[string]int
	ranOut        bool
	// passAround is the gateway's pass-through req/s measured just before
	// and just after the run (their mean), the baseline of its ratio.
	passAround float64
}

func (c *cycles) perSecond() float64 { return float64(c.released) / c.dur.Seconds() }

// runCycles runs cycles with workers requests in flight (rate 0) or at rate
// cycles per second, for at most dur, and returns what it measured, its
// latencies added to hold and confirm (new ones when nil). The customers'
// spent steps carry over from run to run.
func runCycles(base string, cs []*fleet.Customer, workers uint64, rate int, dur time.Duration, hold, confirm *measure) *cycles {
	if hold == nil {
		hold, confirm = &measure{}, &measure{}
	}
	cy := newCycler(base, cs, hold, confirm)
	start := time.Now()
	attack("cycles", cy.target, 2*rate, workers, dur, cy.result)
	elapsed := time.Since(start)
	out := &cycles{workers: workers, rate: rate, dur: elapsed, hold: hold, confirm: confirm, other: cy.other, ranOut: cy.noCustomer}
	for _, n := range cy.released {
		out.released += n
		if n > 1 {
			out.other["the load generator saw one reference released twice"]++
		}
	}
	return out
}
