package pages

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

const stylesheetName = "otpgate.css"

//go:embed assets/otpgate.css
var stylesheet []byte

// stylesheetVersion is a digest of the stylesheet. Pages link it as
// "otpgate.css?v=<version>", so a new stylesheet is fetched after an upgrade
// although browsers cache the old one for a day.
var stylesheetVersion = func() string {
	sum := sha256.Sum256(stylesheet)
	return hex.EncodeToString(sum[:6])
}()

// Assets serves the embedded stylesheet. The caller mounts it at
// Base+"/assets/" and passes the path after that prefix ("otpgate.css"; a
// leading slash is allowed); any other path is 404. GET and HEAD only.
func Assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		if strings.TrimPrefix(r.URL.Path, "/") != stylesheetName {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/css; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "public, max-age=86400")
		h.Set("ETag", `"`+stylesheetVersion+`"`)
		// ServeContent answers If-None-Match with 304 and handles HEAD.
		http.ServeContent(w, r, stylesheetName, time.Time{}, bytes.NewReader(stylesheet))
	})
}
