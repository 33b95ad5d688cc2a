package audit

import (
	"encoding/csv"
	"io"
	"slices"
	"strings"
	"time"
)

// CSVHeader is the first row of a CSV export: the record's fields.
var CSVHeader = []string{"time", "event", "service", "user", "client_ip", "user_agent", "actor", "kind", "rule", "request", "digest", "fields", "detail"}

// CSVWriter writes records as CSV (RFC 4180) for a spreadsheet: the
// header, then one row a record, its time in RFC 3339 with nanoseconds in
// UTC and its shown fields as "name=value" pairs joined by "; " in name
// order. A cell that a spreadsheet would run as a formula (starting with
// =, +, -, @, a tab or a carriage return) is written with a leading
// apostrophe, which spreadsheets show as text (OWASP CSV injection):
// shown fields and user agents come from customers.
type CSVWriter struct {
	w      *csv.Writer
	header bool
}

// NewCSVWriter returns a CSVWriter writing to w.
func NewCSVWriter(w io.Writer) *CSVWriter { return &CSVWriter{w: csv.NewWriter(w)} }

// Write writes r (after the header, the first time).
func (c *CSVWriter) Write(r Record) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	var fields []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.Fields {
			if !yield(k) {
				return
			}
		}
	}) {
		fields = append(fields, k+"="+r.Fields[k])
	}
	row := []string{r.Time.UTC().Format(time.RFC3339Nano), string(r.Event), r.Service, r.User, r.ClientIP, r.UserAgent,
		r.Actor, r.Kind, r.Rule, r.Request, r.Digest, strings.Join(fields, "; "), r.Detail}
	for i, v := range row {
		row[i] = textCell(v)
	}
	return c.w.Write(row)
}

// Flush writes what is buffered and returns the first error of any write.
func (c *CSVWriter) Flush() error {
	if !c.header {
		c.header = true
		c.w.Write(CSVHeader)
	}
	c.w.Flush()
	return c.w.Error()
}

// textCell is v as a spreadsheet shows it as text.
func textCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
