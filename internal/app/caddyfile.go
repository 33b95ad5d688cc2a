package app

import (
	"encoding/json"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/otpgate/otpgate/internal/caddyconf"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("otpgate", parseGlobalOption)
}

// parseGlobalOption reads the global option otpgate: one store of the
// otpgate app and its settings, those the otpgate directive accepts as a
// shorthand. Each otpgate global option adds a store. Syntax:
//
//	{
//		otpgate {
//			database <file> | store bbolt [<path>] { path <file> }
//			secret_key         <key or {env.VAR}>
//			…                  (every store setting of the directive)
//			sweep_interval     <duration>
//			audit_retention    <duration>
//		}
//	}
//
// The otpgate handlers on that store then name it alone (database or
// store), or nothing when it is the only one.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	a := new(App)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("otpgate global option: unexpected earlier value %T", existing)
		}
		if err := json.Unmarshal(prev.Value, a); err != nil {
			return nil, d.Errf("otpgate global option: reading the earlier stores: %v", err)
		}
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	s := new(StoreSettings)
	for d.NextBlock(0) {
		known, err := s.UnmarshalOption(d)
		if err != nil {
			return nil, err
		}
		if !known {
			return nil, d.Errf("unrecognized otpgate global option %q: the global otpgate option holds a store's settings; identity, rules and the pages' settings go in the otpgate directive", d.Val())
		}
	}
	a.Stores = append(a.Stores, s)
	return httpcaddyfile.App{Name: "otpgate", Value: caddyconfig.JSON(a, nil)}, nil
}

// UnmarshalOption reads the store setting at d's current token, one line
// or block of the otpgate directive or global option; known is false if
// the token names no store setting.
func (s *StoreSettings) UnmarshalOption(d *caddyfile.Dispenser) (known bool, err error) {
	switch d.Val() {
	case "database":
		if s.StoreRaw != nil {
			return true, d.Errf("database: the store is already given; database <file> is the shorthand of store bbolt { path <file> }")
		}
		err = caddyconf.OneArg(d, &s.Database)
	case "store":
		err = s.parseStore(d)
	case "sweep_interval":
		err = caddyconf.DurationArg(d, &s.SweepInterval)
	case "audit_retention":
		err = caddyconf.DurationArg(d, &s.AuditRetention)
	case "secret_key":
		err = caddyconf.OneArg(d, &s.SecretKey)
	case "secret_key_file":
		err = caddyconf.OneArg(d, &s.SecretKeyFile)
	case "retired_keys":
		s.RetiredKeys = d.RemainingArgs()
		if len(s.RetiredKeys) == 0 {
			return true, d.ArgErr()
		}
	case "issuer":
		err = caddyconf.OneArg(d, &s.Issuer)
	case "algorithm":
		err = caddyconf.OneArg(d, &s.Algorithm)
	case "period":
		err = caddyconf.DurationArg(d, &s.Period)
	case "lock_duration":
		err = caddyconf.DurationArg(d, &s.LockDuration)
	case "challenge_lifetime":
		err = caddyconf.DurationArg(d, &s.ChallengeLifetime)
	case "validity":
		err = caddyconf.DurationArg(d, &s.Validity)
	case "renew_window":
		err = caddyconf.DurationArg(d, &s.RenewWindow)
	case "link_lifetime":
		err = caddyconf.DurationArg(d, &s.LinkLifetime)
	case "digits":
		err = caddyconf.IntArg(d, &s.Digits, "6 or 8", func(n int) bool { return n == 6 || n == 8 })
	case "max_failures":
		err = caddyconf.IntArg(d, &s.MaxFailures, "a number of wrong codes, 1-10", func(n int) bool { return n >= 1 && n <= 10 })
	case "skew":
		var n int
		if err = caddyconf.IntArg(d, &n, "a number of periods, 0-3", func(n int) bool { return n >= 0 && n <= 3 }); err == nil {
			u := uint(n)
			s.Skew = &u
		}
	case "enrol_address":
		err = s.parseEnrolAddress(d)
	case "contact":
		err = caddyconf.OneArg(d, &s.Contact)
	case "require_otp":
		s.RequireOTP = d.RemainingArgs()
		if len(s.RequireOTP) == 0 {
			return true, d.Errf("require_otp: want 'all' or service IDs")
		}
	case "mail_from":
		s.mailConfig()
		err = caddyconf.OneArg(d, &s.Mail.From)
	case "mail_dir":
		s.mailConfig()
		err = caddyconf.OneArg(d, &s.Mail.Dir)
	case "smtp":
		s.mailConfig()
		err = s.parseSMTP(d)
	default:
		return false, nil
	}
	return true, err
}

// parseStore reads "store <module> …", refusing a second store.
func (s *StoreSettings) parseStore(d *caddyfile.Dispenser) error {
	if s.StoreRaw != nil || s.Database != "" {
		return d.Errf("store: the store is already given (by store or database); a gateway has one store")
	}
	if !d.NextArg() {
		return d.Errf("store: want a store module such as bbolt")
	}
	name := d.Val()
	mod, err := caddyfile.UnmarshalModule(d, "otpgate.stores."+name)
	if err != nil {
		return err
	}
	s.StoreRaw = caddyconfig.JSONModuleObject(mod, "module", name, nil)
	return nil
}

// parseEnrolAddress reads "enrol_address registered|any|domain <d...>".
func (s *StoreSettings) parseEnrolAddress(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && (args[0] == "registered" || args[0] == "any"):
	case len(args) > 1 && args[0] == "domain":
	default:
		return d.Errf("enrol_address: want registered, any, or domain followed by mail domains such as docomo.ne.jp")
	}
	s.EnrolAddress, s.EnrolDomains = args[0], args[1:]
	return nil
}

func (s *StoreSettings) mailConfig() {
	if s.Mail == nil {
		s.Mail = new(MailConfig)
	}
}

func (c *StoreSettings) parseSMTP(d *caddyfile.Dispenser) error {
	if c.Mail.SMTP != nil {
		return d.Errf("smtp: given twice; mail goes through one relay")
	}
	s := &SMTPConfig{}
	if !d.NextArg() {
		return d.Errf("smtp: want the relay's host:port")
	}
	s.Address = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "username":
			err = caddyconf.OneArg(d, &s.Username)
		case "password":
			err = caddyconf.OneArg(d, &s.Password)
		case "tls":
			if err = caddyconf.OneArg(d, &s.TLS); err == nil && s.TLS != "starttls" && s.TLS != "tls" && s.TLS != "none" {
				return d.Errf("smtp tls %q: want starttls, tls or none", s.TLS)
			}
		case "ca_file":
			err = caddyconf.OneArg(d, &s.CAFile)
		case "timeout":
			err = caddyconf.DurationArg(d, &s.Timeout)
		default:
			return d.Errf("smtp: unrecognized option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	// Checked again in Validate, for JSON configurations; here the error
	// names the line. A placeholder such as {env.SMTP_HOST} has its value
	// only where the configuration runs, so Validate alone checks it.
	if !strings.ContainsAny(s.Address, "{}") {
		if _, err := s.relay(caddy.NewEmptyReplacer(), ""); err != nil {
			return d.Errf("%v", err)
		}
	}
	c.Mail.SMTP = s
	return nil
}
