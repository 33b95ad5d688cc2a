package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/otpgate/otpgate/internal/app"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// eventRecorder is an events handler that keeps what it is given.
type eventRecorder struct{}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.otpgate_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedEvents.Lock()
	defer recordedEvents.Unlock()
	recordedEvents.events = append(recordedEvents.events, e)
	return nil
}

var recordedEvents struct {
	sync.Mutex
	events []caddy.Event
}

// loadWithEvents loads e's gateway again with an events app whose
// recorder subscribes to every event the gateway publishes.
func loadWithEvents(t *testing.T, e *env) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(e.caddyfile(envOptions{})), nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		t.Fatal(err)
	}
	m["apps"].(map[string]any)["events"] = map[string]any{"subscriptions": []any{map[string]any{
		"events": app.Events(), "handlers": []any{map[string]any{"handler": "otpgate_test_recorder"}},
	}}}
	b, _ := json.Marshal(m)
	status, body, err := adminLoad(adminAddr(), b)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK {
		t.Fatalf("loading the configuration with events: %d %s", status, body)
	}
	waitServing(t)
}

// eventsSeen waits until want events were recorded (bounded) and returns
// them.
func eventsSeen(t *testing.T, want int) []caddy.Event {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		recordedEvents.Lock()
		got := slices.Clone(recordedEvents.events)
		recordedEvents.Unlock()
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every security event reaches a handler subscribed to it through Caddy's
// events app, from the otpgate app, with who, when and from where — and
// never a code, PIN, secret or setup link.
func TestEventsForSecurityEvents(t *testing.T) {
	e := newEnv(t, envOptions{})
	loadWithEvents(t, e)
	recordedEvents.Lock()
	recordedEvents.events = nil
	recordedEvents.Unlock()

	c := gwEnrolled(e, "S001", "U001") // issued, setup done, activated
	id := gwPause(c, "/transfer/execute", gwTransfer)
	right := c.code()
	if res, body, _ := gwConfirmForm(c, id, right, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("right code: %d\n%s", res.StatusCode, body)
	}
	id = gwPause(c, "/transfer/execute", gwTransfer)
	gwConfirmForm(c, id, right, nil) // the spent step again
	id = gwPause(c, "/transfer/execute", gwTransfer)
	for range 5 {
		gwConfirmForm(c, id, c.wrongCode(), nil)
	}
	admin := func(path string) {
		if status, b := enrolAdmin(t, http.MethodPost, path, map[string]string{"service": "S001", "user": "U001", "by": "yamada"}); status != http.StatusOK {
			t.Fatalf("admin %s: %d %s", path, status, b)
		}
	}
	admin("/otpgate/unlock")
	// The customer revokes their token with a code.
	res, _ := c.postForm("/.otpgate/token/revoke", map[string][]string{"csrf": {c.csrf("/.otpgate/token")}})
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/.otpgate/confirm/") {
		t.Fatalf("revoke: %d %q", res.StatusCode, loc)
	}
	gwConfirmForm(c, strings.TrimPrefix(loc, "/.otpgate/confirm/"), c.code(), nil)
	admin("/otpgate/reset")

	wantNames := []string{"otpgate_enrolment", "otpgate_enrolment", "otpgate_enrolment", "otpgate_release", "otpgate_code_reused",
		"otpgate_lock", "otpgate_unlock", "otpgate_release", "otpgate_revoke", "otpgate_reset"}
	got := eventsSeen(t, len(wantNames))
	var names []string
	for _, ev := range got {
		names = append(names, ev.Name())
	}
	// The revocation's release and its revoke commit separately; either
	// may be first.
	slices.Sort(names)
	sorted := slices.Clone(wantNames)
	slices.Sort(sorted)
	if !slices.Equal(names, sorted) {
		t.Fatalf("events %v; want %v", names, sorted)
	}
	secret := fmt.Sprintf("%x", c.secret)
	for _, ev := range got {
		if ev.Origin() == nil || ev.Origin().CaddyModule().ID != "otpgate" {
			t.Errorf("%s: origin %v; want the otpgate app", ev.Name(), ev.Origin())
		}
		d := ev.Data
		if d["service"] != "S001" || d["user"] != "U001" || d["time"] == "" || d["audit_event"] == "" {
			t.Errorf("%s: data %v; want service, user, time and the audit event", ev.Name(), d)
		}
		if d["client_ip"] == nil || strings.Contains(fmt.Sprint(d["client_ip"]), ":") && !strings.HasPrefix(fmt.Sprint(d["client_ip"]), "::") {
			t.Errorf("%s: client_ip %v; want an address without a port", ev.Name(), d["client_ip"])
		}
		b, _ := json.Marshal(d)
		for _, leak := range []string{right, "4829", secret, "/.otpgate/setup/", "JSESSIONID"} {
			if strings.Contains(string(b), leak) {
				t.Errorf("%s: data %s holds %q", ev.Name(), b, leak)
			}
		}
		switch ev.Name() {
		case "otpgate_release":
			if d["digest"] == nil || d["kind"] == nil {
				t.Errorf("release: data %v; want the digest and kind", d)
			}
		case "otpgate_unlock", "otpgate_reset":
			if d["actor"] != "admin:yamada" {
				t.Errorf("%s: actor %v; want admin:yamada", ev.Name(), d["actor"])
			}
		}
	}
}
