package caddymodule

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/otpgate/otpgate/internal/app"
	"go.uber.org/zap"
)

// maxClockSkew is how far the gateway's clock may be from the bank's before
// it says so loudly. Codes are checked against the gateway's clock alone
// (RFC 6238 §6): half a period off and customers' right codes start to
// fail, or a code's window shifts into one it should not open.
const maxClockSkew = 15 * time.Second

// clockCheck says whether the bank's clock was compared with the gateway's.
type clockCheck struct{ done atomic.Bool }

// watchClock wraps w, for the first answer from the bank after the handler
// starts, to compare the bank's Date header with the gateway's clock once.
func (g *Gateway) watchClock(w http.ResponseWriter) http.ResponseWriter {
	if g.clock == nil || g.clock.done.Load() {
		return w
	}
	return &headerWatcher{ResponseWriter: w, onHeader: func(_ int, h http.Header) {
		if g.clock.done.CompareAndSwap(false, true) {
			g.compareClock(h.Get("Date"))
		}
	}}
}

// compareClock logs how far the gateway's clock is from date, the bank's
// HTTP Date header: an error beyond maxClockSkew (Date has whole seconds,
// so a second either way is no skew).
func (g *Gateway) compareClock(date string) {
	bank, err := http.ParseTime(date)
	if err != nil {
		g.logger.Info("the bank's answer has no usable Date header; the gateway's clock was not compared", zap.String("date", date))
		return
	}
	skew := app.Now().Sub(bank).Truncate(time.Second)
	if skew > maxClockSkew || skew < -maxClockSkew {
		g.logger.Error("the gateway's clock differs from the bank's: one-time codes are checked against the gateway's clock, so customers' right codes may be refused; synchronise this server's clock (NTP)",
			zap.Duration("skew", skew), zap.Time("gateway", app.Now()), zap.Time("bank", bank), zap.Duration("limit", maxClockSkew))
		return
	}
	g.logger.Info("the gateway's clock agrees with the bank's", zap.Duration("skew", skew))
}
