package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// confirmLatencies runs n confirmations of held transfers by c and
// returns how long each confirmation (code check and release) took.
func confirmLatencies(t *testing.T, c *customer, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range n {
		id := gwPause(c, "/transfer/execute", gwTransfer)
		code := c.code()
		start := time.Now()
		res, body, _ := gwConfirmForm(c, id, code, nil)
		out = append(out, time.Since(start))
		if res.StatusCode != http.StatusOK {
			t.Fatalf("confirmation: %d\n%s", res.StatusCode, body)
		}
	}
	slices.Sort(out)
	return out
}

func quantile(d []time.Duration, q float64) time.Duration {
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// retentionBound is how much slower than without pruning the slowest
// confirmations (95th percentile) may be while pruning runs: a
// confirmation waits at most for the one pruning batch that holds the
// store's writer (README "Audit trail").
const retentionBound = 50 * time.Millisecond

// audit_retention prunes old records in bounded batches while customers
// confirm operations: the old records go, the recent ones stay, and the
// confirmations are no slower than without pruning by more than
// retentionBound at the 95th percentile.
func TestRetentionPrunesUnderConfirmationLoad(t *testing.T) {
	e := newEnv(t, envOptions{Extra: "audit_retention 400d"})
	st := e.gw().shared
	if r := time.Duration(e.gw().StoreSettings.AuditRetention); r != 400*24*time.Hour {
		t.Fatalf("retention %v; want 400 days from audit_retention 400d", r)
	}
	c := gwEnrolled(e, "S001", "U001")

	// 30,000 records from 500 days ago, beyond the retention.
	const old = 30000
	oldest := app.Now().Add(-500 * 24 * time.Hour)
	for i := 0; i < old; i += 100 {
		err := st.Store.Update(context.Background(), func(tx store.Tx) error {
			for j := range 100 {
				r := audit.Record{Time: oldest.Add(time.Duration(i+j) * time.Second), Event: audit.CodeOK, Service: "S009", User: "OLD",
					ClientIP: "192.0.2.9", Actor: "customer", Detail: fmt.Sprintf("old record %d", i+j)}
				if err := audit.Append(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	const n = 40
	confirmLatencies(t, c, 5) // warm up
	without := confirmLatencies(t, c, n)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var rounds int
	pruned := make(chan struct{})
	wg.Go(func() {
		defer close(pruned)
		for ctx.Err() == nil {
			rounds++
			if st.PruneAudit(ctx) {
				return
			}
		}
	})
	with := confirmLatencies(t, c, n)
	select {
	case <-pruned:
		t.Log("pruning ended before the load did: the load overlapped only part of it")
	default:
	}
	select {
	case <-pruned:
	case <-time.After(2 * time.Minute):
		t.Fatal("pruning did not finish in 2 minutes")
	}
	cancel()
	wg.Wait()

	var left, recent int
	for _, r := range e.auditTrail() {
		if r.User == "OLD" {
			left++
		} else {
			recent++
		}
	}
	if left != 0 {
		t.Errorf("%d records older than audit_retention left", left)
	}
	if recent == 0 {
		t.Error("the recent records were pruned too")
	}
	t.Logf("%d old records pruned in %d rounds; confirmation latency without pruning p50 %v p95 %v max %v; with p50 %v p95 %v max %v",
		old, rounds, quantile(without, .5), quantile(without, .95), without[len(without)-1],
		quantile(with, .5), quantile(with, .95), with[len(with)-1])
	if quantile(with, .95) > quantile(without, .95)+retentionBound {
		t.Errorf("p95 confirmation latency %v while pruning; want at most %v (%v without) + %v",
			quantile(with, .95), quantile(without, .95)+retentionBound, quantile(without, .95), retentionBound)
	}
}
