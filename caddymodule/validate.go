package caddymodule

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/otpgate/otpgate/internal/store"
)

// Checks of the handler's configuration for Validate, which runs at load
// for JSON configurations as for Caddyfiles, so that a mistake is refused
// then and not at the first held operation (the store's settings are
// checked by the otpgate app, internal/app).

// maxBodyLimit is the largest max_body a held operation can store. A held
// operation is sealed into one chunked store value of at most
// store.MaxChunkedSize (64 MiB) with its headers and the fields it shows,
// which are copies of values in the body: half of it leaves room for the
// copies, less 1 MiB for the headers (Caddy's default header limit).
const maxBodyLimit = store.MaxChunkedSize/2 - 1<<20

// checkPublicURL accepts a scheme (https, or http for a demo on one
// machine) and a host, nothing after them: mailed setup links append the
// gateway's own path.
func checkPublicURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return fmt.Errorf("otpgate: public_url %q: want a scheme and host only, such as https://ib.example-bank.jp", s)
	}
	return nil
}
