// Package storetest is the conformance suite every store.Store passes: what
// the gateway relies on (atomic read-check-write, re-run safety, exactly one
// winner of a race, expiry, time order, complete pagination, size limits,
// failures marked unavailable) checked through the interface alone, so that
// bbolt and etcd are held to the same contract.
//
// An implementation's test calls Run with a function that opens a fresh,
// empty store on the clock it is given. The suite advances that clock
// instead of sleeping, so it runs in seconds.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// NewStore opens a fresh, empty store whose expiries follow now. The suite
// closes it when the test ends (and sometimes before: Close must be
// harmless to call twice).
type NewStore func(t *testing.T, now func() time.Time) store.Store

// Run runs the suite against stores made by newStore, each subtest on a
// store of its own, in parallel.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Atomicity", testAtomicity},
		{"FailedWriteFailsTransaction", testFailedWriteFailsTransaction},
		{"CallersErrorUnchanged", testCallersErrorUnchanged},
		{"ReadsOwnWrites", testReadsOwnWrites},
		{"ConcurrentIncrementsNotLost", testConcurrentIncrements},
		{"ConcurrentClaimOneWinner", testConcurrentClaim},
		{"RerunWithFailuresInTheGroup", testRerunWithFailures},
		{"Expiry", testExpiry},
		{"ExpiryInsideUpdate", testExpiryInsideUpdate},
		{"Sweep", testSweep},
		{"TimeOrderedKeys", testTimeOrderedKeys},
		{"Pagination", testPagination},
		{"PaginationUnderConcurrentWrites", testPaginationUnderWrites},
		{"ValueLimits", testValueLimits},
		{"TransactionWithinLimits", testTransactionWithinLimits},
		{"ChunkedRoundTrip", testChunkedRoundTrip},
		{"ChunkedCorruptionDetected", testChunkedCorruption},
		{"ChunkedExpiry", testChunkedExpiry},
		{"ChunkedPutInOneTransaction", testChunkedPut},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"CancelledContextRunsNothing", testCancelledContext},
		{"UnavailableAfterClose", testUnavailableAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{t: t, clock: &clock{}}
			e.clock.ns.Store(start.UnixNano())
			e.s = newStore(t, e.clock.now)
			t.Cleanup(func() { e.s.Close() })
			tc.fn(t, e)
		})
	}
}

var (
	ctx   = context.Background()
	start = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	// errBoom is a caller's own error.
	errBoom = errors.New("boom")
)

// bucket is the bucket the tests write to; Audit for time-ordered keys.
const bucket = store.Pending

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time            { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *clock) set(t time.Time)           { c.ns.Store(t.UnixNano()) }
func (c *clock) since(t time.Time) float64 { return c.now().Sub(t).Seconds() }

type env struct {
	t     *testing.T
	s     store.Store
	clock *clock
}

func (e *env) update(fn func(store.Tx) error) {
	e.t.Helper()
	if err := e.s.Update(ctx, fn); err != nil {
		e.t.Fatalf("Update: %v", err)
	}
}

func (e *env) put(key, value string) {
	e.t.Helper()
	e.update(func(tx store.Tx) error { return tx.Put(bucket, key, []byte(value)) })
}

func (e *env) putTTL(key, value string, ttl time.Duration) {
	e.t.Helper()
	e.update(func(tx store.Tx) error { return store.PutTTL(tx, bucket, key, []byte(value), ttl) })
}

