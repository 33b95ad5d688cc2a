package app

import (
	"errors"
	"net/http"
	"strings"

	"github.com/otpgate/otpgate/internal/store"
)

// The bank's customer file: the mail addresses it registered for its
// customers and companies, to which alone setup links go by default
// (enrol_address registered) and which are told of every issue. The bank
// imports it after each change of its customer master.
//
//	POST /otpgate/registered?by=<administrator>   body: the CSV file
//	otpgate registered-import --file customers.csv --by <administrator>

// registered imports the customer file in the request body.
func (adminAPI) registered(w http.ResponseWriter, r *http.Request, st *State) error {
	by := strings.TrimSpace(r.URL.Query().Get("by"))
	if by == "" {
		return apiErr(http.StatusBadRequest, "by is required: name the administrator for the audit trail")
	}
	res, err := st.Tokens.ImportRegistered(r.Context(), r.Body, by)
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return apiErr(http.StatusServiceUnavailable, "%v", err)
	case err != nil:
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	return writeAdminJSON(w, map[string]any{"status": "ok", "customers": res.Customers, "companies": res.Companies, "addresses": res.Addresses})
}
