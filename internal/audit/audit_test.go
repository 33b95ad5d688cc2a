package audit_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
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
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.Append(store.Audit, []byte("{not json")) }); err != nil {
		t.Fatal(err)
	}
	err := audit.Export(ctx, db, time.Time{}, func(audit.Record) error { return nil })
	if err == nil {
		t.Error("Export of a corrupt record succeeded")
	}
}
