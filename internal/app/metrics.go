package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/outbox"
)

// The gateway's metrics, on Caddy's own /metrics (the admin endpoint, or
// the metrics handler), named caddy_otpgate_*.
//
// They are one set per process, as the stores and their worker are: the
// collectors are made once and registered in every configuration's
// registry (Caddy makes a new registry per load), so a reload neither
// resets a counter nor registers one twice. Labels are low-cardinality by
// construction — an operation kind, an outcome or refusal code from a
// fixed set, a step, an audit event — never a customer, service, address
// or path. README "Metrics" lists them; deploy/prometheus and
// deploy/grafana use them.

// Metric name parts.
const (
	metricsNamespace = "caddy"
	metricsSubsystem = "otpgate"
)

func metricOpts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts(name, help)), labels)
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	o := metricOpts(name, help)
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets}, labels)
}

// gatewayMetrics are the process's collectors.
type gatewayMetrics struct {
	operations    *prometheus.CounterVec
	ended         *prometheus.CounterVec
	codeChecks    *prometheus.CounterVec
	lockouts      prometheus.Counter
	auditRecords  *prometheus.CounterVec
	releaseTime   *prometheus.HistogramVec
	releases      *prometheus.CounterVec
	enrolment     *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	txTime        *prometheus.HistogramVec
	txConflicts   prometheus.Counter
	txUnavailable prometheus.Counter
	eventsDropped prometheus.Counter
	auditPruned   prometheus.Counter
	scraped       *scrapeCollector
}

// metrics are the process's metrics, made once.
var metrics = newGatewayMetrics()

func newGatewayMetrics() *gatewayMetrics {
	return &gatewayMetrics{
		operations: counterVec("operations_total",
			"Protected operations decided, by kind and outcome: held (waiting for a code), passed_through (a service that does not require OTP), refused.",
			"kind", "outcome"),
		ended: counterVec("held_operations_ended_total",
			"Held operations that ended, by kind and outcome: confirmed (a right code), cancelled (by the customer), discarded (by the gateway), expired.",
			"kind", "outcome"),
		codeChecks: counterVec("code_checks_total",
			"Codes checked against held operations, by result: ok, invalid, reused (a spent time step), locked, no_token.",
			"result"),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts(metricOpts("lockouts_total",
			"Customers locked after too many wrong codes."))),
		auditRecords: counterVec("audit_records_total",
			"Audit records committed, by event (the audit trail's event names).",
			"event"),
		releaseTime: histogramVec("release_duration_seconds",
			"Time to carry out a released operation, from handing it to the bank to the end of the bank's answer, by kind.",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}, "kind"),
		releases: counterVec("releases_total",
			"Released operations, by kind and outcome: the bank's status class (2xx … 5xx), not_sent (nothing reached the bank), unknown (the answer was cut off or never came: the bank may have executed it).",
			"kind", "outcome"),
		enrolment: counterVec("enrolment_steps_total",
			"Token steps customers took, by step (issue, setup, activate, renew) and result: ok, or the refusal's code.",
			"step", "result"),
		refusals: counterVec("refusals_total",
			"Requests the gateway refused, by reason: the refusal's code (ambiguous_path, login_required, csrf, body_too_large, store_unavailable …). A wrong or spent code is counted by code_checks_total.",
			"reason"),
		txTime: histogramVec("store_transaction_duration_seconds",
			"Duration of store calls, by operation: update (a read-check-write transaction, retries included), view, scan.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "op"),
		txConflicts: prometheus.NewCounter(prometheus.CounterOpts(metricOpts("store_conflicts_total",
			"Store transactions run again: a conflict with another transaction (etcd), or a failed companion in a grouped commit (bbolt)."))),
		txUnavailable: prometheus.NewCounter(prometheus.CounterOpts(metricOpts("store_unavailable_total",
			"Store calls that failed because the store itself did (I/O, closed database, lost quorum): protected operations are refused with 503 meanwhile."))),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts(metricOpts("events_dropped_total",
			"Security events not emitted to Caddy's events app because its handlers fell behind (the audit trail has them all)."))),
		auditPruned: prometheus.NewCounter(prometheus.CounterOpts(metricOpts("audit_pruned_total",
			"Audit records deleted because they were older than audit_retention."))),
		scraped: newScrapeCollector(),
	}
}

