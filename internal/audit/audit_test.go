package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

var ctx = context.Background()

var t0 = time.Date(2026, 4, 1, 9, 0, 30, 0, time.UTC)

func open(t *testing.T) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "otpgate.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func export(t *testing.T, s store.Store, since time.Time) []audit.Record {
	t.Helper()
	var out []audit.Record
	err := audit.Export(ctx, s, since, func(r audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// record i happens i minutes after t0.
func record(i int) audit.Record {
	return audit.Record{Time: t0.Add(time.Duration(i) * time.Minute), Event: audit.CodeInvalid,
		Service: "SVC01", User: "taro", ClientIP: "192.0.2.1", Actor: "customer",
		Detail: fmt.Sprintf("record %d", i)}
}

func details(rs []audit.Record) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Detail)
	}
	return out
}

func TestAppendExportRoundTrip(t *testing.T) {
	db := open(t)
	full := audit.Record{
		Time: t0.In(time.FixedZone("JST", 9*3600)), Event: audit.Released, Service: "SVC01", User: "taro",
		ClientIP: "2001:db8::1", Actor: "customer", Kind: "transfer", Rule: "furikomi",
		Request: "POST /transfer/execute", Digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Fields: map[string]string{"amount": "¥150,000", "payee": "ヤマダ タロウ"}, Detail: "upstream status 200",
	}
	if err := db.Update(ctx, func(tx store.Tx) error { return audit.Append(tx, full) }); err != nil {
		t.Fatal(err)
	}
	got := export(t, db, time.Time{})
	if len(got) != 1 {
		t.Fatalf("%d records, want 1", len(got))
	}
	if !got[0].Time.Equal(full.Time) {
		t.Errorf("time %v, want %v", got[0].Time, full.Time)
	}
	got[0].Time = full.Time
	if !reflect.DeepEqual(got[0], full) {
		t.Errorf("exported\n %+v\nwant\n %+v", got[0], full)
	}
}

