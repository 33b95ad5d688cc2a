package app

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/otpgate/otpgate/internal/caddyconf"
)

// validate checks a store's settings: what token.New, the mailer and the
// held-operation manager would refuse when the store is opened, and the
// combinations they would read wrongly.
func (s *StoreSettings) validate() error {
	err := caddyconf.CheckDurations(map[string]caddy.Duration{
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

// ValidateIfWritten checks the settings a handler carries for its store;
// a handler that carries none uses the store the otpgate app configured.
func (s *StoreSettings) ValidateIfWritten() error {
	written, err := s.written()
	if err != nil || len(written) == 0 {
		return err
	}
	return s.validate()
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
