package caddymodule

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/token"
)

// tokenPage shows the customer's token and the actions that apply now.
func (g *Gateway) tokenPage(w http.ResponseWriter, r *http.Request, status int, errID, info string, args ...int) error {
	who, ok, err := g.customer(w, r, "token page")
	if !ok {
		return err
	}
	st, err := g.tokens.Status(r.Context(), tokenUser(who))
	if err != nil {
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "loading token: "+err.Error())
	}
	if wantsJSON(r) && errID == "" {
		out := map[string]any{"state": st.State, "locked": st.Locked, "email": token.MaskEmail(st.Email), "renew_open": st.RenewOpen}
		if !st.Expires.IsZero() {
			out["expires"], out["days_left"], out["renew_from"] = st.Expires, st.DaysLeft, st.RenewFrom
		}
		if info != "" {
			out["status"] = info
		}
		return writeJSON(w, status, out)
	}
	p := pages.TokenPage{Common: g.common(w, r, who.Session), State: string(st.State), Locked: st.Locked,
		MaskedEmail: token.MaskEmail(st.Email), Expires: st.Expires, DaysLeft: st.DaysLeft, RenewOpen: st.RenewOpen,
		RenewFrom: st.RenewFrom, Error: errID, Info: info}
	if len(args) > 0 {
		p.AttemptsLeft = args[0]
	}
	return g.render(w, status, p)
}

// tokenAction runs STEP 1 (issue), STEP 3 (confirm) and renewal.
func (g *Gateway) tokenAction(w http.ResponseWriter, r *http.Request, action string) error {
	who, ok, err := g.customer(w, r, "token action")
	if !ok {
		return err
	}
	in, err := g.input(r, who.Session)
	if err != nil {
		return g.inputError(w, r, err)
	}
	u, ip := tokenUser(who), clientIP(r)
	log := g.logger.With(zap.String("service", u.Service), zap.String("user", u.ID), zap.String("action", action))
	switch action {
	case "issue":
		res, err := g.tokens.Issue(r.Context(), u, strings.TrimSpace(in["email"]), strings.TrimSpace(in["pin"]), g.linkBase(r), ip)
		if err != nil {
			log.Info("token issue refused", zap.Error(err))
			return g.tokenError(w, r, err)
		}
		log.Info("token issued; setup mail sent")
		if wantsJSON(r) {
			return writeJSON(w, http.StatusOK, map[string]any{"status": "issued", "email": res.MaskedEmail, "link_expires": res.LinkExpires})
		}
		return g.tokenPage(w, r, http.StatusOK, "", "issue_sent")
	case "confirm", "renew":
		code, ok := g.otpInput(in)
		if !ok {
			return g.tokenError(w, r, errOTPFormat)
		}
		var expires time.Time
		info := "activated"
		if action == "confirm" {
			err = g.tokens.Activate(r.Context(), u, code, ip)
		} else {
			info = "renewed"
			expires, err = g.tokens.Renew(r.Context(), u, code, ip)
		}
		if err != nil {
			log.Info("token "+action+" refused", zap.Error(err))
			return g.tokenError(w, r, err)
		}
		log.Info("token " + info)
		if wantsJSON(r) {
			st, err := g.tokens.Status(r.Context(), u)
			if err != nil {
				return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "loading token: "+err.Error())
			}
			if expires.IsZero() {
				expires = st.Expires
			}
			return writeJSON(w, http.StatusOK, map[string]any{"status": info, "state": st.State, "expires": expires})
		}
		return g.tokenPage(w, r, http.StatusOK, "", info)
	}
	return g.refuse(w, r, http.StatusNotFound, "not_found", "no such token action")
}

var errOTPFormat = errors.New("otpgate: enter the digits the token app shows")