// putMany writes keys in Updates of at most 100 (MaxTxnKeys).
func (e *env) putMany(keys []string, value func(key string) string) {
	e.t.Helper()
	for chunk := range slices.Chunk(keys, 100) {
		e.update(func(tx store.Tx) error {
			for _, k := range chunk {
				if err := tx.Put(bucket, k, []byte(value(k))); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

// get reads key in a View, copying the value out.
func (e *env) get(b store.Bucket, key string) (string, error) {
	e.t.Helper()
	var v string
	err := e.s.View(ctx, func(tx store.Tx) error {
		got, err := tx.Get(b, key)
		v = string(got)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatalf("Get %s/%s: %v", b, key, err)
	}
	return v, err
}

// has says whether key is there, failing on any other error.
func (e *env) has(key string) bool {
	e.t.Helper()
	_, err := e.get(bucket, key)
	return err == nil
}

// scanAll reads the whole bucket in pages of limit.
func (e *env) scanAll(b store.Bucket, limit int) []store.KV {
	e.t.Helper()
	var all []store.KV
	after := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			e.t.Fatal("Scan never ended")
		}
		page, next, err := e.s.Scan(ctx, b, after, limit)
		if err != nil {
			e.t.Fatalf("Scan %s after %q: %v", b, after, err)
		}
		if len(page) > limit {
			e.t.Fatalf("Scan page of %d entries, limit %d", len(page), limit)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		if next <= after {
			e.t.Fatalf("Scan cursor went from %q back to %q", after, next)
		}
		after = next
	}
}

func keys(kvs []store.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// testAtomicity: an error from fn discards every write fn made, of every
// kind, and Update hands that error back as it is.
func testAtomicity(t *testing.T, e *env) {
	e.put("kept", "before")
	e.put("doomed", "before")
	err := e.s.Update(ctx, func(tx store.Tx) error {
		for _, w := range []error{
			tx.Put(bucket, "new", []byte("x")),
			tx.Put(bucket, "kept", []byte("changed")),
			store.PutTTL(tx, bucket, "expiring", []byte("x"), time.Hour),
			tx.Delete(bucket, "doomed"),
			func() error { _, err := store.AppendAt(tx, store.Audit, start, []byte("record")); return err }(),
		} {
			if w != nil {
				return w
			}
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("Update returned %v, want fn's own error as it is", err)
	}
	for key, want := range map[string]string{"kept": "before", "doomed": "before"} {
		if v, err := e.get(bucket, key); err != nil || v != want {
			t.Errorf("%s after the failed Update: %q, %v; want %q", key, v, err, want)
		}
	}
	for _, key := range []string{"new", "expiring"} {
		if e.has(key) {
			t.Errorf("%s was written by the failed Update", key)
		}
	}
	if audit := e.scanAll(store.Audit, 10); len(audit) != 0 {
		t.Errorf("the failed Update's AppendAt was kept: %q", keys(audit))
	}
}

// testFailedWriteFailsTransaction: a write the store refused fails the
// whole Update even when fn ignores the error, so sloppy error handling
// cannot commit half a change.
func testFailedWriteFailsTransaction(t *testing.T, e *env) {
	err := e.s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(bucket, "companion", []byte("x")); err != nil {
			return err
		}
		_ = tx.Put(bucket, "big", make([]byte, store.MaxValueSize+1))
		return nil
	})
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Update whose fn ignored a refused Put: %v, want ErrTooLarge", err)
	}
	if e.has("companion") || e.has("big") {
		t.Error("an Update with a refused write committed")
	}
}

// listError is a caller's error type that == cannot compare.
type listError []string

func (l listError) Error() string { return strings.Join(l, "; ") }

// testCallersErrorUnchanged: fn's error comes back unchanged and is never
// taken for the store's failure, whatever its type, from Update and View.
func testCallersErrorUnchanged(t *testing.T, e *env) {
	for _, fnErr := range []error{
		errBoom,
		fmt.Errorf("checking: %w", store.ErrNotFound),
		listError{"first", "second"},
	} {
		for name, run := range map[string]func(context.Context, func(store.Tx) error) error{"Update": e.s.Update, "View": e.s.View} {
			err := run(ctx, func(store.Tx) error { return fnErr })
			if errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s: fn's %T error was reported as the store being unavailable: %v", name, fnErr, err)
			}
			if err == nil || err.Error() != fnErr.Error() || fmt.Sprintf("%T", err) != fmt.Sprintf("%T", fnErr) {
				t.Errorf("%s returned %T %v, want fn's %T %v as it is", name, err, err, fnErr, fnErr)
			}
		}
	}
}

// testReadsOwnWrites: Get inside an Update sees that Update's writes.
func testReadsOwnWrites(t *testing.T, e *env) {
	e.update(func(tx store.Tx) error {
		steps := []struct {
			write func() error
			want  string // "" for ErrNotFound
		}{
			{func() error { return tx.Put(bucket, "k", []byte("v1")) }, "v1"},
			{func() error { return store.PutTTL(tx, bucket, "k", []byte("v2"), time.Minute) }, "v2"},
			{func() error { return tx.Delete(bucket, "k") }, ""},
			{func() error { return tx.Put(bucket, "k", []byte("v3")) }, "v3"},
		}
		for i, s := range steps {
			if err := s.write(); err != nil {
				return err
			}
			v, err := tx.Get(bucket, "k")
			if s.want == "" && !errors.Is(err, store.ErrNotFound) || s.want != "" && (err != nil || string(v) != s.want) {
				return fmt.Errorf("step %d: Get = %q, %v; want %q", i, v, err, s.want)
			}
		}
		return nil
	})
}

const racers = 50

// incr is a read-modify-write of a decimal counter; it returns the value
// it read.
func incr(tx store.Tx, key string) (int, error) {
	n := 0
	v, err := tx.Get(bucket, key)
	switch {
	case err == nil:
		if n, err = strconv.Atoi(string(v)); err != nil {
			return 0, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return 0, err
	}
	return n, tx.Put(bucket, key, []byte(strconv.Itoa(n+1)))
}

// raceIncrements runs 50 Updates at once, each incrementing one counter
// and then, if refuse says so, failing with errRefused. It returns each
// caller's error and the counter value its fn handed back (set afresh on
// every run), and checks that the counter counts the committed callers
// and that those were handed 0, 1, 2, … each once: a store returning a
// discarded run's result would repeat one, one losing an increment would
// miss one.
func raceIncrements(t *testing.T, e *env, refuse func(i int) bool) []error {
	saw := make([]int, racers)
	errs := make([]error, racers)
	var runs atomic.Int64
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			errs[i] = e.s.Update(ctx, func(tx store.Tx) error {
				runs.Add(1)
				var err error
				if saw[i], err = incr(tx, "counter"); err != nil {
					return err
				}
				if refuse(i) {
					return errRefused
				}
				return nil
			})
		})
	}
	wg.Wait()
	var committed []int
	for i := range racers {
		if !refuse(i) {
			committed = append(committed, saw[i])
		}
	}
	if v, err := e.get(bucket, "counter"); err != nil || v != strconv.Itoa(len(committed)) {
		t.Errorf("counter = %q, %v; want %d", v, err, len(committed))
	}
	slices.Sort(committed)
	for i, n := range committed {
		if n != i {
			t.Errorf("committed callers were handed %v; want each of 0…%d once", committed, len(committed)-1)
			break
		}
	}
	if runs.Load() < racers {
		t.Errorf("%d runs for %d Updates", runs.Load(), racers)
	}
	t.Logf("%d runs of fn for %d Updates", runs.Load(), racers)
	return errs
}

var errRefused = errors.New("caller refuses")

// testConcurrentIncrements: 50 goroutines increment one counter; none is
// lost and each is handed its committed run's result.
func testConcurrentIncrements(t *testing.T, e *env) {
	for i, err := range raceIncrements(t, e, func(int) bool { return false }) {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
}

// testRerunWithFailures: half the callers fail after incrementing. A
// failing fn takes neither its own increment nor its companions' down
// (bbolt re-runs the companions of a failed fn), each caller gets its own
// outcome, and the others' results are their committed runs'.
func testRerunWithFailures(t *testing.T, e *env) {
	odd := func(i int) bool { return i%2 == 1 }
	for i, err := range raceIncrements(t, e, odd) {
		if want := map[bool]error{true: errRefused, false: nil}[odd(i)]; err != want {
			t.Errorf("caller %d: %v, want %v", i, err, want)
		}
	}
}

// testConcurrentClaim: 50 goroutines race to claim one key; exactly one
// wins, and the key holds the winner's name.
func testConcurrentClaim(t *testing.T, e *env) {
	won := make([]bool, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			errs[i] = e.s.Update(ctx, func(tx store.Tx) error {
				won[i] = false
				_, err := tx.Get(bucket, "claim")
				if !errors.Is(err, store.ErrNotFound) {
					return err // nil: someone else holds it
				}
				won[i] = true
				return store.PutTTL(tx, bucket, "claim", []byte(strconv.Itoa(i)), time.Minute)
			})
		})
	}
	wg.Wait()
	var winners []int
	for i := range racers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
		}
		if won[i] {
			winners = append(winners, i)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("claim won by %v, want exactly one caller", winners)
	}
	if v, err := e.get(bucket, "claim"); err != nil || v != strconv.Itoa(winners[0]) {
		t.Errorf("claim holds %q, %v; want the winner %d", v, err, winners[0])
	}
}

