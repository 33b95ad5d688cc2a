package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/store"
)

// Checks of the configuration that Validate methods share. Each runs at
// load, for JSON configurations as for Caddyfiles, so that a mistake is
// refused then and not at the first mail, held operation or code.

// maxBodyLimit is the largest max_body a held operation can store. A held
// operation is sealed into one chunked store value of at most
// store.MaxChunkedSize (64 MiB) with its headers and the fields it shows,
// which are copies of values in the body: half of it leaves room for the
// copies, less 1 MiB for the headers (Caddy's default header limit).
const maxBodyLimit = store.MaxChunkedSize/2 - 1<<20

// validate checks a store's settings: what token.New, the mailer and the
// held-operation manager would refuse when the store is opened, and the
// combinations they would read wrongly.
func (s *StoreSettings) validate() error {
	err := checkDurations(map[string]caddy.Duration{
		"period": s.Period, "lock_duration": s.LockDuration, "challenge_lifetime": s.ChallengeLifetime,
		"validity": s.Validity, "renew_window": s.RenewWindow, "link_lifetime": s.LinkLifetime, "sweep_interval": s.SweepInterval,
	})
	if err != nil {
		return err
	}
	if err := checkRetention(s.AuditRetention); err != nil {
		return err
	}
	if err := s.tokenConfig().Check(); err != nil {
		return fmt.Errorf("otpgate: %v", err)
	}
	if err := checkRequireOTP(s.RequireOTP); err != nil {
		return err
	}
	return s.Mail.validate()
}

// validateIfWritten checks the settings a handler carries for its store;
// a handler that carries none uses the store the otpgate app configured.
func (s *StoreSettings) validateIfWritten() error {
	written, err := s.written()
	if err != nil || len(written) == 0 {
		return err
	}
	return s.validate()
}

// checkDurations refuses a negative duration (the Caddyfile parser cannot
// write one; JSON can), naming the option.
func checkDurations(ds map[string]caddy.Duration) error {
	names := make([]string, 0, len(ds))
	for name := range ds {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if d := ds[name]; d < 0 {
			return fmt.Errorf("otpgate: %s %s: want a positive duration such as 5m or 30d", name, time.Duration(d))
		}
	}
	return nil
}

// isRequireAll says whether a require_otp entry is the keyword "all". In
// any case: an operator who writes ALL means every service, and reading it
// as one service named ALL would leave the others unprotected. A service
// whose ID is "all" in some case is therefore switched on with the
// require-otp command, not listed in require_otp.
func isRequireAll(s string) bool { return strings.EqualFold(s, "all") }

// checkRequireOTP refuses a require_otp list that says two things at once:
// "all" beside service IDs (redundant, or meant for a service named all;
// see isRequireAll), and empty IDs.
func checkRequireOTP(ids []string) error {
	for _, s := range ids {
		switch {
		case strings.TrimSpace(s) == "":
			return errors.New("otpgate: require_otp: an empty service ID; list service IDs, or all")
		case isRequireAll(s) && len(ids) > 1:
			return fmt.Errorf("otpgate: require_otp %q beside service IDs: write all alone, or only service IDs (a service whose ID is %q is switched on with \"otpgate require-otp\")", s, s)
		}
	}
	return nil
}

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
