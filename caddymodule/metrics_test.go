package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/store"
)

// baseStore is the store an observed store wraps, for tests that reach
// into it (closing it under the gateway).
func baseStore(s store.Store) store.Store {
	if o, ok := s.(interface{ Unwrap() store.Store }); ok {
		return o.Unwrap()
	}
	return s
}

// metricFamilies are the names of the gateway's metric families, as the
// collectors describe them.
func metricFamilies(t testing.TB) []string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range app.Collectors() {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		// Desc's String is its only accessor: Desc{fqName: "…", …}.
		s := d.String()
		i := strings.Index(s, `fqName: "`)
		if i < 0 {
			t.Fatalf("cannot read the name of %s", s)
		}
		s = s[i+len(`fqName: "`):]
		names = append(names, s[:strings.IndexByte(s, '"')])
	}
	sort.Strings(names)
	return names
}

// series is one scrape of a metrics endpoint: each sample's value by its
// name and labels as written ("name{a=\"x\",b=\"y\"}").
type series map[string]float64

// scrape reads the Prometheus text exposition at u.
func scrape(t *testing.T, u string) series {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(u)
	if err != nil {
		t.Fatalf("scraping %s: %v", u, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("scraping %s: %d %s", u, res.StatusCode, b)
	}
	s := series{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		s[line[:i]] = v
	}
	return s
}

// sum adds the samples of name whose labels include every one of labels
// ("k=v" each).
func (s series) sum(name string, labels ...string) (total float64, found bool) {
	for k, v := range s {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		match := true
		for _, want := range labels {
			k, v, _ := strings.Cut(want, "=")
			if !strings.Contains(l, k+`="`+v+`"`) {
				match = false
			}
		}
		if match {
			total, found = total+v, true
		}
	}
	return total, found
}

// has says a family has a sample, in any of the forms a family's samples
// take (a histogram's _bucket, _sum and _count).
func (s series) has(family string) bool {
	for _, name := range []string{family, family + "_count"} {
		if _, ok := s.sum(name); ok {
			return true
		}
	}
	return false
}

// Every metric family is on Caddy's /metrics after a customer's journey,
// with the counts the journey made: each decision, code check, release,
// refusal, enrolment step and lockout counted with its label, the held
// operations gauge read when scraped, the store's transactions timed.
func TestMetricsAfterJourney(t *testing.T) {
	e := newEnv(t, envOptions{})
	prev := app.ScrapeCacheFor
	app.ScrapeCacheFor = 0
	t.Cleanup(func() { app.ScrapeCacheFor = prev })
	before := scrape(t, fmt.Sprintf("http://localhost:%d/metrics", adminPort))

	c := gwEnrolled(e, "S001", "U001")
	id := gwPause(c, "/transfer/execute", gwTransfer)
	held := scrape(t, fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if v, _ := held.sum("caddy_otpgate_held_operations"); v != 1 {
		t.Errorf("held_operations with one operation waiting = %v; want 1", v)
	}
	gwConfirmForm(c, id, c.wrongCode(), nil)
	if res, body, _ := gwConfirmForm(c, id, c.code(), nil); res.StatusCode != http.StatusOK {
		t.Fatalf("right code: %d\n%s", res.StatusCode, body)
	}
	// The step just spent, again, on a second operation.
	id = gwPause(c, "/transfer/execute", gwTransfer)
	gwConfirmForm(c, id, totpAt(c.secret, c.lastStepUsed), nil)
	// Cancelled by the customer.
	res, _ := c.postForm("/.otpgate/confirm/"+id+"/cancel", url.Values{"csrf": {c.csrf("/.otpgate/confirm/" + id)}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d", res.StatusCode)
	}
	// Five wrong codes lock.
	id = gwPause(c, "/transfer/execute", gwTransfer)
	for range 5 {
		gwConfirmForm(c, id, c.wrongCode(), nil)
	}
	// Refusals: no session, an ambiguous path.
	anon := e.customer("S001", "U002")
	anon.postForm("/transfer/execute", gwTransfer)
	anon.get("/menu%2f..")

	after := scrape(t, fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	for _, name := range metricFamilies(t) {
		if !after.has(name) {
			t.Errorf("%s is not on /metrics after a journey", name)
		}
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"caddy_otpgate_operations_total", []string{"kind=transfer", "outcome=held"}, 3},
		{"caddy_otpgate_operations_total", []string{"kind=transfer", "outcome=refused"}, 1},
		{"caddy_otpgate_code_checks_total", []string{"result=ok"}, 1},
		{"caddy_otpgate_code_checks_total", []string{"result=invalid"}, 5},
		{"caddy_otpgate_code_checks_total", []string{"result=reused"}, 1},
		{"caddy_otpgate_code_checks_total", []string{"result=locked"}, 1},
		{"caddy_otpgate_lockouts_total", nil, 1},
		{"caddy_otpgate_releases_total", []string{"kind=transfer", "outcome=2xx"}, 1},
		{"caddy_otpgate_release_duration_seconds_count", []string{"kind=transfer"}, 1},
		{"caddy_otpgate_held_operations_ended_total", []string{"kind=transfer", "outcome=confirmed"}, 1},
		{"caddy_otpgate_held_operations_ended_total", []string{"kind=transfer", "outcome=cancelled"}, 1},
		{"caddy_otpgate_enrolment_steps_total", []string{"step=issue", "result=ok"}, 1},
		{"caddy_otpgate_enrolment_steps_total", []string{"step=setup", "result=ok"}, 1},
		{"caddy_otpgate_enrolment_steps_total", []string{"step=activate", "result=ok"}, 1},
		{"caddy_otpgate_refusals_total", []string{"reason=login_required"}, 1},
		{"caddy_otpgate_refusals_total", []string{"reason=ambiguous_path"}, 1},
		{"caddy_otpgate_audit_records_total", []string{"event=locked"}, 1},
		{"caddy_otpgate_audit_records_total", []string{"event=released"}, 1},
	} {
		got, _ := after.sum(tc.name, tc.labels...)
		was, _ := before.sum(tc.name, tc.labels...)
		if got-was != tc.want {
			t.Errorf("%s%v rose by %v; want %v", tc.name, tc.labels, got-was, tc.want)
		}
	}
	if got, _ := after.sum("caddy_otpgate_store_transaction_duration_seconds_count", "op=update"); got == 0 {
		t.Error("no store update timed")
	}
	// The outbox sends the activation and lock notices in the background.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if got, _ := after.sum("caddy_otpgate_outbox_notices_total", "result=sent"); got > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Error("no mail notice counted as sent")
			break
		}
		time.Sleep(100 * time.Millisecond)
		after = scrape(t, fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	}
	// No label names a customer, a service, an address or a path.
	for k := range after {
		if strings.HasPrefix(k, "caddy_otpgate_") {
			for _, leak := range []string{"S001", "U001", "U002", "127.0.0.1", "/transfer", "/menu"} {
				if strings.Contains(k, leak) {
					t.Errorf("series %s names %q", k, leak)
				}
			}
		}
	}
}
