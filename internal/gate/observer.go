package gate

import (
	"errors"
	"net/http"
	"time"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/token"
)

// Observer is told what the flow decided, for the operator's metrics. Its
// arguments are low-cardinality by construction — an operation kind, an
// outcome from a fixed set, a duration — never a customer, service,
// address or path, so an implementation may use them as metric labels as
// they are. Calls come from request goroutines, after the decision was
// committed, and must not block.
type Observer interface {
	// Decided is called once for every protected operation the flow
	// decided on (Hold, HoldRevoke), with its kind and the outcome
	// (OutcomeHeld, OutcomePassedThrough or OutcomeRefused).
	Decided(kind, outcome string)
	// CodeChecked is called once for every code checked against a held
	// operation, with the result: one of the CodeResult values.
	CodeChecked(result string)
	// Released is called once for every released operation, with its
	// kind, what the bank did (ReleaseOutcome) and how long carrying it out
	// took, from handing it to the bank to the end of the bank's answer.
	Released(kind, outcome string, took time.Duration)
}

// Outcomes of Observer.Decided.
const (
	OutcomeHeld          = "held"
	OutcomePassedThrough = "passed_through"
	OutcomeRefused       = "refused"
)

// outcomeOf names a decision for Observer.Decided.
func outcomeOf(d Decision) string {
	switch d {
	case Held:
		return OutcomeHeld
	case PassThrough:
		return OutcomePassedThrough
	}
	return OutcomeRefused
}

// CodeResults are the results Observer.CodeChecked is told, by the
// token's outcome.
var CodeResults = map[token.Outcome]string{
	token.CodeOK:      "ok",
	token.CodeInvalid: "invalid",
	token.CodeReused:  "reused",
	token.CodeLocked:  "locked",
	token.CodeNoToken: "no_token",
}

// ReleaseOutcome is what Observer.Released is told the bank did with a
// released operation: its status class ("2xx" … "5xx") when it answered
// in full, "not_sent" when nothing reached it, "unknown" when its answer
// was cut off or never came (it may have executed the operation).
func ReleaseOutcome(status int, err error) string {
	switch {
	case err == nil && status >= 100 && status < 600:
		return string(rune('0'+status/100)) + "xx"
	case err == nil:
		return ReleaseOutcome(http.StatusOK, nil)
	case errors.Is(err, challenge.ErrNotSent):
		return "not_sent"
	}
	return "unknown"
}

// Observe makes o the flow's observer; nil observes nothing. Call it
// before the Gate is used.
func (g *Gate) Observe(o Observer) {
	if o == nil {
		o = nopObserver{}
	}
	g.obs = o
}

// nopObserver is the observer of a Gate nobody observes.
type nopObserver struct{}

func (nopObserver) Decided(string, string)                 {}
func (nopObserver) CodeChecked(string)                     {}
func (nopObserver) Released(string, string, time.Duration) {}
