package caddymodule

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/app"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/internal/pages"
	"github.com/otpgate/otpgate/internal/token"
)

// tokenPage shows the customer's token and the actions that apply now;
// shown, if set, is the refusal of the action just tried.
func (g *Gateway) tokenPage(w http.ResponseWriter, r *http.Request, status int, shown *gate.Refusal, info string) error {
	who, ref := g.customer(r)
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	st, err := g.shared.Tokens.Status(r.Context(), tokenUser(who))
	if err != nil {
		return g.refuse(w, r, gate.RefusalFor(err))
	}
	if wantsJSON(r) {
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
		RenewFrom: st.RenewFrom, Info: info, MailFrom: g.shared.MailFrom(), Home: g.Home}
	if shown == nil && info == "" && r.Method == http.MethodGet {
		p.Notice, p.Info = tokenPageSays(r.URL.Query(), st.State)
	}
	if shown != nil {
		p.Error, p.AttemptsLeft = shown.Code, shown.AttemptsLeft()
	}
	return g.render(w, status, p)
}

// tokenAction runs STEP 1 (issue), STEP 3 (confirm) and renewal.
func (g *Gateway) tokenAction(w http.ResponseWriter, r *http.Request, action string) error {
	who, ref := g.customer(r)
	var in map[string]string
	if ref == nil {
		in, ref = g.input(r, who.Session)
	}
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	u, ip := tokenUser(who), clientIP(r)
	log := g.logger.With(zap.String("service", u.Service), zap.String("user", u.ID), zap.String("action", action))
	switch action {
	case "issue":
		base, ok := g.linkBase(r)
		if !ok {
			log.Error("token issue refused: no address to build the setup link from", zap.String("host", r.Host), zap.Error(errNoPublicURL))
			return g.tokenError(w, r, gate.Refuse(gate.MailFailed, errNoPublicURL))
		}
		res, err := g.shared.Tokens.Issue(r.Context(), u, strings.TrimSpace(in["email"]), strings.TrimSpace(in["pin"]), base, ip)
		g.countEnrolment(action, err)
		if err != nil {
			log.Info("token issue refused", zap.Error(err))
			return g.tokenError(w, r, g.flow.RefusalFor(err))
		}
		log.Info("token issued; setup mail sent")
		if wantsJSON(r) {
			return writeJSON(w, http.StatusOK, map[string]any{"status": "issued", "email": res.MaskedEmail, "link_expires": res.LinkExpires})
		}
		return redirect(w, g.BasePath+"/token?done=issued")
	case "confirm", "renew":
		code, ref := g.flow.Code(in["otp"])
		if ref != nil {
			return g.tokenError(w, r, ref)
		}
		var expires time.Time
		var err error
		info := "activated"
		if action == "confirm" {
			err = g.shared.Tokens.Activate(r.Context(), u, code, ip)
		} else {
			info = "renewed"
			expires, err = g.shared.Tokens.Renew(r.Context(), u, code, ip)
		}
		g.countEnrolment(action, err)
		if err != nil {
			log.Info("token "+action+" refused", zap.Error(err))
			return g.tokenError(w, r, g.flow.RefusalFor(err))
		}
		log.Info("token " + info)
		if wantsJSON(r) {
			st, err := g.shared.Tokens.Status(r.Context(), u)
			if err != nil {
				return g.refuse(w, r, gate.RefusalFor(err))
			}
			if expires.IsZero() {
				expires = st.Expires
			}
			return writeJSON(w, http.StatusOK, map[string]any{"status": info, "state": st.State, "expires": expires})
		}
		return redirect(w, g.BasePath+"/token?done="+info)
	}
	return g.refuse(w, r, gate.Refuse(gate.NotFound, nil))
}

// tokenActions are the token forms' actions (tokenAction), whose answers
// are redirects to the token page (POST-redirect-GET).
var tokenActions = map[string]bool{"issue": true, "confirm": true, "renew": true}

