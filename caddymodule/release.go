package caddymodule

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/challenge"
	"github.com/otpgate/otpgate/internal/pages"
)

// release hands the stored request to the next handler (the reverse proxy
// to the bank), once. The operation was consumed in the same transaction
// that accepted the code, so nothing here can send it twice: an upstream
// failure is reported to the customer and audited, never retried.
func (g *Gateway) release(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, op *challenge.Operation) error {
	ctx := context.WithoutCancel(r.Context())
	if op.Rule == revokeRule {
		return g.releaseRevoke(w, r, op)
	}
	u, err := url.ParseRequestURI(op.RequestURI)
	if err != nil {
		g.logErr(g.challenges.RecordRelease(ctx, op, clientIP(r), 0, err), "auditing release")
		return g.refuse(w, r, http.StatusBadGateway, "upstream_failed", "stored request URI unparsable: "+err.Error())
	}
	rel := r.Clone(r.Context())
	rel.Method = op.Method
	rel.URL = u
	rel.RequestURI = op.RequestURI
	rel.Host = op.Host
	rel.Header = op.Header.Clone()
	// The confirming request's cookies: the same customer session as the
	// stored request's (the challenge is bound to it), but current, so a
	// bank that rotated the session ID meanwhile still accepts it.
	for _, line := range r.Header.Values("Cookie") {
		if kept := withoutCookie(line, csrfCookie); kept != "" {
			rel.Header.Add("Cookie", kept)
		}
	}
	rel.Body = io.NopCloser(bytes.NewReader(op.Body))
	rel.GetBody = nil
	rel.ContentLength = int64(len(op.Body))
	rel.TransferEncoding = nil
	rel.Form, rel.PostForm, rel.MultipartForm = nil, nil, nil

	rec := &statusRecorder{ResponseWriter: w}
	upErr := next.ServeHTTP(rec, rel)
	if rec.status == 0 && upErr == nil {
		rec.status = http.StatusOK
	}
	g.logErr(g.challenges.RecordRelease(ctx, op, clientIP(r), rec.status, upErr), "auditing release")
	if upErr == nil {
		g.logger.Info("operation released", zap.String("challenge", op.ID), zap.String("digest", op.Digest), zap.Int("upstream_status", rec.status))
		return nil
	}
	g.logger.Error("bank failed after release; not retried", zap.String("challenge", op.ID), zap.String("digest", op.Digest), zap.Error(upErr))
	if rec.status != 0 {
		return upErr
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusBadGateway, map[string]any{"error": "upstream_failed", "message": "otpgate: " + pages.T(pages.English, "upstream_failed")})
	}
	return g.message(w, r, http.StatusBadGateway, "title_upstream_failed", "upstream_failed", pages.Link{Href: g.Home, Text: "back_to_menu"})
}

// releaseRevoke carries out the gateway's own token_management operation.
func (g *Gateway) releaseRevoke(w http.ResponseWriter, r *http.Request, op *challenge.Operation) error {
	ctx := context.WithoutCancel(r.Context())
	u := tokenUser(who{Service: op.Service, User: op.User})
	err := g.tokens.Revoke(ctx, u, clientIP(r))
	status := http.StatusOK
	if err != nil {
		status = http.StatusConflict
	}
	g.logErr(g.challenges.RecordRelease(ctx, op, clientIP(r), status, err), "auditing release")
	if err != nil {
		return g.tokenError(w, r, err)
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, map[string]any{"status": "revoked"})
	}
	return g.tokenPage(w, r, http.StatusOK, "", "revoked")
}

// withoutCookie removes one cookie from a Cookie header line.
func withoutCookie(line, name string) string {
	parts := strings.Split(line, ";")
	kept := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(strings.TrimSpace(p), "=")
		if k != name {
			kept = append(kept, strings.TrimSpace(p))
		}
	}
	return strings.Join(kept, "; ")
}

// statusRecorder notes the status the bank answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