// testExpiry: a key written with a time to live is there until it expires
// and gone from Get and Scan from that instant, without a sweep. Later
// writes replace the expiry; Delete clears it.
func testExpiry(t *testing.T, e *env) {
	e.putTTL("ttl", "v", time.Minute)
	e.putTTL("made-permanent", "v", time.Minute)
	e.put("made-permanent", "v2") // Put drops the expiry
	e.put("made-expiring", "v")
	e.putTTL("made-expiring", "v2", time.Minute)
	e.putTTL("extended", "v", time.Minute)
	e.putTTL("deleted-then-put", "v", time.Minute)
	e.update(func(tx store.Tx) error { return tx.Delete(bucket, "deleted-then-put") })
	e.put("deleted-then-put", "v2")
	e.put("permanent", "v")

	page := e.scanAll(bucket, 100)
	want := map[string]time.Time{"ttl": start.Add(time.Minute), "made-expiring": start.Add(time.Minute), "extended": start.Add(time.Minute)}
	for _, kv := range page {
		if !kv.Expires.Equal(want[kv.Key]) {
			t.Errorf("Scan: %s expires %v, want %v", kv.Key, kv.Expires, want[kv.Key])
		}
	}

	e.clock.advance(30 * time.Second)
	e.putTTL("extended", "v", time.Minute) // now expires at 1m30s
	e.clock.set(start.Add(time.Minute - time.Nanosecond))
	for _, k := range []string{"ttl", "made-expiring", "extended"} {
		if !e.has(k) {
			t.Errorf("%s gone %v before its expiry", k, time.Nanosecond)
		}
	}
	e.clock.set(start.Add(time.Minute))
	gone := []string{"ttl", "made-expiring"}
	live := []string{"extended", "made-permanent", "deleted-then-put", "permanent"}
	for _, k := range gone {
		if e.has(k) {
			t.Errorf("%s still there for Get at its expiry", k)
		}
	}
	for _, k := range live {
		if !e.has(k) {
			t.Errorf("%s gone at %v", k, e.clock.since(start))
		}
	}
	if got := keys(e.scanAll(bucket, 100)); !slices.Equal(got, []string{"deleted-then-put", "extended", "made-permanent", "permanent"}) {
		t.Errorf("Scan at the expiry: %q", got)
	}
	e.clock.set(start.Add(90 * time.Second))
	if e.has("extended") {
		t.Error("extended still there after its second time to live")
	}
	e.clock.advance(24 * time.Hour)
	for _, k := range live[1:] {
		if !e.has(k) {
			t.Errorf("%s, written without expiry, gone after a day", k)
		}
	}

	// A time to live must be positive; the Update fails whole.
	for _, ttl := range []time.Duration{0, -time.Second} {
		err := e.s.Update(ctx, func(tx store.Tx) error {
			_ = store.PutTTL(tx, bucket, "zero", []byte("v"), ttl) // ignored: the Update still fails
			return nil
		})
		if err == nil || errors.Is(err, store.ErrUnavailable) || e.has("zero") {
			t.Errorf("PutTTL with ttl %v: Update %v", ttl, err)
		}
	}
}