// collectors lists every collector, for registration.
func (m *gatewayMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.operations, m.ended, m.codeChecks, m.lockouts, m.auditRecords, m.releaseTime,
		m.releases, m.enrolment, m.refusals, m.txTime, m.txConflicts, m.txUnavailable, m.eventsDropped, m.auditPruned, m.scraped}
}

// register adds the process's collectors to a configuration's registry.
// One already there (a second otpgate app in one load) is no error.
func (m *gatewayMetrics) register(reg prometheus.Registerer) error {
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}

// registerMetrics adds the process's collectors to reg, the registry of
// the app's configuration. The app calls it when it starts, once
// provisioning has added every store.
func (a *App) registerMetrics(reg prometheus.Registerer) error {
	return metrics.register(reg)
}

// FlowMetrics counts what the request flow decided (gate.Observer).
type FlowMetrics struct{}

func (FlowMetrics) Decided(kind, outcome string) {
	metrics.operations.WithLabelValues(kind, outcome).Inc()
}

func (FlowMetrics) CodeChecked(result string) {
	metrics.codeChecks.WithLabelValues(result).Inc()
}

func (FlowMetrics) Released(kind, outcome string, took time.Duration) {
	metrics.releases.WithLabelValues(kind, outcome).Inc()
	metrics.releaseTime.WithLabelValues(kind).Observe(took.Seconds())
}

// CountRefusal counts a refusal answered to a client.
func CountRefusal(ref *gate.Refusal) {
	metrics.refusals.WithLabelValues(ref.Code).Inc()
}

// enrolSteps name the token pages' actions as metric steps.
var enrolSteps = map[string]string{"issue": "issue", "setup": "setup", "confirm": "activate", "renew": "renew"}

// CountEnrolment counts a token page's action (issue, setup, confirm,
// renew) and its result: ok, or the refusal's code.
func CountEnrolment(action, result string) {
	metrics.enrolment.WithLabelValues(enrolSteps[action], result).Inc()
}

// countAudit counts a committed audit record: every event, lockouts, and
// the ends of held operations.
func countAudit(r *audit.Record) {
	metrics.auditRecords.WithLabelValues(string(r.Event)).Inc()
	switch r.Event {
	case audit.Locked:
		metrics.lockouts.Inc()
	case audit.CodeOK:
		if r.Kind != "" {
			metrics.ended.WithLabelValues(r.Kind, "confirmed").Inc()
		}
	case audit.Cancelled:
		outcome := "cancelled"
		if r.Actor != actorCustomer {
			outcome = "discarded"
		}
		metrics.ended.WithLabelValues(r.Kind, outcome).Inc()
	case audit.Expired:
		metrics.ended.WithLabelValues(r.Kind, "expired").Inc()
	}
}

// actorCustomer is the actor of the audit records of customers' own acts.
const actorCustomer = "customer"

// scrapeCollector reports what is read when Prometheus scrapes, per open
// store (labelled with the store's name as configured): the held
// operations waiting for a code, the mail outbox's depth, and what the
// store's outbox sender did since the store was opened. Reading a store is
// bounded — held operations are counted from at most pendingScanLimit
// customers' lists, each store read under a deadline — and cached for
// ScrapeCacheFor, so frequent scrapes cost one read.
type scrapeCollector struct {
	pending, pendingCapped       *prometheus.Desc
	outboxQueued, outboxRetrying *prometheus.Desc
	outboxDead, outboxAge        *prometheus.Desc
	notices                      *prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	cached []storeReading
}

// storeReading is what one read found in one store.
type storeReading struct {
	store         string
	pending       int
	pendingCapped bool
	outbox        outbox.Counts
	outboxOK      bool
	sent          outbox.Stats
}

