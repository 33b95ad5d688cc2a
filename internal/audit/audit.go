// Package audit writes the gateway's audit trail: every challenge, code
// check (its result, never the code), lock, unlock, enrolment step, renewal,
// revocation, administrator action and release, in the same store
// transaction as the change it records, so the trail cannot miss a change
// nor record one that did not happen.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// Event names what happened.
type Event string

// Audit events.
const (
	Challenge    Event = "challenge"     // an operation was paused
	CodeOK       Event = "code_ok"       // a right code (the operation is released next)
	CodeInvalid  Event = "code_invalid"  // a wrong code
	CodeReused   Event = "code_reused"   // a right code whose time step was already spent
	Released     Event = "released"      // the stored request was handed to the bank
	ReleaseError Event = "release_error" // the bank failed after the release (not retried)
	Cancelled    Event = "cancelled"     // the customer cancelled a paused operation, or the gateway discarded it (actor system)
	Expired      Event = "expired"       // a paused operation's lifetime ended before it was confirmed
	Locked       Event = "locked"        // too many wrong codes
	Unlocked     Event = "unlocked"
	Issued       Event = "token_issued"       // STEP 1: setup mail sent
	SetupFailed  Event = "setup_failed"       // STEP 2: wrong service ID, user ID or PIN
	SetupDone    Event = "setup_done"         // STEP 2: secret delivered to the phone
	Activated    Event = "token_activated"    // STEP 3: first right code
	Renewed      Event = "token_renewed"      // expiry extended
	Revoked      Event = "token_revoked"      // by the customer, with a code
	Reset        Event = "token_reset"        // by the bank: revoke and unlock
	RequireOTP   Event = "require_otp"        // a service was made to require OTP
	Resealed     Event = "secrets_resealed"   // secrets sealed again after a key rotation
	Login        Event = "session_bound"      // a bank login was seen and bound
	Logout       Event = "session_ended"      // a bank logout was seen and its binding dropped
	PassThrough  Event = "legacy_passthrough" // a protected operation of a service that does not require OTP
	Refused      Event = "refused"            // a protected operation refused (no identity, no token…)
)

// Events lists every event the gateway records, for checking a filter.
var Events = []Event{Challenge, CodeOK, CodeInvalid, CodeReused, Released, ReleaseError, Cancelled, Expired, Locked,
	Unlocked, Issued, SetupFailed, SetupDone, Activated, Renewed, Revoked, Reset, RequireOTP, Resealed, Login, Logout,
	PassThrough, Refused, RegisteredImported}

// RegisteredImported: the bank imported its customer file (token.Import).
const RegisteredImported Event = "registered_imported"

// Record is one line of the trail. It never holds a code, PIN, secret, setup
// link or session cookie value.
type Record struct {
	Time     time.Time `json:"time"`
	Event    Event     `json:"event"`
	Service  string    `json:"service,omitempty"`
	User     string    `json:"user,omitempty"`
	ClientIP string    `json:"client_ip,omitempty"`
	// UserAgent is the client's User-Agent header, cut to
	// MaxUserAgent bytes.
	UserAgent string            `json:"user_agent,omitempty"`
	Actor     string            `json:"actor,omitempty"` // "customer", "admin:<who>", "system"
	Kind      string            `json:"kind,omitempty"`  // operation kind
	Rule      string            `json:"rule,omitempty"`
	Request   string            `json:"request,omitempty"` // "POST /transfer/execute"
	Digest    string            `json:"digest,omitempty"`  // SHA-256 of the stored request
	Fields    map[string]string `json:"fields,omitempty"`  // the fields the customer was shown
	Detail    string            `json:"detail,omitempty"`
}

// Append adds r to the trail within tx, under a key made from r.Time
// (store.AppendAt): the trail is in time order without a counter key that
// every transaction would write. r.Time is required, since it places the
// record; a record without one is refused and fails tx.
func Append(tx store.Tx, r Record) error {
	if r.Time.IsZero() {
		return fmt.Errorf("audit: %s record without a time", r.Event)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding audit record: %w", err)
	}
	_, err = store.AppendAt(tx, store.Audit, r.Time, b)
	return err
}

// Filter selects records for Query. A zero field selects every record.
type Filter struct {
	// Since: records at or after it.
	Since time.Time
	// Until: records before it.
	Until time.Time
	// Service and User: records about this service, and this user of it.
	Service, User string
	// Events: records of any of these events.
	Events []Event
}