// testExpiryInsideUpdate: an expired key is absent for a read-check-write
// too, so an expired claim can be taken.
func testExpiryInsideUpdate(t *testing.T, e *env) {
	e.putTTL("lock", "first", time.Minute)
	take := func() (bool, error) {
		var took bool
		err := e.s.Update(ctx, func(tx store.Tx) error {
			took = false
			if _, err := tx.Get(bucket, "lock"); !errors.Is(err, store.ErrNotFound) {
				return err
			}
			took = true
			return store.PutTTL(tx, bucket, "lock", []byte("second"), time.Minute)
		})
		return took, err
	}
	if took, err := take(); took || err != nil {
		t.Fatalf("took a live claim: %v, %v", took, err)
	}
	e.clock.advance(time.Minute)
	if took, err := take(); !took || err != nil {
		t.Fatalf("could not take an expired claim: %v, %v", took, err)
	}
	if v, _ := e.get(bucket, "lock"); v != "second" {
		t.Errorf("claim holds %q", v)
	}
}

// testSweep: Sweep removes at most limit keys per call, never one that has
// not expired, and ends; expired keys stay invisible before and after.
func testSweep(t *testing.T, e *env) {
	const n, limit = 25, 10
	e.update(func(tx store.Tx) error {
		for i := range n {
			if err := store.PutTTL(tx, bucket, fmt.Sprintf("short%02d", i), []byte("v"), time.Minute); err != nil {
				return err
			}
			if err := store.PutTTL(tx, bucket, fmt.Sprintf("long%02d", i), []byte("v"), time.Hour); err != nil {
				return err
			}
		}
		return tx.Put(bucket, "permanent", []byte("v"))
	})
	if removed, err := e.s.Sweep(ctx, limit); err != nil || removed != 0 {
		t.Errorf("Sweep before anything expired: %d, %v", removed, err)
	}
	e.clock.advance(time.Minute)
	total := 0
	for calls := 0; ; calls++ {
		if calls > n {
			t.Fatal("Sweep does not end")
		}
		removed, err := e.s.Sweep(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		if removed > limit {
			t.Fatalf("Sweep removed %d, limit %d", removed, limit)
		}
		total += removed
		if removed < limit {
			break
		}
	}
	if total > n {
		t.Errorf("Sweep removed %d keys, only %d had expired", total, n)
	}
	got := keys(e.scanAll(bucket, 7))
	if len(got) != n+1 || got[0] != "long00" || got[n] != "permanent" {
		t.Errorf("after sweeping: %q; want long00…long24 and permanent", got)
	}
	if _, err := e.s.Sweep(ctx, 0); err == nil {
		t.Error("Sweep with limit 0 accepted")
	}
}

// testTimeOrderedKeys: AppendAt keys sort by time, equal times stay unique
// and in call order, within one Update and across Updates; TimeCursor
// starts a Scan at a time.
func testTimeOrderedKeys(t *testing.T, e *env) {
	type rec struct {
		at   time.Duration // after start
		name string
	}
	batches := [][]rec{
		{{0, "a"}, {-time.Second, "early"}, {time.Second, "late"}, {0, "b"}, {0, "c"}},
		{{0, "d"}, {time.Nanosecond, "e"}, {-time.Nanosecond, "f"}},
		{{time.Second, "g"}},
	}
	for _, batch := range batches {
		e.update(func(tx store.Tx) error {
			for _, r := range batch {
				if _, err := store.AppendAt(tx, store.Audit, start.Add(r.at), []byte(r.name)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	var got []string
	all := e.scanAll(store.Audit, 3)
	for _, kv := range all {
		got = append(got, string(kv.Value))
	}
	if want := "early f a b c d e late g"; strings.Join(got, " ") != want {
		t.Errorf("records in key order: %s; want %s", strings.Join(got, " "), want)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Key >= all[i].Key || len(all[i].Key) != len(all[0].Key) {
			t.Errorf("keys %q, %q: not strictly increasing at fixed width", all[i-1].Key, all[i].Key)
		}
	}

	var from []string
	after := store.TimeCursor(start)
	for {
		page, next, err := e.s.Scan(ctx, store.Audit, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range page {
			from = append(from, string(kv.Value))
		}
		if next == "" {
			break
		}
		after = next
	}
	if want := "a b c d e late g"; strings.Join(from, " ") != want {
		t.Errorf("records from TimeCursor(start): %s; want %s", strings.Join(from, " "), want)
	}
	if store.TimeCursor(start.Add(time.Hour)) <= all[len(all)-1].Key[:16] {
		t.Error("TimeCursor of a later time sorts before the last key")
	}

	err := e.s.Update(ctx, func(tx store.Tx) error {
		_, err := store.AppendAt(tx, store.Audit, time.Unix(-1, 0), []byte("x"))
		return err
	})
	if err == nil {
		t.Error("AppendAt before 1970 accepted")
	}
}

// testPagination: Scan covers every key exactly once, in order, whatever
// the page size; pages are copies; cursors between keys work; bad limits
// are the caller's error.
func testPagination(t *testing.T, e *env) {
	if page, next, err := e.s.Scan(ctx, bucket, "", 10); err != nil || len(page) != 0 || next != "" {
		t.Errorf("Scan of an empty bucket: %q, %q, %v", keys(page), next, err)
	}
	const n = 237
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("k%04d", i*2)) // gaps for cursors between keys
	}
	e.putMany(want, func(k string) string { return "v" + k })
	e.put("a-first", "va-first")
	want = append([]string{"a-first"}, want...)
	e.update(func(tx store.Tx) error { return tx.Put(store.Sessions, "k0000", []byte("elsewhere")) })

	for _, limit := range []int{1, 7, 100, store.MaxScanLimit} {
		all := e.scanAll(bucket, limit)
		if got := keys(all); !slices.Equal(got, want) {
			t.Errorf("limit %d: %d keys, want %d in order", limit, len(got), len(want))
		}
		for _, kv := range all {
			if string(kv.Value) != "v"+kv.Key {
				t.Errorf("limit %d: %s = %q", limit, kv.Key, kv.Value)
			}
		}
	}

	page, _, err := e.s.Scan(ctx, bucket, "k0003", 2) // between k0002 and k0004
	if err != nil || !slices.Equal(keys(page), []string{"k0004", "k0006"}) {
		t.Errorf("Scan after a missing key: %q, %v", keys(page), err)
	}
	page, next, err := e.s.Scan(ctx, bucket, want[n-1], 5)
	if err != nil || len(page) != 1 || next != "" {
		t.Errorf("last page: %q, next %q, %v; want the last key and no next", keys(page), next, err)
	}

	page[0].Value[0] ^= 0xff // a copy: the store keeps its value
	if v, _ := e.get(bucket, page[0].Key); v != "v"+page[0].Key {
		t.Errorf("changing a Scan result changed the store: %q", v)
	}

	for _, limit := range []int{0, -1, store.MaxScanLimit + 1} {
		if _, _, err := e.s.Scan(ctx, bucket, "", limit); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Scan limit %d: %v, want the caller's error", limit, err)
		}
	}
}

// testPaginationUnderWrites: keys written and deleted while a scan runs,
// by another goroutine and right at the cursor between pages, make Scan
// neither skip nor repeat the keys that stay, nor go backwards.
func testPaginationUnderWrites(t *testing.T, e *env) {
	const n = 200
	var stable []string
	for i := range n {
		stable = append(stable, fmt.Sprintf("k%04d", i))
	}
	e.putMany(stable, func(string) string { return "stable" })

	stop, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Go(func() {
		for i := 0; i < 100000; i++ { // bounded; stopped when the scans end
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("k%04d-churn", (i*37)%n) // between the stable keys
			err := e.s.Update(ctx, func(tx store.Tx) error {
				if i%3 == 2 {
					return tx.Delete(bucket, k)
				}
				return tx.Put(bucket, k, []byte("churn"))
			})
			if err != nil {
				t.Error(err)
				return
			}
			if writes.Add(1) == 5 {
				close(started)
			}
		}
	})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not start")
	}
	for round := range 3 {
		seen := map[string]int{}
		after, last := "", ""
		for pages := 0; ; pages++ {
			if pages > 10*n {
				t.Fatal("Scan never ended")
			}
			page, next, err := e.s.Scan(ctx, bucket, after, 5)
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range page {
				if kv.Key <= last {
					t.Errorf("round %d: Scan went from %q to %q", round, last, kv.Key)
				}
				last = kv.Key
				seen[kv.Key]++
			}
			if next == "" {
				break
			}
			// Between pages: a key right after the cursor, one right
			// before it, and the key just read deleted.
			e.update(func(tx store.Tx) error {
				if err := tx.Put(bucket, next+"+", []byte("after the cursor")); err != nil {
					return err
				}
				if err := tx.Put(bucket, next[:len(next)-1], []byte("before the cursor")); err != nil {
					return err
				}
				return tx.Delete(bucket, next)
			})
			after = next
		}
		for _, k := range stable {
			if seen[k] != 1 {
				t.Errorf("round %d: stable key %s seen %d times", round, k, seen[k])
			}
		}
		e.putMany(stable, func(string) string { return "stable" }) // the deleted ones back
	}
	close(stop)
	wg.Wait()
	t.Logf("%d concurrent writes during 3 scans", writes.Load())
}

// testValueLimits: Put and PutTTL take values up to MaxValueSize and keys
// up to MaxKeySize; beyond is ErrTooLarge, the caller's error, and nothing
// is written.
func testValueLimits(t *testing.T, e *env) {
	largest := bytes.Repeat([]byte("v"), store.MaxValueSize)
	e.update(func(tx store.Tx) error { return tx.Put(bucket, "largest", largest) })
	if v, err := e.get(bucket, "largest"); err != nil || v != string(largest) {
		t.Errorf("a MaxValueSize value read back as %d bytes, %v", len(v), err)
	}
	long := strings.Repeat("k", store.MaxKeySize)
	e.update(func(tx store.Tx) error { return tx.Put(bucket, long, []byte("v")) })

	over := make([]byte, store.MaxValueSize+1)
	for name, write := range map[string]func(tx store.Tx) error{
		"Put":    func(tx store.Tx) error { return tx.Put(bucket, "over", over) },
		"PutTTL": func(tx store.Tx) error { return store.PutTTL(tx, bucket, "over", over, time.Hour) },
		"key":    func(tx store.Tx) error { return tx.Put(bucket, "over"+long, []byte("v")) },
	} {
		err := e.s.Update(ctx, write)
		if !errors.Is(err, store.ErrTooLarge) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s over the limit: %v, want ErrTooLarge", name, err)
		}
	}
	if e.has("over") || e.has("over"+long) {
		t.Error("a value over the limit was written")
	}
	if err := e.s.Update(ctx, func(tx store.Tx) error { return tx.Put(bucket, "", []byte("v")) }); err == nil {
		t.Error("Put with an empty key accepted")
	}
}

// testTransactionWithinLimits: what the contract allows one Update (and so
// what callers may rely on) works: MaxTxnKeys keys read and written, one
// MaxValueSize value beside small records.
func testTransactionWithinLimits(t *testing.T, e *env) {
	e.update(func(tx store.Tx) error {
		for i := range store.MaxTxnKeys {
			if err := tx.Put(bucket, fmt.Sprintf("k%03d", i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	e.update(func(tx store.Tx) error {
		for i := range store.MaxTxnKeys {
			if _, err := tx.Get(bucket, fmt.Sprintf("k%03d", i)); err != nil {
				return err
			}
		}
		if err := tx.Put(bucket, "big", make([]byte, store.MaxValueSize)); err != nil {
			return err
		}
		for i := range 50 {
			if _, err := store.AppendAt(tx, store.Audit, start, bytes.Repeat([]byte("r"), 1000+i)); err != nil {
				return err
			}
		}
		return nil
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// stage stages value for key and commits it in an Update that also writes
// another record (as Pause writes the operation and its audit record).
func (e *env) stage(key string, value []byte, ttl time.Duration) {
	e.t.Helper()
	st, err := store.StageChunked(ctx, e.s, bucket, key, value, ttl)
	if err != nil {
		e.t.Fatalf("StageChunked %s: %v", key, err)
	}
	e.update(func(tx store.Tx) error {
		if err := st.Commit(tx); err != nil {
			return err
		}
		return tx.Put(bucket, key+".record", []byte("committed with it"))
	})
}

func (e *env) getChunked(key string) ([]byte, error) {
	var v []byte
	err := e.s.View(ctx, func(tx store.Tx) error {
		var err error
		v, err = store.GetChunked(tx, bucket, key)
		return err
	})
	return v, err
}

// chunksOf lists the chunk keys stored for key.
func (e *env) chunksOf(key string) []string {
	var out []string
	for _, kv := range e.scanAll(store.Chunks, 100) {
		if strings.HasPrefix(kv.Key, string(bucket)+"/"+key+"/") {
			out = append(out, kv.Key)
		}
	}
	return out
}

// testChunkedRoundTrip: values of every size up to a 10 MiB body come back
// whole; replacing and deleting leave no chunks behind; a staged value is
// invisible until committed.
func testChunkedRoundTrip(t *testing.T, e *env) {
	for _, size := range []int{0, 1, store.MaxValueSize, store.MaxValueSize + 1, 10 << 20} {
		key := fmt.Sprintf("body-%d", size)
		value := randomBytes(size)
		e.stage(key, value, time.Hour)
		got, err := e.getChunked(key)
		if err != nil || !bytes.Equal(got, value) {
			t.Errorf("%d bytes: read back %d bytes, %v", size, len(got), err)
		}
		if want := (size + store.MaxValueSize - 1) / store.MaxValueSize; len(e.chunksOf(key)) != want {
			t.Errorf("%d bytes in %d chunks, want %d", size, len(e.chunksOf(key)), want)
		}
	}

	// Staged, not committed: not there.
	if _, err := store.StageChunked(ctx, e.s, bucket, "staged", randomBytes(3<<20), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := e.getChunked("staged"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a value staged but not committed: %v, want ErrNotFound", err)
	}

	// Replaced: the new value, and only its chunks.
	key := fmt.Sprintf("body-%d", 10<<20)
	small := randomBytes(store.MaxValueSize + 10)
	e.stage(key, small, time.Hour)
	if got, err := e.getChunked(key); err != nil || !bytes.Equal(got, small) {
		t.Errorf("replaced value: %d bytes, %v", len(got), err)
	}
	if n := len(e.chunksOf(key)); n != 2 {
		t.Errorf("replaced value: %d chunks stored, want the new value's 2", n)
	}

	e.update(func(tx store.Tx) error { return store.DeleteChunked(tx, bucket, key) })
	e.update(func(tx store.Tx) error { return store.DeleteChunked(tx, bucket, "never-written") })
	if _, err := e.getChunked(key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted value: %v, want ErrNotFound", err)
	}
	if c := e.chunksOf(key); len(c) != 0 {
		t.Errorf("deleted value left chunks %q", c)
	}

	if _, err := store.StageChunked(ctx, e.s, bucket, "huge", make([]byte, store.MaxChunkedSize+1), time.Hour); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("a value over MaxChunkedSize: %v, want ErrTooLarge", err)
	}
	if _, err := store.StageChunked(ctx, e.s, bucket, "forever", []byte("x"), 0); err == nil {
		t.Error("a chunked value without a time to live accepted")
	}
}

// testChunkedCorruption: a chunk changed, missing or longer, or a header
// that is not one, is ErrCorrupt, never a value.
func testChunkedCorruption(t *testing.T, e *env) {
	value := randomBytes(3*store.MaxValueSize + 5)
	tests := []struct {
		name   string
		damage func(tx store.Tx, key string, chunks []string) error
	}{
		{"chunk changed", func(tx store.Tx, _ string, chunks []string) error {
			v, err := tx.Get(store.Chunks, chunks[1])
			if err != nil {
				return err
			}
			v = bytes.Clone(v)
			v[100] ^= 1
			return tx.Put(store.Chunks, chunks[1], v)
		}},
		{"chunk missing", func(tx store.Tx, _ string, chunks []string) error { return tx.Delete(store.Chunks, chunks[2]) }},
		{"last chunk longer", func(tx store.Tx, _ string, chunks []string) error {
			v, err := tx.Get(store.Chunks, chunks[3])
			if err != nil {
				return err
			}
			return tx.Put(store.Chunks, chunks[3], append(bytes.Clone(v), 0))
		}},
		{"header not a header", func(tx store.Tx, key string, _ []string) error {
			return tx.Put(bucket, key, []byte("plain value"))
		}},
		{"header with an unbounded count", func(tx store.Tx, key string, _ []string) error {
			return tx.Put(bucket, key, []byte(`{"chunked":1,"id":"0011223344556677","count":100000,"size":1,"sha256":"`+strings.Repeat("00", 32)+`"}`))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{t: t, s: e.s, clock: e.clock}
			key := tc.name
			e.stage(key, value, time.Hour)
			chunks := e.chunksOf(key)
			if len(chunks) != 4 {
				t.Fatalf("%d chunks, want 4", len(chunks))
			}
			e.update(func(tx store.Tx) error { return tc.damage(tx, key, chunks) })
			got, err := e.getChunked(key)
			if !errors.Is(err, store.ErrCorrupt) || got != nil {
				t.Errorf("GetChunked: %d bytes, %v; want ErrCorrupt and nothing", len(got), err)
			}
			e.update(func(tx store.Tx) error { return store.DeleteChunked(tx, bucket, key) })
			if _, err := e.getChunked(key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("after deleting the damaged value: %v", err)
			}
		})
	}
}

// testChunkedExpiry: a chunked value expires with its header, and its
// chunks do not outlive it by more than the grace period.
func testChunkedExpiry(t *testing.T, e *env) {
	e.stage("v", randomBytes(store.MaxValueSize+1), time.Minute)
	e.clock.advance(time.Minute - time.Second)
	if _, err := e.getChunked("v"); err != nil {
		t.Errorf("before its expiry: %v", err)
	}
	e.clock.advance(time.Second)
	if _, err := e.getChunked("v"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("at its expiry: %v, want ErrNotFound", err)
	}
	e.clock.advance(time.Hour)
	if c := e.chunksOf("v"); len(c) != 0 {
		t.Errorf("chunks %q outlive their value by an hour", c)
	}
}

// testChunkedPut: a value of up to MaxValueSize written with PutChunked in
// the caller's transaction, beside a record of its own, reads back whole
// as one chunk, replaces a staged value's chunks, is deleted and expires
// like a staged one; a byte more is ErrTooLarge and writes nothing.
func testChunkedPut(t *testing.T, e *env) {
	for _, size := range []int{0, 1, store.MaxValueSize} {
		key := fmt.Sprintf("put-%d", size)
		value := randomBytes(size)
		e.update(func(tx store.Tx) error {
			if err := store.PutChunked(tx, bucket, key, value, time.Hour); err != nil {
				return err
			}
			return tx.Put(bucket, key+".record", []byte("committed with it"))
		})
		got, err := e.getChunked(key)
		if err != nil || !bytes.Equal(got, value) {
			t.Errorf("%d bytes: read back %d bytes, %v", size, len(got), err)
		}
		if want := min(size, 1); len(e.chunksOf(key)) != want {
			t.Errorf("%d bytes in %d chunks, want %d", size, len(e.chunksOf(key)), want)
		}
	}

	var inFn error
	err := e.s.Update(ctx, func(tx store.Tx) error {
		inFn = store.PutChunked(tx, bucket, "over", randomBytes(store.MaxValueSize+1), time.Hour)
		return inFn
	})
	if !errors.Is(inFn, store.ErrTooLarge) || !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("PutChunked of MaxValueSize+1 bytes: %v, Update %v; want ErrTooLarge", inFn, err)
	}
	if _, err := e.getChunked("over"); !errors.Is(err, store.ErrNotFound) || len(e.chunksOf("over")) != 0 {
		t.Errorf("a value refused as too large was written: %v, chunks %q", err, e.chunksOf("over"))
	}
	if err := e.s.Update(ctx, func(tx store.Tx) error { return store.PutChunked(tx, bucket, "forever", []byte("x"), 0) }); err == nil {
		t.Error("a chunked value without a time to live accepted")
	}

	// Over a staged value of three chunks: the new value and its one chunk.
	e.stage("replaced", randomBytes(2*store.MaxValueSize+1), time.Hour)
	small := randomBytes(100)
	e.update(func(tx store.Tx) error { return store.PutChunked(tx, bucket, "replaced", small, time.Hour) })
	if got, err := e.getChunked("replaced"); err != nil || !bytes.Equal(got, small) {
		t.Errorf("replaced value: %d bytes, %v", len(got), err)
	}
	if n := len(e.chunksOf("replaced")); n != 1 {
		t.Errorf("replaced value: %d chunks stored, want the new value's 1", n)
	}
	e.update(func(tx store.Tx) error { return store.DeleteChunked(tx, bucket, "replaced") })
	if _, err := e.getChunked("replaced"); !errors.Is(err, store.ErrNotFound) || len(e.chunksOf("replaced")) != 0 {
		t.Errorf("deleted value: %v, chunks %q", err, e.chunksOf("replaced"))
	}

	e.update(func(tx store.Tx) error { return store.PutChunked(tx, bucket, "expiring", small, time.Minute) })
	e.clock.advance(time.Minute - time.Second)
	if _, err := e.getChunked("expiring"); err != nil {
		t.Errorf("before its expiry: %v", err)
	}
	e.clock.advance(time.Second)
	if _, err := e.getChunked("expiring"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("at its expiry: %v, want ErrNotFound", err)
	}
	e.clock.advance(time.Hour)
	if c := e.chunksOf("expiring"); len(c) != 0 {
		t.Errorf("chunks %q outlive their value by an hour", c)
	}
}

// testViewIsReadOnly: every write in a View fails with ErrReadOnly, fails
// the View even when fn ignores it, and writes nothing.
func testViewIsReadOnly(t *testing.T, e *env) {
	e.put("existing", "v")
	for name, write := range map[string]func(tx store.Tx) error{
		"Put":      func(tx store.Tx) error { return tx.Put(bucket, "new", []byte("x")) },
		"PutTTL":   func(tx store.Tx) error { return store.PutTTL(tx, bucket, "new", []byte("x"), time.Hour) },
		"Delete":   func(tx store.Tx) error { return tx.Delete(bucket, "existing") },
		"AppendAt": func(tx store.Tx) error { _, err := store.AppendAt(tx, store.Audit, start, []byte("x")); return err },
	} {
		var inFn error
		err := e.s.View(ctx, func(tx store.Tx) error { inFn = write(tx); return nil })
		if !errors.Is(inFn, store.ErrReadOnly) || !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("%s in View: %v, View returned %v; want ErrReadOnly from both", name, inFn, err)
		}
	}
	if e.has("new") || !e.has("existing") || len(e.scanAll(store.Audit, 10)) != 0 {
		t.Error("a View wrote")
	}
}

// testCancelledContext: a done context runs nothing.
func testCancelledContext(t *testing.T, e *env) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	fn := func(store.Tx) error { ran = true; return nil }
	if err := e.s.Update(cctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("Update: %v", err)
	}
	if err := e.s.View(cctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("View: %v", err)
	}
	if ran {
		t.Error("fn ran under a cancelled context")
	}
}

// testUnavailableAfterClose: after Close every call is the store failing,
// ErrUnavailable, and fn never runs.
func testUnavailableAfterClose(t *testing.T, e *env) {
	e.put("k", "v")
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	ran := false
	fn := func(tx store.Tx) error { ran = true; return tx.Put(bucket, "k", []byte("v2")) }
	calls := map[string]func() error{
		"Update": func() error { return e.s.Update(ctx, fn) },
		"View":   func() error { return e.s.View(ctx, fn) },
		"Scan":   func() error { _, _, err := e.s.Scan(ctx, bucket, "", 10); return err },
		"Sweep":  func() error { _, err := e.s.Sweep(ctx, 10); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", name, err)
		}
	}
	if ran {
		t.Error("fn ran on a closed store")
	}
}
