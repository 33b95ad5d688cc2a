package app

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/otpgate/otpgate/internal/audit"
)

// Security events through Caddy's events app, so that an operator routes
// them to a SIEM (an exec or webhook handler subscribed to them) without
// parsing logs. Each is published once the audit record it comes from has
// committed (observedStore), with the record's fields as its data; an
// event's origin is the otpgate app (module "otpgate"). README "Events"
// lists them.

// eventNames maps the audit events published to the Caddy events they
// are published as.
var eventNames = map[audit.Event]string{
	audit.Locked:       "otpgate_lock",
	audit.Unlocked:     "otpgate_unlock",
	audit.Reset:        "otpgate_reset",
	audit.CodeReused:   "otpgate_code_reused",
	audit.Released:     "otpgate_release",
	audit.ReleaseError: "otpgate_release_error",
	audit.Issued:       "otpgate_enrolment",
	audit.SetupDone:    "otpgate_enrolment",
	audit.SetupFailed:  "otpgate_enrolment",
	audit.Activated:    "otpgate_enrolment",
	audit.Renewed:      "otpgate_enrolment",
	audit.Revoked:      "otpgate_revoke",
}

// eventData is the data of the event published for r: the audit record's
// fields, under the names the audit export uses. It holds what the trail
// holds, never a code, PIN, secret, setup link or session cookie value.
func eventData(r *audit.Record) map[string]any {
	d := map[string]any{"audit_event": string(r.Event), "time": r.Time.Format(time.RFC3339Nano)}
	for k, v := range map[string]string{"service": r.Service, "user": r.User, "client_ip": r.ClientIP, "user_agent": r.UserAgent,
		"actor": r.Actor, "kind": r.Kind, "rule": r.Rule, "request": r.Request, "digest": r.Digest, "detail": r.Detail} {
		if v != "" {
			d[k] = v
		}
	}
	if len(r.Fields) > 0 {
		fields := make(map[string]any, len(r.Fields))
		for k, v := range r.Fields {
			fields[k] = v
		}
		d["fields"] = fields
	}
	return d
}

// eventSink is where one configuration's otpgate app emits: its events app
// and its own context (the events' origin).
type eventSink struct {
	app *caddyevents.App
	ctx caddy.Context
}

// newEventSink finds the events app of the app's configuration (Caddy
// makes an empty one when none is configured).
func newEventSink(ctx caddy.Context) (*eventSink, error) {
	app, err := ctx.App("events")
	if err != nil {
		return nil, fmt.Errorf("otpgate: loading the events app: %v", err)
	}
	events, ok := app.(*caddyevents.App)
	if !ok {
		return nil, fmt.Errorf("otpgate: the events app is a %T", app)
	}
	return &eventSink{app: events, ctx: ctx}, nil
}

// sinks are the sinks of the started otpgate apps, oldest first: events
// go to the newest, as the store's worker works for the newest owner (a
// reload starts the new configuration's app before it stops the old one).
var sinks struct {
	sync.Mutex
	started []*eventSink
}

// start makes s the newest sink.
func (s *eventSink) start() {
	sinks.Lock()
	defer sinks.Unlock()
	sinks.started = append(sinks.started, s)
}

// stop removes s.
func (s *eventSink) stop() {
	sinks.Lock()
	defer sinks.Unlock()
	for i, x := range sinks.started {
		if x == s {
			sinks.started = append(sinks.started[:i], sinks.started[i+1:]...)
			return
		}
	}
}

// newestSink is the sink of the newest started app, nil if none runs.
func newestSink() *eventSink {
	sinks.Lock()
	defer sinks.Unlock()
	if len(sinks.started) == 0 {
		return nil
	}
	return sinks.started[len(sinks.started)-1]
}

// pendingEvent is an event waiting for the emitter.
type pendingEvent struct {
	sink *eventSink
	name string
	data map[string]any
}

// Events are emitted by one goroutine, in commit order, off the request
// that committed them: Caddy runs event handlers synchronously, and a slow
// handler (an exec, a webhook) must not hold up a customer's confirmation.
// When the handlers fall this far behind, events are dropped and counted
// (the audit trail keeps every record).
const eventQueueSize = 4096

var (
	eventQueue   = make(chan pendingEvent, eventQueueSize)
	eventEmitter sync.Once
)

// publish emits the event of r, if it is a security event and a handler
// subscribes to it.
func publish(r *audit.Record) {
	name, ok := eventNames[r.Event]
	if !ok {
		return
	}
	s := newestSink()
	if s == nil || !s.app.ShouldEmit(name) {
		return
	}
	eventEmitter.Do(func() {
		go func() {
			for e := range eventQueue {
				e.sink.app.Emit(e.sink.ctx, e.name, e.data)
			}
		}()
	})
	select {
	case eventQueue <- pendingEvent{sink: s, name: name, data: eventData(r)}:
	default:
		metrics.eventsDropped.Inc()
	}
}

// Events are the names of the Caddy events the gateway publishes, each
// once.
func Events() []string {
	var names []string
	for _, n := range eventNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}