func TestExportOrderAndSince(t *testing.T) {
	db := open(t)
	const n = 12 // past the ninth append, where unpadded keys would reorder
	// Several records per transaction and one per transaction.
	if err := db.Update(ctx, func(tx store.Tx) error {
		for i := range 5 {
			if err := audit.Append(tx, record(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < n; i++ {
		if err := db.Update(ctx, func(tx store.Tx) error { return audit.Append(tx, record(i)) }); err != nil {
			t.Fatal(err)
		}
	}

	want := func(from int) []string {
		var out []string
		for i := from; i < n; i++ {
			out = append(out, fmt.Sprintf("record %d", i))
		}
		return out
	}
	tests := []struct {
		name  string
		since time.Time
		want  []string
	}{
		{"zero since: everything, oldest first", time.Time{}, want(0)},
		{"before the first", t0.Add(-time.Hour), want(0)},
		{"exactly at a record: it is included", t0.Add(7 * time.Minute), want(7)},
		{"between records", t0.Add(7*time.Minute + time.Second), want(8)},
		{"at the last", t0.Add((n - 1) * time.Minute), want(n - 1)},
		{"after the last", t0.Add(n * time.Minute), nil},
		{"same instant in another zone", t0.Add(10 * time.Minute).In(time.FixedZone("JST", 9*3600)), want(10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := details(export(t, db, tc.since))
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The trail records a change only if the change commits.
func TestAppendInFailedTransactionIsNotKept(t *testing.T) {
	db := open(t)
	errRefused := errors.New("refused")
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := audit.Append(tx, record(0)); err != nil {
			return err
		}
		return errRefused
	})
	if err != errRefused {
		t.Fatalf("Update: %v", err)
	}
	if got := export(t, db, time.Time{}); len(got) != 0 {
		t.Errorf("records of a rolled-back transaction were kept: %q", details(got))
	}
}

func TestExportStopsOnCallbackError(t *testing.T) {
	db := open(t)
	if err := db.Update(ctx, func(tx store.Tx) error {
		for i := range 3 {
			if err := audit.Append(tx, record(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	errStop := errors.New("client went away")
	calls := 0
	err := audit.Export(ctx, db, time.Time{}, func(audit.Record) error { calls++; return errStop })
	if !errors.Is(err, errStop) || calls != 1 {
		t.Errorf("Export: %v after %d calls; want errStop after 1", err, calls)
	}
}

func TestExportRefusesCorruptRecord(t *testing.T) {
	db := open(t)
	err := db.Update(ctx, func(tx store.Tx) error {
		_, err := store.AppendAt(tx, store.Audit, t0, []byte("{not json"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = audit.Export(ctx, db, time.Time{}, func(audit.Record) error { return nil })
	if err == nil {
		t.Error("Export of a corrupt record succeeded")
	}
}

// A record is placed by its time, so one without a time is refused: the
// change it was written with does not commit either.
func TestAppendRefusesZeroTime(t *testing.T) {
	db := open(t)
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(store.Services, "SVC01", []byte("{}")); err != nil {
			return err
		}
		return audit.Append(tx, audit.Record{Event: audit.RequireOTP, Service: "SVC01"})
	})
	if err == nil || !strings.Contains(err.Error(), "without a time") {
		t.Fatalf("Update: %v; want the record refused for want of a time", err)
	}
	if got := export(t, db, time.Time{}); len(got) != 0 {
		t.Errorf("trail %q", details(got))
	}
	err = db.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(store.Services, "SVC01")
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the change written beside the refused record: %v; want it rolled back", err)
	}
}

// scanCounter counts the store's page reads.
type scanCounter struct {
	store.Store
	scans, maxLimit int
}

func (s *scanCounter) Scan(ctx context.Context, b store.Bucket, after string, limit int) ([]store.KV, string, error) {
	s.scans++
	s.maxLimit = max(s.maxLimit, limit)
	return s.Store.Scan(ctx, b, after, limit)
}

// A trail longer than a page is read page by page, in order, with every
// filter applied, on a store that keeps etcd's transaction limits.
func TestQueryPaginatesWithFilters(t *testing.T) {
	db, err := boltstore.OpenWith(filepath.Join(t.TempDir(), "otpgate.db"), boltstore.Options{TxnLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	const n = 1100 // five and a half pages
	users := []string{"taro", "jiro", "hanako"}
	events := []audit.Event{audit.CodeOK, audit.CodeInvalid, audit.Locked, audit.Unlocked}
	rec := func(i int) audit.Record {
		// Seconds apart, written out of order within each transaction:
		// the key is the time, not the order of writing.
		return audit.Record{Time: t0.Add(time.Duration(i) * time.Second), Event: events[i%len(events)],
			Service: fmt.Sprintf("SVC%02d", i%2), User: users[i%len(users)], Detail: fmt.Sprint(i)}
	}
	for from := 0; from < n; from += 100 {
		err := db.Update(ctx, func(tx store.Tx) error {
			for i := from + 99; i >= from; i-- {
				if err := audit.Append(tx, rec(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    audit.Filter
	}{
		{"everything", audit.Filter{}},
		{"since", audit.Filter{Since: t0.Add(317 * time.Second)}},
		{"since and until", audit.Filter{Since: t0.Add(250 * time.Second), Until: t0.Add(901 * time.Second)}},
		{"service", audit.Filter{Service: "SVC01"}},
		{"service and user", audit.Filter{Service: "SVC00", User: "hanako"}},
		{"events", audit.Filter{Events: []audit.Event{audit.Locked, audit.Unlocked}}},
		{"all at once", audit.Filter{Since: t0.Add(100 * time.Second), Until: t0.Add(1000 * time.Second),
			Service: "SVC01", User: "jiro", Events: []audit.Event{audit.CodeInvalid}}},
		{"nothing matches", audit.Filter{User: "nobody"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for i := range n {
				r := rec(i)
				if !r.Time.Before(tc.f.Since) && (tc.f.Until.IsZero() || r.Time.Before(tc.f.Until)) &&
					(tc.f.Service == "" || r.Service == tc.f.Service) && (tc.f.User == "" || r.User == tc.f.User) &&
					(len(tc.f.Events) == 0 || slices.Contains(tc.f.Events, r.Event)) {
					want = append(want, r.Detail)
				}
			}
			sc := &scanCounter{Store: db}
			var got []string
			err := audit.Query(ctx, sc, tc.f, func(r audit.Record) error {
				got = append(got, r.Detail)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %d records %q…; want %d %q…", len(got), head(got), len(want), head(want))
			}
			if tc.f.Since.IsZero() && tc.f.Until.IsZero() && sc.scans < n/200 {
				t.Errorf("%d reads of at most %d records for a trail of %d; want one per page", sc.scans, sc.maxLimit, n)
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// Records that earlier versions keyed by a counter sort before every
// time-keyed record; a query since a time still finds them by their time.
func TestQueryFindsRecordsUnderLegacyKeys(t *testing.T) {
	db := open(t)
	err := db.Update(ctx, func(tx store.Tx) error {
		for i, r := range []audit.Record{record(1), record(5)} {
			b, _ := json.Marshal(r)
			if err := tx.Put(store.Audit, fmt.Sprintf("%020d", i+1), b); err != nil {
				return err
			}
		}
		return audit.Append(tx, record(9))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    audit.Filter
		want []string
	}{
		{audit.Filter{}, []string{"record 1", "record 5", "record 9"}},
		{audit.Filter{Since: t0.Add(2 * time.Minute)}, []string{"record 5", "record 9"}},
		{audit.Filter{Since: t0.Add(2 * time.Minute), Until: t0.Add(9 * time.Minute)}, []string{"record 5"}},
		{audit.Filter{Until: t0.Add(2 * time.Minute)}, []string{"record 1"}},
	} {
		var got []string
		if err := audit.Query(ctx, db, tc.f, func(r audit.Record) error { got = append(got, r.Detail); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %q, want %q", tc.f, got, tc.want)
		}
	}
}
