package challenge

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/otpgate/otpgate/internal/store"
)

// What became of a held operation, for the customer who held it.
//
// A confirm page revisited after the operation is gone must say whether
// money moved: "expired" and "cancelled" mean it did not, "done" that it
// was sent to the bank. So beside each operation a small record (its fate)
// says what happened to it; it outlives the operation by FateMemory and is
// shown only to the session that held the operation. Any other session
// learns nothing (ErrGone, as for an ID that never existed).
//
// The fate is written where the operation's life changes, in the same
// transaction: "held" by Pause, "done" by a right code, "cancelled" by
// Cancel, "not_sent" by RecordRelease when nothing reached the bank. An
// operation discarded otherwise (the lock, a newer operation over the
// caps, a token gone at confirmation) keeps "held", and is read as
// discarded while it would still have been alive, as expired after.

// Fate is what became of a held operation.
type Fate string

// Fates of a gone operation.
const (
	// FateUnknown: not this session's operation, or forgotten.
	FateUnknown Fate = ""
	// FateExpired: its lifetime ended before it was confirmed; not executed.
	FateExpired Fate = "expired"
	// FateCancelled: the customer cancelled it; not executed.
	FateCancelled Fate = "cancelled"
	// FateDiscarded: the gateway discarded it (the customer was locked,
	// held newer operations over the caps, or lost their token); not
	// executed.
	FateDiscarded Fate = "discarded"
	// FateDone: confirmed with a right code and handed to the bank.
	FateDone Fate = "done"
	// FateNotSent: confirmed, but nothing reached the bank; not executed.
	FateNotSent Fate = "not_sent"
)

// fateHeld is the fate of an operation still held, or discarded.
const fateHeld Fate = "held"

// FateMemory is how long a fate is kept after its operation's expiry: a
// tab restored the next morning still says what happened.
const FateMemory = 24 * time.Hour

// GoneError is ErrGone with what became of the operation, as far as the
// requesting session may know.
type GoneError struct{ Fate Fate }

func (e *GoneError) Error() string {
	if e.Fate == FateUnknown {
		return ErrGone.Error()
	}
	return ErrGone.Error() + " (" + string(e.Fate) + ")"
}

// Is makes a GoneError ErrGone.
func (e *GoneError) Is(target error) bool { return target == ErrGone }

// FateOf returns the fate err carries: FateUnknown for ErrGone alone or
// any other error.
func FateOf(err error) Fate {
	var ge *GoneError
	if errors.As(err, &ge) {
		return ge.Fate
	}
	return FateUnknown
}

// fateRecord is the stored fate of one operation.
type fateRecord struct {
	Session string    `json:"session"`
	Fate    Fate      `json:"fate"`
	Expires time.Time `json:"expires"` // the operation's
}

// fateKey is the key of challenge id's fate in store.Pending: never a
// challenge ID (validID) nor a customer index.
func fateKey(id string) string { return "fate/" + id }

// setFate writes what became of op, to be kept FateMemory past its expiry.
func (m *Manager) setFate(tx store.Tx, op *Operation, f Fate, now time.Time) error {
	v, err := json.Marshal(fateRecord{Session: op.Session, Fate: f, Expires: op.Expires})
	if err != nil {
		return err
	}
	ttl := op.Expires.Sub(now) + FateMemory
	if ttl <= 0 {
		ttl = FateMemory
	}
	return store.PutTTL(tx, store.Pending, fateKey(op.ID), v, ttl)
}

// gone is the error for challenge id, which session cannot have: its fate
// when the session held it, else plain ErrGone.
func gone(tx store.Tx, id, session string, now time.Time) error {
	v, err := tx.Get(store.Pending, fateKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return ErrGone
	}
	if err != nil {
		return err
	}
	var r fateRecord
	if json.Unmarshal(v, &r) != nil || r.Session != session {
		return ErrGone
	}
	f := r.Fate
	if f == fateHeld {
		f = FateDiscarded
		if !now.Before(r.Expires) {
			f = FateExpired
		}
	}
	return &GoneError{Fate: f}
}
