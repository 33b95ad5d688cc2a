package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The otpgate app's metrics go into the configuration's registry
// (ctx.GetMetricsRegistry), which Caddy's metrics endpoints serve. They are
// registered when the app starts, once provisioning has added every store,
// so that a scrape never reads the app while handlers still add stores.
// Labels stay low in cardinality: the store and an outcome, never a
// customer.

// outboxNotices counts, per store, what its outbox sender did with mail
// notices since the store was opened (across reloads).
var outboxNotices = prometheus.NewDesc("otpgate_outbox_notices_total",
	"Mail notices the store's outbox sender handled since the store was opened, by result: sent, failed (retried later) or dead (given up).",
	[]string{"store", "result"}, nil)

// collector reports the app's stores.
type collector struct{ app *App }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- outboxNotices }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, key := range c.app.order {
		s := c.app.states[key].pooled.sender.Stats()
		for _, v := range []struct {
			result string
			n      uint64
		}{{"sent", s.Sent}, {"failed", s.Failed}, {"dead", s.Dead}} {
			ch <- prometheus.MustNewConstMetric(outboxNotices, prometheus.CounterValue, float64(v.n), key, v.result)
		}
	}
}

// registerMetrics adds the app's collector to reg; an app started again
// on the same registry keeps the one it registered.
func (a *App) registerMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(collector{a}); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return err
	}
	return nil
}
