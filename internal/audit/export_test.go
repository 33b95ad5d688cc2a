package audit_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/store"
)

// appendAll writes records 0…n-1, two of them under legacy counter keys.
func appendAll(t *testing.T, s store.Store, n int) {
	t.Helper()
	for from := 0; from < n; from += 100 {
		appendRange(t, s, from, min(n, from+100))
	}
}

// appendRange writes records from…to-1 in one transaction.
func appendRange(t *testing.T, s store.Store, from, to int) {
	t.Helper()
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := from; i < to; i++ {
			r := record(i)
			if i < 2 {
				b, _ := json.Marshal(r)
				if err := tx.Put(store.Audit, fmt.Sprintf("%020d", i+1), b); err != nil {
					return err
				}
				continue
			}
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

// Pages of a filtered export, each asked with the cursor of the one
// before, give every selected record once, in order, legacy keys included.
func TestQueryPageResumesWithItsCursor(t *testing.T) {
	db := open(t)
	appendAll(t, db, 25)
	for _, tc := range []struct {
		name string
		f    audit.Filter
		want int // first record selected; every one after it is too
	}{
		{"all", audit.Filter{}, 0},
		{"since", audit.Filter{Since: t0.Add(time.Minute)}, 1},
		{"since, past the legacy keys", audit.Filter{Since: t0.Add(7 * time.Minute)}, 7},
		{"user", audit.Filter{User: "taro"}, 0},
	} {
		for _, size := range []int{1, 4, 100} {
			var got []string
			after := ""
			for range 100 {
				page, next, err := audit.QueryPage(ctx, db, tc.f, after, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > size {
					t.Fatalf("%s: a page of %d records; asked for %d", tc.name, len(page), size)
				}
				got = append(got, details(page)...)
				if next == "" {
					break
				}
				after = next
			}
			var want []string
			for i := tc.want; i < 25; i++ {
				want = append(want, fmt.Sprintf("record %d", i))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, pages of %d: %q; want %q", tc.name, size, got, want)
			}
		}
	}
	if page, next, err := audit.QueryPage(ctx, db, audit.Filter{User: "nobody"}, "", 10); err != nil || len(page) != 0 || next != "" {
		t.Errorf("no match: %v %q %v; want an empty last page", page, next, err)
	}
}

// The CSV export has a header, one row a record in UTC, the shown fields
// in name order, and cells a spreadsheet would run as formulas written as
// text.
func TestCSVWriter(t *testing.T) {
	var b bytes.Buffer
	w := audit.NewCSVWriter(&b)
	r := audit.Record{Time: time.Date(2026, 4, 1, 18, 0, 0, 0, time.FixedZone("JST", 9*3600)), Event: audit.Released,
		Service: "S001", User: "U001", ClientIP: "192.0.2.1", UserAgent: "=HYPERLINK(\"http://evil\")", Actor: "customer",
		Kind: "transfer", Digest: "abc", Fields: map[string]string{"to_account": "1234567", "amount": "-5,000円"}, Detail: "upstream status 200"}
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || !slices.Equal(rows[0], audit.CSVHeader) {
		t.Fatalf("rows %q; want the header and one record", rows)
	}
	got := map[string]string{}
	for i, name := range rows[0] {
		got[name] = rows[1][i]
	}
	for name, want := range map[string]string{
		"time": "2026-04-01T09:00:00Z", "event": "released", "user": "U001", "user_agent": `'=HYPERLINK("http://evil")`,
		"fields": "amount=-5,000円; to_account=1234567", "digest": "abc",
	} {
		if got[name] != want {
			t.Errorf("%s = %q; want %q", name, got[name], want)
		}
	}
	var empty bytes.Buffer
	if err := audit.NewCSVWriter(&empty).Flush(); err != nil || strings.TrimSpace(empty.String()) != strings.Join(audit.CSVHeader, ",") {
		t.Errorf("an empty export: %q, %v; want the header alone", empty.String(), err)
	}
}

// Prune deletes the records before the cutoff, legacy keys included, in
// bounded batches, and keeps the rest; calls go on until done.
func TestPruneInBatches(t *testing.T) {
	db := open(t)
	appendAll(t, db, 25)
	cutoff := t0.Add(20 * time.Minute)
	opts := audit.PruneOptions{Batch: 3, Batches: 2, Pause: time.Millisecond}
	total := 0
	for round := 0; ; round++ {
		n, done, err := audit.Prune(ctx, db, cutoff, opts)
		if err != nil {
			t.Fatal(err)
		}
		if n > 6 {
			t.Fatalf("one call deleted %d records; want at most 2 batches of 3", n)
		}
		total += n
		if done {
			break
		}
		if round == 10 {
			t.Fatal("pruning did not finish")
		}
	}
	if total != 20 {
		t.Errorf("%d records deleted; want the 20 before the cutoff", total)
	}
	got := details(export(t, db, time.Time{}))
	if want := []string{"record 20", "record 21", "record 22", "record 23", "record 24"}; !slices.Equal(got, want) {
		t.Errorf("kept %q; want %q", got, want)
	}
	if n, done, err := audit.Prune(ctx, db, cutoff, opts); n != 0 || !done || err != nil {
		t.Errorf("pruning again: %d %v %v; want nothing left to do", n, done, err)
	}
}
