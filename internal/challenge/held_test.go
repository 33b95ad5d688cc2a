package challenge_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/token"
)

// secretOp is a transfer whose body carries a transaction password and
// whose request carries an Authorization header, both unique markers.
func secretOp(t *testing.T) (op *challenge.Operation, password, authorization string) {
	t.Helper()
	var r [12]byte
	rand.Read(r[:])
	password = "TXPASS" + base64.RawURLEncoding.EncodeToString(r[:])
	rand.Read(r[:])
	authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte("taro:AUTH"+base64.RawURLEncoding.EncodeToString(r[:])))
	op = newOp(taro, sessTaro)
	op.Header.Set("Authorization", authorization)
	op.Body = append(op.Body, "&txn_password="+password...)
	return op, password, authorization
}

// pauseOp pauses op with m and expects it held.
func (e *env) pauseOp(m *challenge.Manager, op *challenge.Operation) *challenge.Operation {
	e.t.Helper()
	if req, err := m.Pause(ctx, op); err != nil || req != token.NeedCode {
		e.t.Fatalf("Pause = %v, %v; want NeedCode", req, err)
	}
	return op
}

// Nothing of a held request is readable in the database file (SECURITY.md
// 31): neither the body's transaction password nor the Authorization
// value, in any encoding a record could have kept them in.
func TestHeldSealedInDatabaseFile(t *testing.T) {
	e := newEnv(t)
	op, password, authorization := secretOp(t)
	e.pauseOp(e.m, op)
	bigOp, bigPassword, bigAuthorization := secretOp(t)
	bigOp.Body = append(bytes.Repeat([]byte("0123456789"), 300_000), bigOp.Body...) // chunked
	e.pauseOp(e.m, bigOp)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	// The file is read as written: the audit trail keeps the digest in
	// the clear.
	if !bytes.Contains(file, []byte(op.Digest)) {
		t.Fatalf("the database file does not contain the audited digest %s: not the file written", op.Digest)
	}
	for _, secret := range []string{password, authorization, bigPassword, bigAuthorization} {
		for _, enc := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
			if bytes.Contains(file, []byte(enc)) {
				t.Errorf("the database file contains %q", enc)
			}
		}
	}
	for _, o := range []*challenge.Operation{op, bigOp} {
		if bytes.Contains(file, []byte(base64.StdEncoding.EncodeToString(o.Body))) {
			t.Errorf("the database file contains a held body in base64")
		}
	}
}

// A payroll file of 10 MiB is held in chunks, within etcd's limits (the
// store runs with them on), and released byte for byte; confirming it
// deletes its chunks at once.
func TestHeldLargeBodyRoundTrip(t *testing.T) {
	e := newEnv(t)
	op := newOp(taro, sessTaro)
	op.Body = make([]byte, 10<<20)
	rand.Read(op.Body)
	want := bytes.Clone(op.Body)
	e.pauseOp(e.m, op)
	if n := len(e.scan(store.Chunks)); n != 11 {
		t.Errorf("%d chunks held, want 11 (10 MiB and the rest of the request)", n)
	}
	got, err := e.m.Get(ctx, op.ID, sessTaro)
	if err != nil || !bytes.Equal(got.Body, want) {
		t.Fatalf("Get: %d bytes, %v; want the 10 MiB body", len(got.Body), err)
	}
	res := e.confirm(op.ID, sessTaro, e.code())
	if res.Check.Outcome != token.CodeOK || res.Op == nil || !bytes.Equal(res.Op.Body, want) || res.Op.Digest != op.ComputeDigest() {
		t.Fatalf("Confirm: %v; want the 10 MiB body released", res.Check.Outcome)
	}
	if n, chunks := e.pendingCount(), len(e.scan(store.Chunks)); n != 0 || chunks != 0 {
		t.Errorf("after the release: %d operations and %d chunks left", n, chunks)
	}
}