// tokenError answers a lifecycle refusal with its status and message.
func (g *Gateway) tokenError(w http.ResponseWriter, r *http.Request, err error) error {
	var ce *token.CodeError
	var early *token.RenewTooEarlyError
	status, id := http.StatusServiceUnavailable, "store_unavailable"
	extra := map[string]any{}
	switch {
	case errors.As(err, &ce) && ce.Outcome == token.CodeInvalid:
		status, id = http.StatusUnauthorized, "invalid_otp"
		extra["attempts_left"] = ce.AttemptsLeft
	case errors.Is(err, token.ErrReusedCode):
		status, id = http.StatusConflict, "otp_reused"
	case errors.Is(err, token.ErrLocked):
		status, id = http.StatusLocked, "locked"
	case errors.As(err, &early):
		status, id = http.StatusConflict, "renew_too_early"
		extra["renew_from"] = early.From
	case errors.Is(err, errOTPFormat):
		status, id = http.StatusBadRequest, "otp_format"
	case errors.Is(err, token.ErrPINFormat):
		status, id = http.StatusBadRequest, "pin_format"
	case errors.Is(err, token.ErrEmailFormat):
		status, id = http.StatusBadRequest, "email_format"
	case errors.Is(err, token.ErrActiveToken):
		status, id = http.StatusConflict, "active_token"
	case errors.Is(err, token.ErrReissueNeedsToken):
		status, id = http.StatusForbidden, "reissue_requires_token_or_bank"
	case errors.Is(err, token.ErrIssueChanged):
		status, id = http.StatusConflict, "issue_changed"
	case errors.Is(err, token.ErrMail):
		status, id = http.StatusBadGateway, "mail_failed"
	case errors.Is(err, token.ErrNotInitialised):
		status, id = http.StatusConflict, "not_issued"
	case errors.Is(err, token.ErrNoMailer):
		status, id = http.StatusServiceUnavailable, "mail_failed"
		g.logger.Error("token issue without a mailer configured", zap.Error(err))
	case errors.Is(err, token.ErrNoToken):
		status, id = http.StatusConflict, "enrollment_required"
	default:
		g.logger.Error("token lifecycle", zap.Error(err))
	}
	if wantsJSON(r) {
		extra["error"], extra["message"] = id, "otpgate: "+pages.T(pages.English, id, extra["attempts_left"])
		return writeJSON(w, status, extra)
	}
	if status == http.StatusServiceUnavailable {
		return g.refuse(w, r, status, id, err.Error())
	}
	// A wrong code is a normal page with the error on it, like the confirm page.
	if status == http.StatusUnauthorized {
		status = http.StatusOK
	}
	attempts := 0
	if ce != nil {
		attempts = ce.AttemptsLeft
	}
	return g.tokenPage(w, r, status, id, "", attempts)
}

// revoke pauses the customer's revocation like any protected operation: it
// goes through the gateway's own policy, so it needs a code from the token.
func (g *Gateway) revoke(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	body, err := g.readBody(r)
	if err != nil {
		return g.refuseBody(w, r, err)
	}
	m := g.policy.Classify(policyRequest(r), body)
	if m == nil || m.Rule.Name != revokeRule {
		return g.refuse(w, r, http.StatusBadRequest, "bad_request", "revoke request not recognised by the built-in rule")
	}
	who, ok, err := g.customer(w, r, "revoke")
	if !ok {
		return err
	}
	// Only a JSON content type exempts from the CSRF token: a cross-site
	// page cannot send one without a CORS preflight, while it can set Accept.
	if !isJSONBody(r) && !g.csrfOK(r, who.Session, formValue(body, "csrf")) {
		return g.refuse(w, r, http.StatusForbidden, "csrf", "revoke form without a valid CSRF token")
	}
	return g.protect(w, r, next, m, body)
}

// linkBase is the absolute prefix of mailed setup links.
func (g *Gateway) linkBase(r *http.Request) string {
	base := strings.TrimRight(g.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + g.BasePath + "/setup/"
}

// setup is STEP 2, on the customer's phone: no login, the mailed link
// plus service ID, user ID and activation PIN.
func (g *Gateway) setup(w http.ResponseWriter, r *http.Request, link string) error {
	if r.Method == http.MethodGet {
		if wantsJSON(r) {
			return writeJSON(w, http.StatusOK, map[string]any{"fields": []string{"service_id", "user_id", "pin"}})
		}
		return g.render(w, http.StatusOK, pages.SetupPage{Common: g.common(w, r, ""), Link: link})
	}
	in, err := g.input(r, "")
	if err != nil {
		return g.inputError(w, r, err)
	}
	res, err := g.tokens.Setup(r.Context(), link, strings.TrimSpace(in["service_id"]), strings.TrimSpace(in["user_id"]), strings.TrimSpace(in["pin"]), clientIP(r))
	status, id := http.StatusOK, ""
	switch {
	case errors.Is(err, token.ErrSetupFailed):
		status, id = http.StatusUnauthorized, "setup_failed"
	case errors.Is(err, token.ErrLinkGone):
		status, id = http.StatusGone, "link_gone"
	case err != nil:
		g.logger.Error("token setup", zap.Error(err))
		return g.refuse(w, r, http.StatusServiceUnavailable, "store_unavailable", "setup: "+err.Error())
	}
	if wantsJSON(r) {
		if id != "" {
			return writeJSON(w, status, map[string]any{"error": id, "message": "otpgate: " + pages.T(pages.English, id)})
		}
		return writeJSON(w, http.StatusOK, map[string]any{"secret": res.Secret, "otpauth_uri": res.URI, "qr_png": res.QRPNG, "account": res.Account})
	}
	if id != "" {
		return g.render(w, status, pages.SetupPage{Common: g.common(w, r, ""), Link: link, Error: id})
	}
	return g.render(w, http.StatusOK, pages.SetupPage{Common: g.common(w, r, ""), Link: link, Secret: res.Secret, URI: res.URI, QRPNG: res.QRPNG, Account: res.Account})
}