// tokenPageSays reads the token page's query: why the customer was sent
// there (from: operation, login) and what they just did (done: issued,
// activated, renewed). Each is shown only when the token's state makes it
// true, so a crafted link cannot make the page say what did not happen.
func tokenPageSays(q url.Values, state token.State) (notice, info string) {
	switch q.Get("from") {
	case "operation":
		switch state {
		case token.Expired:
			notice = "renew_not_executed"
		case token.Active:
		default:
			notice = "enrol_not_executed"
		}
	case "login":
		if state != token.Active {
			notice = "enrol_at_login"
		}
	}
	switch done := q.Get("done"); {
	case done == "issued" && state == token.Issued:
		info = "issue_sent"
	case (done == "activated" || done == "renewed") && state == token.Active:
		info = done
	}
	return notice, info
}

// tokenError answers a refused token action: JSON with its details, or the
// token page showing the error (a wrong code with status 200, like the
// confirm page). A store failure is the error page.
func (g *Gateway) tokenError(w http.ResponseWriter, r *http.Request, ref *gate.Refusal) error {
	if wantsJSON(r) || ref.Code == gate.StoreUnavailable {
		if ref.Code == gate.StoreUnavailable || ref.Code == gate.MailFailed {
			g.logger.Error("token lifecycle", zap.String("error", ref.Code), zap.NamedError("cause", errors.Unwrap(ref)))
		}
		return g.refuse(w, r, ref)
	}
	status := ref.Status
	if ref.Code == gate.InvalidOTP {
		status = http.StatusOK
	}
	return g.tokenPage(w, r, status, ref, "")
}

// linkBase is the absolute prefix of mailed setup links.
func (g *Gateway) linkBase(r *http.Request) (string, bool) {
	base := strings.TrimRight(g.PublicURL, "/")
	if base == "" {
		// The Host header is the client's: a link built from it would send
		// the customer's setup link, in the bank's own mail, to whatever
		// host an attacker with the password names. Without public_url only
		// a loopback host (the demo, a test) is taken from the request.
		if !isLoopbackHost(r.Host) {
			return "", false
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + g.BasePath + "/setup/", true
}

// isLoopbackHost reports whether a Host header names this machine.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errNoPublicURL: a setup link was asked for on a host other than loopback
// while public_url is not configured.
var errNoPublicURL = errors.New("public_url is not configured, and setup links are never built from the request's Host header except on loopback; set public_url to the gateway's address")

// setup is STEP 2, on the customer's phone: no login, the mailed link
// plus service ID, user ID and activation PIN.
func (g *Gateway) setup(w http.ResponseWriter, r *http.Request, link string) error {
	if r.Method == http.MethodGet {
		if wantsJSON(r) {
			return writeJSON(w, http.StatusOK, map[string]any{"fields": []string{"service_id", "user_id", "pin"}})
		}
		return g.render(w, http.StatusOK, pages.SetupPage{Common: g.common(w, r, ""), Link: link})
	}
	in, ref := g.input(r, "")
	if ref != nil {
		return g.refuse(w, r, ref)
	}
	res, err := g.shared.Tokens.Setup(r.Context(), link, strings.TrimSpace(in["service_id"]), strings.TrimSpace(in["user_id"]), strings.TrimSpace(in["pin"]), clientIP(r))
	g.countEnrolment("setup", err)
	if err != nil {
		ref := g.flow.RefusalFor(err)
		if wantsJSON(r) || ref.Code == gate.StoreUnavailable {
			return g.refuse(w, r, ref)
		}
		return g.render(w, ref.Status, pages.SetupPage{Common: g.common(w, r, ""), Link: link, Error: ref.Code})
	}
	if wantsJSON(r) {
		return writeJSON(w, http.StatusOK, map[string]any{"secret": res.Secret, "otpauth_uri": res.URI, "qr_png": res.QRPNG, "account": res.Account})
	}
	return g.render(w, http.StatusOK, pages.SetupPage{Common: g.common(w, r, ""), Link: link, Secret: res.Secret, URI: res.URI, QRPNG: res.QRPNG, Account: res.Account})
}

// countEnrolment counts a token page's action (issue, setup, confirm,
// renew) that ended with err, nil when it succeeded.
func (g *Gateway) countEnrolment(action string, err error) {
	result := "ok"
	if err != nil {
		result = g.flow.RefusalFor(err).Code
	}
	app.CountEnrolment(action, result)
}