// ScrapeCacheFor is how long one read of the stores answers scrapes
// (several Prometheus servers scrape one gateway); tests set it to 0.
var ScrapeCacheFor = 5 * time.Second

const (
	// scrapeReadFor bounds one read of a store.
	scrapeReadFor = 2 * time.Second
	// pendingScanLimit bounds the customers whose held operations a
	// scrape counts; beyond it the gauge is a lower bound and
	// held_operations_capped says so.
	pendingScanLimit = 10000
)

func newScrapeCollector() *scrapeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, name), help, append([]string{"store"}, labels...), nil)
	}
	return &scrapeCollector{
		pending:        d("held_operations", "Held operations waiting for a code now (read when scraped)."),
		pendingCapped:  d("held_operations_capped", "1 when held_operations counted only the first customers with held operations (a lower bound), else 0."),
		outboxQueued:   d("outbox_queued", "Mail notices waiting to be sent, retries included."),
		outboxRetrying: d("outbox_retrying", "Queued mail notices that failed at least once: the relay refuses or cannot be reached."),
		outboxDead:     d("outbox_dead", "Mail notices given up on, kept until an operator requeues them."),
		outboxAge:      d("outbox_oldest_age_seconds", "Age of the oldest queued mail notice's change; 0 when none is queued."),
		notices: d("outbox_notices_total",
			"Mail notices the store's outbox sender handled since the store was opened, by result: sent, failed (retried later) or dead (given up).",
			"result"),
	}
}

// Describe implements prometheus.Collector.
func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pending, c.pendingCapped, c.outboxQueued, c.outboxRetrying, c.outboxDead, c.outboxAge, c.notices} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	t := time.Now()
	if t.Sub(c.at) >= ScrapeCacheFor {
		c.cached, c.at = readStores(), t
	}
	readings := c.cached
	c.mu.Unlock()
	for _, v := range readings {
		gauge := func(d *prometheus.Desc, x float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x, v.store)
		}
		gauge(c.pending, float64(v.pending))
		capped := 0.0
		if v.pendingCapped {
			capped = 1
		}
		gauge(c.pendingCapped, capped)
		if v.outboxOK {
			gauge(c.outboxQueued, float64(v.outbox.Queued))
			gauge(c.outboxRetrying, float64(v.outbox.Retrying))
			gauge(c.outboxDead, float64(v.outbox.Dead))
			age := 0.0
			if !v.outbox.Oldest.IsZero() {
				age = max(0, t.Sub(v.outbox.Oldest).Seconds())
			}
			gauge(c.outboxAge, age)
		}
		for result, n := range map[string]uint64{"sent": v.sent.Sent, "failed": v.sent.Failed, "dead": v.sent.Dead} {
			ch <- prometheus.MustNewConstMetric(c.notices, prometheus.CounterValue, float64(n), v.store, result)
		}
	}
}

// readStores reads every open store.
func readStores() []storeReading {
	var out []storeReading
	storePool.Range(func(key, value any) bool {
		p, ok := value.(*pooledStore)
		name, _ := key.(string)
		if !ok {
			return true
		}
		v := storeReading{store: name, sent: p.sender.Stats()}
		ctx, cancel := context.WithTimeout(context.Background(), scrapeReadFor)
		defer cancel()
		if st := p.owner(); st != nil {
			n, complete, err := st.Challenges.CountWaiting(ctx, pendingScanLimit)
			if err != nil {
				p.logger.Debug("counting held operations for metrics", zap.Error(err))
			}
			v.pending, v.pendingCapped = n, !complete
		}
		counts, err := outbox.Depth(ctx, p.store)
		if err != nil {
			p.logger.Debug("reading the outbox for metrics", zap.Error(err))
		}
		v.outbox, v.outboxOK = counts, err == nil
		out = append(out, v)
		return true
	})
	return out
}

// Collectors are the process's collectors, whose families the README's
// metrics table lists.
func Collectors() []prometheus.Collector { return metrics.collectors() }