// Beyond a customer's caps the oldest of their held operations is
// discarded and audited; the new one is held; other customers' are not
// touched.
func TestHeldCapsDiscardOldest(t *testing.T) {
	body := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	tests := []struct {
		name string
		cfg  challenge.Config
		// bodies of taro's operations, paused in order
		bodies []int
		// which of them are still held at the end
		kept []int
	}{
		{"five waiting", challenge.Config{}, []int{10, 10, 10, 10, 10}, []int{0, 1, 2, 3, 4}},
		{"sixth discards the first", challenge.Config{}, []int{10, 10, 10, 10, 10, 10}, []int{1, 2, 3, 4, 5}},
		{"eighth discards three", challenge.Config{}, []int{10, 10, 10, 10, 10, 10, 10, 10}, []int{3, 4, 5, 6, 7}},
		{"one op", challenge.Config{MaxOps: 1}, []int{10, 10}, []int{1}},
		{"bytes: two of 1 MiB fit in 3 MiB, not three", challenge.Config{MaxBytes: 3 << 20}, []int{1 << 20, 1 << 20, 1 << 20}, []int{1, 2}},
		{"bytes: a large one discards several", challenge.Config{MaxBytes: 8 << 20}, []int{3 << 19, 3 << 19, 3 << 19, 3 << 19, 7 << 20}, []int{4}},
		{"bytes: the newest is kept alone above the cap", challenge.Config{MaxBytes: 1 << 20}, []int{10, 2 << 20}, []int{1}},
		// The most one Pause discards: 16 operations of two chunks each,
		// 67 keys written in one transaction under etcd's limits.
		{"sixteen discarded at once", challenge.Config{MaxOps: 16, MaxBytes: 18 << 20},
			[]int{1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1,
				1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 1<<20 + 1, 17 << 20}, []int{15}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(e.sealer, tc.cfg)
			// Another customer's operation, older than all of taro's.
			kens := []*challenge.Operation{e.pauseOp(m, newOp(ken, sessOther))}
			var ops []*challenge.Operation
			for _, n := range tc.bodies {
				op := newOp(taro, sessTaro)
				op.Body = body(n)
				ops = append(ops, e.pauseOp(m, op))
			}
			keep := map[int]bool{}
			for _, i := range tc.kept {
				keep[i] = true
			}
			discarded := map[string]bool{}
			for i, op := range ops {
				got, err := m.Get(ctx, op.ID, sessTaro)
				switch {
				case keep[i] && (err != nil || !bytes.Equal(got.Body, op.Body)):
					t.Errorf("operation %d: %v; want it held", i, err)
				case !keep[i] && !errors.Is(err, challenge.ErrGone):
					t.Errorf("operation %d: %v; want it discarded", i, err)
				case !keep[i]:
					discarded[op.Digest+op.ID] = true
				}
			}
			for _, op := range kens {
				if _, err := m.Get(ctx, op.ID, sessOther); err != nil {
					t.Errorf("another customer's operation: %v", err)
				}
			}
			if n := e.pendingCount(); n != len(tc.kept)+len(kens) {
				t.Errorf("%d operations in the store, want %d", n, len(tc.kept)+len(kens))
			}
			// Discarded chunks go with their operation, not at expiry.
			chunks := len(kens)
			for _, i := range tc.kept {
				chunks += chunksFor(len(ops[i].Body))
			}
			if n := len(e.scan(store.Chunks)); n != chunks {
				t.Errorf("%d chunks in the store, want %d", n, chunks)
			}
			var recs []audit.Record
			for _, r := range e.events(audit.Cancelled) {
				if r.Actor != "system" || r.User != taro.ID || !strings.Contains(r.Detail, "discarded for a newer operation") {
					t.Errorf("cancelled record %+v", r)
				}
				recs = append(recs, r)
			}
			if len(recs) != len(tc.bodies)-len(tc.kept) {
				t.Errorf("%d discards audited, want %d", len(recs), len(tc.bodies)-len(tc.kept))
			}
		})
	}
}

// chunksFor is how many chunks hold an operation of newOp's with a body of
// n bytes: sealed, the rest of the request and the sealing take less than
// 1000 bytes.
func chunksFor(n int) int { return (n+1000)/store.MaxValueSize + 1 }

