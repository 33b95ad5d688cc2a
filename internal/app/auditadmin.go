package app

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/otpgate/otpgate/internal/audit"
	"github.com/otpgate/otpgate/internal/challenge"
)

// The admin API's audit export and list of held operations.

// maxAuditPage is the largest page of an audit export.
const maxAuditPage = 10000

// auditNextHeader carries the cursor of the next page of a paginated
// JSON-lines or CSV export; it is absent on the last page.
const auditNextHeader = "Otpgate-Next-Cursor"

// audit exports the audit trail, filtered by time (since, until: RFC
// 3339), service, user and event (repeatable), as JSON lines (format=jsonl,
// the default), CSV (format=csv) or one JSON object {"records", "next"}
// (format=json). With limit=N it answers one page of at most N records and
// the cursor of the next (after=<cursor> asks for it); without, every
// record, streamed. The trail is read a page at a time with no read
// transaction held while a slow client takes the answer.
func (adminAPI) audit(w http.ResponseWriter, r *http.Request, st *State) error {
	q := r.URL.Query()
	f := audit.Filter{Service: q.Get("service"), User: q.Get("user")}
	for name, t := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if s := q.Get(name); s != "" {
			v, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return apiErr(http.StatusBadRequest, "%s %q: want an RFC 3339 time such as 2026-01-02T00:00:00+09:00", name, s)
			}
			*t = v
		}
	}
	for _, ev := range q["event"] {
		if !slices.Contains(audit.Events, audit.Event(ev)) {
			return apiErr(http.StatusBadRequest, "event %q: no such audit event; want one of %v", ev, audit.Events)
		}
		f.Events = append(f.Events, audit.Event(ev))
	}
	format := q.Get("format")
	switch format {
	case "", "jsonl", "csv", "json":
	default:
		return apiErr(http.StatusBadRequest, "format %q: want jsonl, csv or json", format)
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditPage {
			return apiErr(http.StatusBadRequest, "limit %q: want a number of records from 1 to %d", s, maxAuditPage)
		}
		limit = n
	}
	if q.Get("after") != "" && limit == 0 {
		return apiErr(http.StatusBadRequest, "after is the cursor of a page: give limit too")
	}
	if format == "json" && limit == 0 {
		limit = maxAuditPage
	}

	var write func(audit.Record) error
	var flush func() error
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := audit.NewCSVWriter(w)
		write, flush = cw.Write, cw.Flush
	case "json":
		w.Header().Set("Content-Type", "application/json")
	default:
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		write = func(rec audit.Record) error { return enc.Encode(rec) }
	}

	if limit == 0 {
		err := audit.Query(r.Context(), st.Store, f, write)
		if err == nil && flush != nil {
			err = flush()
		}
		if err != nil {
			return storeErr("exporting audit trail", err)
		}
		return nil
	}
	recs, next, err := audit.QueryPage(r.Context(), st.Store, f, q.Get("after"), limit)
	if err != nil {
		return storeErr("exporting audit trail", err)
	}
	if format == "json" {
		if recs == nil {
			recs = []audit.Record{}
		}
		return writeAdminJSON(w, map[string]any{"records": recs, "next": next})
	}
	if next != "" {
		w.Header().Set(auditNextHeader, next)
	}
	for _, rec := range recs {
		if err := write(rec); err != nil {
			return err
		}
	}
	if flush != nil {
		return flush()
	}
	return nil
}

// maxHeld bounds the held operations one listing returns.
const maxHeld = 1000

// held lists the operations waiting for a code, of one service (service=)
// and one customer (user=, with service), as JSON {"held", "more"}: their
// ID, customer, kind, rule, expiry and request digest, never the request.
func (adminAPI) held(w http.ResponseWriter, r *http.Request, st *State) error {
	q := r.URL.Query()
	if q.Get("user") != "" && q.Get("service") == "" {
		return apiErr(http.StatusBadRequest, "user needs service: a user ID is unique within its service")
	}
	list, more, err := st.Challenges.List(r.Context(), q.Get("service"), q.Get("user"), maxHeld)
	if err != nil {
		return storeErr("listing held operations", err)
	}
	if list == nil {
		list = []challenge.Waiting{}
	}
	return writeAdminJSON(w, map[string]any{"held": list, "more": more})
}

// auditVerify walks the audit trail and its tamper-evident chain and
// answers the report: how many records, how many linked, the head's hash,
// and each record changed, deleted or inserted since it was linked.
func (adminAPI) auditVerify(w http.ResponseWriter, r *http.Request, st *State) error {
	rep, err := audit.Verify(r.Context(), st.Store)
	if err != nil {
		return storeErr("verifying the audit trail", err)
	}
	if rep.Problems == nil {
		rep.Problems = []audit.Problem{}
	}
	return writeAdminJSON(w, map[string]any{"ok": rep.OK(), "records": rep.Records, "linked": rep.Linked,
		"pending": rep.Pending, "head": rep.Head, "problems": rep.Problems})
}
