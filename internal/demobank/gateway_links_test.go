package demobank

import (
	"net/http"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/zengin"
)

// The one link a bank adds for the gateway: its menu leads to the token
// page.
func TestMenuLinksTokenPage(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	rec := serve(b, withSession(newReq(http.MethodGet, "/menu", "", ""), sid))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<a href="/.otpgate/token">`) {
		t.Fatalf("menu: %d, no link to the token page:\n%s", rec.Code, rec.Body)
	}
}

// The bulk and payroll forms offer sample Zengin files that read without a
// problem, of the type their form uploads.
func TestSampleTransferFiles(t *testing.T) {
	b := New()
	sid := login(t, b, "S001", "U001")
	for _, tc := range []struct{ form, sample, typ string }{
		{"/bulk", "/bulk/sample.txt", "21"},
		{"/payroll", "/payroll/sample.txt", "11"},
	} {
		page := serve(b, withSession(newReq(http.MethodGet, tc.form, "", ""), sid)).Body.String()
		if !strings.Contains(page, `<a href="`+tc.sample+`">`) {
			t.Errorf("%s: no link to %s:\n%s", tc.form, tc.sample, page)
		}
		rec := serve(b, newReq(http.MethodGet, tc.sample, "", ""))
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Disposition"), "attachment;") {
			t.Fatalf("%s: %d %q", tc.sample, rec.Code, rec.Header().Get("Content-Disposition"))
		}
		s := zengin.Parse(rec.Body.Bytes())
		if s.Doubtful() || s.TypeCode != tc.typ || s.Count() == 0 {
			t.Errorf("%s: type %s, %d transfers, problems %v", tc.sample, s.TypeCode, s.Count(), s.Problems)
		}
	}
}
