package gate

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/token"
)

// The refusals of an issue to an address or with a PIN the bank does not
// accept are the customer's to fix, with a message of their own, never a
// 503.
func TestRefusalForEnrolment(t *testing.T) {
	for _, tt := range []struct {
		err    error
		code   string
		status int
	}{
		{token.ErrPINTrivial, PINTrivial, http.StatusBadRequest},
		{token.ErrAddressNotRegistered, EmailNotRegistered, http.StatusForbidden},
		{fmt.Errorf("issue: %w", &token.AddressDomainError{Domains: []string{"docomo.ne.jp"}}), EmailDomain, http.StatusForbidden},
	} {
		r := RefusalFor(tt.err)
		if r.Code != tt.code || r.Status != tt.status {
			t.Errorf("%v: %s %d, want %s %d", tt.err, r.Code, r.Status, tt.code, tt.status)
		}
		if want := "otpgate: " + pages.T(pages.English, tt.code); r.Message != want || strings.Contains(pages.T(pages.Japanese, tt.code), tt.code) {
			t.Errorf("%s: message %q; want the catalogue's %q", tt.code, r.Message, want)
		}
	}
}
