package session

import (
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/audit"
)

// End drops a binding and audits the end of the customer's session, with
// the reason and never the cookie; ending a session nobody bound records
// nothing.
func TestEndAuditsTheSessionsEnd(t *testing.T) {
	e := newEnv(t)
	e.bind("cookie-taro-4f1c", "SVC01", "taro")
	e.bind("other", "SVC01", "hanako")
	for _, v := range []string{"cookie-taro-4f1c", "cookie-taro-4f1c", "never-bound", ""} {
		if err := e.m.End(ctx, v, "logout", "192.0.2.7"); err != nil {
			t.Errorf("End(%q): %v", v, err)
		}
	}
	if _, ok := e.lookup("cookie-taro-4f1c"); ok {
		t.Error("ended binding still found")
	}
	if _, ok := e.lookup("other"); !ok {
		t.Error("End removed another session's binding")
	}
	var ended []audit.Record
	for _, r := range e.audit() {
		if r.Event == audit.Logout {
			ended = append(ended, r)
		}
	}
	if len(ended) != 1 || ended[0].Service != "SVC01" || ended[0].User != "taro" || ended[0].Detail != "logout" || ended[0].ClientIP != "192.0.2.7" {
		t.Errorf("session_ended records %+v; want one for taro, reason logout, from 192.0.2.7", ended)
	}
	for _, r := range e.audit() {
		if strings.Contains(r.Detail+r.User+r.Service, "cookie-taro") {
			t.Errorf("record %+v holds the cookie value", r)
		}
	}
}
