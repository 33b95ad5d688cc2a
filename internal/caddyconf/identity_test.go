package caddyconf

import (
	"strings"
	"testing"
)

// A header identity is read only from placeholders the client cannot set,
// and says what each request must then show.
func TestCheckHeaderIdentity(t *testing.T) {
	for _, tc := range []struct {
		service, user, trusted string
		want                   HeaderTrust
		err                    string
	}{
		{"S001", "{http.request.tls.client.subject}", "", HeaderTrust{VerifiedCert: true}, ""},
		{"{http.auth.user.service}", "{http.auth.user.id}", "", HeaderTrust{}, ""},
		{"{http.vars.service}", "u-{http.vars.user}", "", HeaderTrust{}, ""},
		{"{http.request.header.Remote-Service}", "{http.request.header.Remote-User}", "forward_auth", HeaderTrust{Header: "forward_auth"}, ""},
		{"S001", "{http.request.header.X-User}", "proxy", HeaderTrust{Header: "proxy"}, ""},
		{"S001", "{http.request.header.X-User}", "", HeaderTrust{}, "a client can send any request header"},
		{"S001", "{http.request.cookie.user}", "", HeaderTrust{}, "the client can set this placeholder"},
		{"S001", "{http.request.uri.query.user}", "", HeaderTrust{}, "the client can set this placeholder"},
		{"S001", "{http.request.host}", "", HeaderTrust{}, "the client can set this placeholder"},
		{"S001", "{http.request.tls.client.subjekt}", "", HeaderTrust{}, "no such client certificate field"},
		{"S001", "U001", "", HeaderTrust{}, "has no placeholder"},
		{"S001", "\\{http.request.tls.client.subject}", "", HeaderTrust{}, "has no placeholder"},
		{"S001", "{http.auth.user.id}", "proxy", HeaderTrust{}, "neither service nor user reads a request header"},
		{"S001", "{http.auth.user.id}", "anyone", HeaderTrust{}, `trusted "anyone": want forward_auth or proxy`},
		{"", "{http.auth.user.id}", "", HeaderTrust{}, "needs both service and user"},
	} {
		got, err := CheckHeaderIdentity(tc.service, tc.user, tc.trusted)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q %q %q: %v; want it accepted", tc.service, tc.user, tc.trusted, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q %q %q: %v; want an error saying %q", tc.service, tc.user, tc.trusted, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%q %q %q: needs %+v; want %+v", tc.service, tc.user, tc.trusted, got, tc.want)
		}
	}
}
