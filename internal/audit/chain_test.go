package audit_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// linkAll links every record of the trail.
func linkAll(t *testing.T, s store.Store) string {
	t.Helper()
	_, head, err := audit.Chain(ctx, s, t0.Add(24*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	return head
}

// recordKeys are the keys of the trail's records, in order.
func recordKeys(t *testing.T, s store.Store) []string {
	t.Helper()
	page, _, err := s.Scan(ctx, store.Audit, "", store.MaxScanLimit)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range page {
		if audit.IsRecordKey(kv.Key) {
			keys = append(keys, kv.Key)
		}
	}
	return keys
}

// The chain links every settled record once and holds; a record changed,
// deleted or slipped in among linked ones is reported where it is; the
// export and pruning are unaffected by the links.
func TestChainDetectsTampering(t *testing.T) {
	db := open(t)
	appendAll(t, db, 250) // two under legacy keys
	// Records newer than the settled time wait for the next round.
	n, _, err := audit.Chain(ctx, db, t0.Add(100*time.Minute), 100)
	if err != nil || n != 100 {
		t.Fatalf("Chain up to record 100: %d, %v; want 100 linked", n, err)
	}
	head := linkAll(t, db)
	if n, again, err := audit.Chain(ctx, db, t0.Add(24*time.Hour), 100); n != 0 || again != head || err != nil {
		t.Errorf("Chain again: %d %q %v; want nothing more, the same head", n, again, err)
	}
	rep, err := audit.Verify(ctx, db)
	if err != nil || !rep.OK() || rep.Records != 250 || rep.Linked != 250 || rep.Head != head {
		t.Fatalf("Verify of an intact trail: %+v, %v", rep, err)
	}
	if got := len(export(t, db, time.Time{})); got != 250 {
		t.Errorf("export reads %d records; want 250 and no link", got)
	}

	keys := recordKeys(t, db)
	err = db.Update(ctx, func(tx store.Tx) error {
		// Record 10's detail changed, record 20 deleted, a record slipped
		// in at record 30's time.
		r := record(10)
		r.Detail = "nothing happened"
		b, _ := json.Marshal(r)
		if err := tx.Put(store.Audit, keys[10], b); err != nil {
			return err
		}
		if err := tx.Delete(store.Audit, keys[20]); err != nil {
			return err
		}
		_, err := store.AppendAt(tx, store.Audit, record(30).Time, []byte(`{"time":"2026-04-01T09:30:30Z","event":"unlocked"}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = audit.Verify(ctx, db)
	if err != nil || rep.OK() {
		t.Fatalf("Verify after tampering: %+v, %v", rep, err)
	}
	var what []string
	for _, p := range rep.Problems {
		what = append(what, p.What[:strings.Index(p.What, " ")])
	}
	if got := strings.Join(what, ","); got != "changed,deleted:,not" {
		t.Errorf("problems %+v; want record 10 changed, record 20 deleted, one not linked", rep.Problems)
	}

	// Pruning takes records with their links: what is kept still holds.
	db2 := open(t)
	appendAll(t, db2, 50)
	linkAll(t, db2)
	if _, _, err := audit.Prune(ctx, db2, t0.Add(20*time.Minute), audit.PruneOptions{Batch: 7, Pause: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.Verify(ctx, db2)
	if err != nil || !rep.OK() || rep.Records != 30 || rep.Linked != 30 {
		t.Errorf("Verify after pruning: %+v, %v; want the 30 kept, linked", rep, err)
	}
}
