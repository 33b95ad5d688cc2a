package app

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/audit"
)

// auditPruning bounds the pruning of one worker round: batches of 60
// records (and their links), 50 batches at most, 10 ms apart, so that the store's writer is
// never held for long and confirmations go between batches (README
// "Audit trail" states the measured effect).
var auditPruning = audit.PruneOptions{Batch: 60, Batches: 50, Pause: 10 * time.Millisecond}

// minRetention is the shortest audit_retention accepted: the trail is the
// bank's evidence, and a retention shorter than a day is a typing mistake
// ("400" for "400d") rather than a policy.
const minRetention = 24 * time.Hour

// checkRetention refuses an audit_retention that would delete evidence
// by mistake.
func checkRetention(d caddy.Duration) error {
	if d != 0 && time.Duration(d) < minRetention {
		return fmt.Errorf("otpgate: audit_retention %s: want at least a day (such as 400d), or leave it out to keep every record", formatRetention(time.Duration(d)))
	}
	return nil
}

// formatRetention writes d as the Caddyfile does.
func formatRetention(d time.Duration) string {
	switch {
	case d > 0 && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// ChainSettle is how old a record must be before the worker links it
// into the chain: time for transactions still committing records with
// earlier times, and for the clocks of gateways sharing a store to differ.
const ChainSettle = time.Minute

// chainBatches bounds the linking transactions of one worker round.
const chainBatches = 50

// auditUpkeep is the audit trail's part of a worker round: settled records
// linked into the tamper-evident chain, then those past audit_retention
// deleted.
func (st *State) auditUpkeep(ctx context.Context) {
	st.ChainAudit(ctx)
	st.PruneAudit(ctx)
}

// ChainAudit links the settled records into the chain and logs its head,
// which a copy kept outside the store (the shipped log) anchors.
func (st *State) ChainAudit(ctx context.Context) {
	n, head, err := audit.Chain(ctx, st.Store, Now().Add(-ChainSettle), chainBatches)
	switch {
	case err != nil:
		st.logger.Warn("linking audit records into the chain", zap.Int("linked", n), zap.Error(err))
	case n > 0:
		st.logger.Info("audit records linked into the chain", zap.Int("count", n), zap.String("head", head))
	}
}

// PruneAudit deletes the audit records older than the store's
// audit_retention, a bounded part of them a round: the next round goes on.
// done says none is left.
func (st *State) PruneAudit(ctx context.Context) (done bool) {
	if st.retention <= 0 {
		return true
	}
	n, done, err := audit.Prune(ctx, st.Store, Now().Add(-st.retention), auditPruning)
	metrics.auditPruned.Add(float64(n))
	switch {
	case err != nil:
		st.logger.Warn("pruning the audit trail", zap.Int("deleted", n), zap.Error(err))
	case n > 0:
		st.logger.Info("audit records past audit_retention deleted", zap.Int("count", n), zap.Bool("done", done),
			zap.String("audit_retention", formatRetention(st.retention)))
	}
	return done
}
