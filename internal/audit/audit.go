// Package audit writes the gateway's audit trail: every challenge, code
// check (its result, never the code), lock, unlock, enrolment step, renewal,
// revocation, administrator action and release, in the same store
// transaction as the change it records, so the trail cannot miss a change
// nor record one that did not happen.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
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
	Cancelled    Event = "cancelled"     // the customer cancelled a paused operation
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
	PassThrough  Event = "legacy_passthrough" // a protected operation of a service that does not require OTP
	Refused      Event = "refused"            // a protected operation refused (no identity, no token…)
)

// Record is one line of the trail. It never holds a code, PIN, secret, setup
// link or session cookie value.
type Record struct {
	Time     time.Time         `json:"time"`
	Event    Event             `json:"event"`
	Service  string            `json:"service,omitempty"`
	User     string            `json:"user,omitempty"`
	ClientIP string            `json:"client_ip,omitempty"`
	Actor    string            `json:"actor,omitempty"` // "customer", "admin:<who>", "system"
	Kind     string            `json:"kind,omitempty"`  // operation kind
	Rule     string            `json:"rule,omitempty"`
	Request  string            `json:"request,omitempty"` // "POST /transfer/execute"
	Digest   string            `json:"digest,omitempty"`  // SHA-256 of the stored request
	Fields   map[string]string `json:"fields,omitempty"`  // the fields the customer was shown
	Detail   string            `json:"detail,omitempty"`
}

// Append adds r to the trail within tx.
func Append(tx store.Tx, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding audit record: %w", err)
	}
	return tx.Append(store.Audit, b)
}

// Export calls fn for every record at or after since, oldest first.
func Export(ctx context.Context, s store.Store, since time.Time, fn func(Record) error) error {
	return s.View(ctx, func(tx store.Tx) error {
		return tx.ForEach(store.Audit, func(_ string, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding audit record: %w", err)
			}
			if r.Time.Before(since) {
				return nil
			}
			return fn(r)
		})
	})
}