func (f *Filter) match(r *Record) bool {
	switch {
	case r.Time.Before(f.Since),
		!f.Until.IsZero() && !r.Time.Before(f.Until),
		f.Service != "" && r.Service != f.Service,
		f.User != "" && r.User != f.User:
		return false
	}
	return len(f.Events) == 0 || slices.Contains(f.Events, r.Event)
}

// pageSize is how many records one read of the trail returns.
const pageSize = 200

// Query calls fn for every record f selects, oldest first, and stops at
// fn's first error, which it returns.
//
// It reads the trail a page at a time, each page in a read of its own, and
// calls fn between reads: a slow consumer (an export streamed to an
// administrator's client) holds no transaction open, and the trail's size
// bounds no read. Records appended while it runs may or may not be
// included; none is included twice.
func Query(ctx context.Context, s store.Store, f Filter, fn func(Record) error) error {
	return queryFrom(ctx, s, f, "", func(_ string, r *Record) error { return fn(*r) })
}

// errPageFull stops QueryPage's reading once it has a record past its page.
var errPageFull = errors.New("audit: page full")

// QueryPage returns up to limit records f selects, oldest first, after
// the record the cursor after names ("" for the first page), and the
// cursor of the next page: "" when there are no more. A cursor is opaque
// and stays valid as the trail grows; records appended meanwhile at a time
// after the page's are on a later page.
func QueryPage(ctx context.Context, s store.Store, f Filter, after string, limit int) (recs []Record, next string, err error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("audit: page of %d records; want at least 1", limit)
	}
	last := ""
	err = queryFrom(ctx, s, f, after, func(k string, r *Record) error {
		if len(recs) == limit {
			next = last
			return errPageFull
		}
		recs, last = append(recs, *r), k
		return nil
	})
	if errors.Is(err, errPageFull) {
		err = nil
	}
	return recs, next, err
}

// queryFrom calls fn with the key and record of every record f selects
// after the key after ("" from the start), oldest first.
func queryFrom(ctx context.Context, s store.Store, f Filter, after string, fn func(string, *Record) error) error {
	from := store.TimeCursor(f.Since)
	if from != "" && (after == "" || legacyKey(after)) {
		// Records that versions before time-ordered keys wrote under a
		// 20-digit counter sort before every time key, where the cursor
		// would skip them: they are read first, and filtered by their Time.
		err := pages(ctx, s, after, func(k string, r *Record) (bool, error) {
			if !legacyKey(k) {
				return false, nil
			}
			return true, call(f, k, r, fn)
		})
		if err != nil {
			return err
		}
	}
	if after != "" && !legacyKey(after) || from == "" {
		from = max(from, after)
	}
	return pages(ctx, s, from, func(k string, r *Record) (bool, error) {
		// Time keys sort by time, so the first record at or after Until
		// ends the query. (Legacy keys come here only when Since is zero;
		// their order is the counter's, so they are filtered one by one.)
		if !f.Until.IsZero() && !legacyKey(k) && !r.Time.Before(f.Until) {
			return false, nil
		}
		return true, call(f, k, r, fn)
	})
}

// Export calls fn for every record at or after since, oldest first, as
// Query does.
func Export(ctx context.Context, s store.Store, since time.Time, fn func(Record) error) error {
	return Query(ctx, s, Filter{Since: since}, fn)
}

func call(f Filter, k string, r *Record, fn func(string, *Record) error) error {
	if !f.match(r) {
		return nil
	}
	return fn(k, r)
}

// legacyKey: a key of the counter the trail was keyed by before AppendAt.
func legacyKey(k string) bool {
	if len(k) != 20 {
		return false
	}
	for i := range len(k) {
		if k[i] < '0' || k[i] > '9' {
			return false
		}
	}
	return true
}

// pages decodes the trail's records after after, in key order, and hands
// each to visit until visit says to stop or returns an error. No read is
// open while visit runs.
func pages(ctx context.Context, s store.Store, after string, visit func(key string, r *Record) (more bool, err error)) error {
	for {
		page, next, err := s.Scan(ctx, store.Audit, after, pageSize)
		if err != nil {
			return err
		}
		for _, kv := range page {
			if !IsRecordKey(kv.Key) {
				return nil // the chain's keys, after every record (chain.go)
			}
			var r Record
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return fmt.Errorf("decoding audit record %s: %w", kv.Key, err)
			}
			more, err := visit(kv.Key, &r)
			if err != nil || !more {
				return err
			}
		}
		// Every page starts after the last, so this ends with the trail.
		if next == "" {
			return nil
		}
		after = next
	}
}