// A confirmed or cancelled operation frees its place at once.
func TestHeldCapFreedByConfirmAndCancel(t *testing.T) {
	e := newEnv(t)
	var ops []*challenge.Operation
	for range 5 {
		ops = append(ops, e.pause())
	}
	if res := e.confirm(ops[4].ID, sessTaro, e.code()); res.Check.Outcome != token.CodeOK {
		t.Fatalf("confirm: %+v", res)
	}
	if err := e.m.Cancel(ctx, ops[3].ID, sessTaro, clientIP); err != nil {
		t.Fatal(err)
	}
	e.pause()
	e.pause()
	for _, op := range ops[:3] {
		e.assertKept(op)
	}
	if n := len(e.events(audit.Cancelled)); n != 1 {
		t.Errorf("%d cancelled records, want the customer's one", n)
	}
}

// A key rotation: an operation held under the retired key opens and is
// released under the new one; without the retired key it does not open,
// and that is an error, not a silently missing operation.
func TestHeldAfterKeyRotation(t *testing.T) {
	e := newEnv(t)
	op := e.pause() // under tmpl.key
	newKey := make([]byte, seal.KeySize)
	rand.Read(newKey)
	rotated, err := seal.New(newKey, tmpl.key)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, err := seal.New(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.manager(onlyNew, challenge.Config{}).Get(ctx, op.ID, sessTaro); !errors.Is(err, seal.ErrNoKey) {
		t.Errorf("Get without the retired key: %v; want seal.ErrNoKey", err)
	}
	m := e.manager(rotated, challenge.Config{})
	got, err := m.Get(ctx, op.ID, sessTaro)
	if err != nil || got.Digest != op.Digest {
		t.Fatalf("Get under the rotated keys: %v", err)
	}
	res, err := m.Confirm(ctx, op.ID, sessTaro, e.code(), clientIP)
	if err != nil || res.Check.Outcome != token.CodeOK || res.Op == nil || string(res.Op.Body) != string(op.Body) {
		t.Fatalf("Confirm under the rotated keys: %+v, %v", res, err)
	}
	// What is held after the rotation is sealed under the new key alone.
	later := e.pauseOp(m, newOp(taro, sessTaro))
	if _, err := e.manager(onlyNew, challenge.Config{}).Get(ctx, later.ID, sessTaro); err != nil {
		t.Errorf("an operation held after the rotation needs the retired key: %v", err)
	}
}

// A sealed operation is bound to its challenge ID: two operations'
// sealed values swapped in the store open as neither, and confirming one
// fails without spending the code or releasing anything.
func TestHeldSwappedValuesDoNotOpen(t *testing.T) {
	e := newEnv(t)
	a, b := e.pause(), e.pause()
	var va, vb []byte
	err := e.db.View(ctx, func(tx store.Tx) error {
		var err error
		if va, err = store.GetChunked(tx, store.Pending, a.ID); err != nil {
			return err
		}
		vb, err = store.GetChunked(tx, store.Pending, b.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := store.StageChunked(ctx, e.db, store.Pending, a.ID, vb, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := store.StageChunked(ctx, e.db, store.Pending, b.ID, va, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(ctx, func(tx store.Tx) error { return errors.Join(sa.Commit(tx), sb.Commit(tx)) }); err != nil {
		t.Fatal(err)
	}
	for _, op := range []*challenge.Operation{a, b} {
		if _, err := e.m.Get(ctx, op.ID, sessTaro); !errors.Is(err, seal.ErrCorrupt) {
			t.Errorf("Get of a swapped value: %v; want seal.ErrCorrupt", err)
		}
	}
	before := e.record(taro)
	res, err := e.m.Confirm(ctx, a.ID, sessTaro, e.code(), clientIP)
	if !errors.Is(err, seal.ErrCorrupt) || res.Op != nil {
		t.Errorf("Confirm of a swapped value: %+v, %v; want seal.ErrCorrupt", res, err)
	}
	if r := e.record(taro); r.LastStep != before.LastStep || r.Failures != before.Failures {
		t.Errorf("the code was checked: last step %d→%d, failures %d→%d", before.LastStep, r.LastStep, before.Failures, r.Failures)
	}
	if n := len(e.events(audit.CodeOK)); n != 0 {
		t.Errorf("%d code_ok records", n)
	}
}

// Only challenge IDs are looked up: the customers' indexes beside the
// operations are not operations.
func TestHeldIndexIsNoChallenge(t *testing.T) {
	e := newEnv(t)
	e.pause()
	var index string
	for _, kv := range e.scan(store.Pending) {
		if strings.HasPrefix(kv.Key, "customer/") {
			index = kv.Key
		}
	}
	if index == "" {
		t.Fatal("no customer index in the store")
	}
	for _, id := range []string{index, strings.TrimPrefix(index, "customer/")[:24]} {
		if _, err := e.m.Get(ctx, id, sessTaro); !errors.Is(err, challenge.ErrGone) {
			t.Errorf("Get(%q): %v; want ErrGone", id, err)
		}
		if err := e.m.Cancel(ctx, id, sessTaro, clientIP); !errors.Is(err, challenge.ErrGone) {
			t.Errorf("Cancel(%q): %v; want ErrGone", id, err)
		}
	}
}

// Operations an earlier version stored in the clear (JSON, no expiry) are
// deleted; sealed ones and the indexes stay.
func TestDropUnsealed(t *testing.T) {
	e := newEnv(t)
	held := e.pause()
	old, _, authorization := secretOp(t)
	const oldCount = 150 // more than one page
	for first := 0; first < oldCount; first += 75 {
		err := e.db.Update(ctx, func(tx store.Tx) error {
			for i := first; i < first+75; i++ {
				old.ID = fmt.Sprintf("old%021d", i)
				v, err := json.Marshal(old)
				if err != nil {
					return err
				}
				if err := tx.Put(store.Pending, old.ID, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.m.DropUnsealed(ctx); err != nil || n != oldCount {
		t.Fatalf("DropUnsealed = %d, %v; want %d", n, err, oldCount)
	}
	for _, kv := range e.scan(store.Pending) {
		if strings.Contains(string(kv.Value), authorization) || kv.Expires.IsZero() {
			t.Errorf("left %s: %q", kv.Key, kv.Value)
		}
	}
	e.assertKept(held)
	if n := e.pendingCount(); n != 1 {
		t.Errorf("%d operations left, want the sealed one", n)
	}
	if n, err := e.m.DropUnsealed(ctx); err != nil || n != 0 {
		t.Errorf("second DropUnsealed = %d, %v", n, err)
	}
}

// New refuses caps that one transaction could not keep, and no sealer.
func TestNewConfig(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		sealer *seal.Sealer
		cfg    challenge.Config
		ok     bool
	}{
		{"defaults", e.sealer, challenge.Config{}, true},
		{"most operations", e.sealer, challenge.Config{MaxOps: challenge.MaxOpsLimit, MaxBytes: store.MaxChunkedSize}, true},
		{"too many operations", e.sealer, challenge.Config{MaxOps: challenge.MaxOpsLimit + 1}, false},
		{"negative operations", e.sealer, challenge.Config{MaxOps: -1}, false},
		{"too many bytes", e.sealer, challenge.Config{MaxBytes: store.MaxChunkedSize + 1}, false},
		{"no sealer", nil, challenge.Config{}, false},
	} {
		if _, err := challenge.New(e.db, tc.sealer, e.tokens, tc.cfg); (err == nil) != tc.ok {
			t.Errorf("%s: New: %v", tc.name, err)
		}
	}
}

// countingStore counts the write transactions made through it.
type countingStore struct {
	store.Store
	updates int
}

func (c *countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	c.updates++
	return c.Store.Update(ctx, fn)
}

// holdCounted pauses op with a Manager on a counting view of e's store and
// returns how many write transactions the hold made and how many chunks
// its sealed value is stored in.
func (e *env) holdCounted(op *challenge.Operation, cfg challenge.Config) (updates, chunks int) {
	e.t.Helper()
	cs := &countingStore{Store: e.db}
	m, err := challenge.New(cs, e.sealer, e.tokens, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Now = e.clk.now
	e.pauseOp(m, op)
	for _, kv := range e.scan(store.Chunks) {
		if strings.HasPrefix(kv.Key, string(store.Pending)+"/"+op.ID+"/") {
			chunks++
		}
	}
	return cs.updates, chunks
}

// sealedSize is the size of op's sealed value in the store.
func (e *env) sealedSize(op *challenge.Operation) int {
	e.t.Helper()
	var n int
	err := e.db.View(ctx, func(tx store.Tx) error {
		v, err := store.GetChunked(tx, store.Pending, op.ID)
		n = len(v)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// A held request whose sealed value fits in one store value is written by
// the hold's own transaction: one durable write per hold, up to a sealed
// value of exactly store.MaxValueSize. One byte more is staged in two
// chunks first, each in a write of its own. Both shapes are released byte
// for byte.
func TestHoldInOneWrite(t *testing.T) {
	e := newEnv(t)
	small := newOp(taro, sessTaro)
	if updates, chunks := e.holdCounted(small, challenge.Config{}); updates != 1 || chunks != 1 {
		t.Errorf("an ordinary form: %d write transactions, %d chunks; want 1 and 1", updates, chunks)
	}
	// The sealed value is the body and a fixed overhead: with the test's
	// clock, every field of the operation but the body has one length.
	overhead := e.sealedSize(small) - len(small.Body)
	for _, tc := range []struct {
		sealed          int
		updates, chunks int
	}{
		{store.MaxValueSize, 1, 1},
		{store.MaxValueSize + 1, 3, 2},
	} {
		op := newOp(taro, sessTaro)
		op.Body = make([]byte, tc.sealed-overhead)
		rand.Read(op.Body)
		want := bytes.Clone(op.Body)
		updates, chunks := e.holdCounted(op, challenge.Config{})
		if n := e.sealedSize(op); n != tc.sealed {
			t.Fatalf("sealed %d bytes, want %d: the overhead is not fixed", n, tc.sealed)
		}
		if updates != tc.updates || chunks != tc.chunks {
			t.Errorf("sealed %d bytes: %d write transactions, %d chunks; want %d and %d", tc.sealed, updates, chunks, tc.updates, tc.chunks)
		}
		res := e.confirm(op.ID, sessTaro, e.code())
		if res.Check.Outcome != token.CodeOK || res.Op == nil || !bytes.Equal(res.Op.Body, want) {
			t.Errorf("sealed %d bytes: Confirm %v; want the body released", tc.sealed, res.Check.Outcome)
		}
		e.clk.add(time.Minute) // the next code
	}
	res := e.confirm(small.ID, sessTaro, e.code())
	if res.Check.Outcome != token.CodeOK || res.Op == nil || !bytes.Equal(res.Op.Body, small.Body) {
		t.Errorf("the ordinary form: Confirm %v; want it released", res.Check.Outcome)
	}
	if n, chunks := e.pendingCount(), len(e.scan(store.Chunks)); n != 0 || chunks != 0 {
		t.Errorf("after the releases: %d operations and %d chunks left", n, chunks)
	}
}

// A request that fits in one value but not beside the rest of the hold's
// transaction (a large shown field, in its audit record too) is staged
// instead, and held all the same, once.
func TestHoldTooLargeInlineIsStaged(t *testing.T) {
	e := newEnv(t)
	op := newOp(taro, sessTaro)
	op.Fields = append(op.Fields, challenge.Field{Name: "memo", Value: strings.Repeat("m", 400<<10)})
	op.Body = bytes.Repeat([]byte("x"), 500<<10)
	// Tried in the hold's transaction and refused as too large; then one
	// chunk staged and the hold committed.
	if updates, chunks := e.holdCounted(op, challenge.Config{}); updates != 3 || chunks != 1 {
		t.Errorf("%d write transactions, %d chunks; want 3 and 1", updates, chunks)
	}
	if n := e.sealedSize(op); n > store.MaxValueSize {
		t.Fatalf("sealed %d bytes: more than one value, not the case tested", n)
	}
	if n := len(e.events(audit.Challenge)); n != 1 {
		t.Errorf("%d challenge records, want 1", n)
	}
	res := e.confirm(op.ID, sessTaro, e.code())
	if res.Check.Outcome != token.CodeOK || res.Op == nil || !bytes.Equal(res.Op.Body, op.Body) {
		t.Errorf("Confirm %v; want it released", res.Check.Outcome)
	}
}
