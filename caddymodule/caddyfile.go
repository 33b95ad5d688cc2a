package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/otpgate/otpgate/internal/caddyconf"
	"github.com/otpgate/otpgate/internal/gate"
	"github.com/otpgate/otpgate/policy"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("otpgate", parseCaddyfile)
	// After forward_auth, so identities set by basic_auth or forward_auth
	// are visible and the URI is the one the bank will see after rewrite;
	// before reverse_proxy, which it guards. Operators write no order line.
	httpcaddyfile.RegisterDirectiveOrder("otpgate", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gateway)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the gateway from Caddyfile tokens. Syntax:
//
//	otpgate {
//		base_path          <path>
//		database           <file>
//		store bbolt [<path>] {
//			path <file>
//		}
//		secret_key         <key or {env.VAR}>
//		secret_key_file    <file>
//		retired_keys       <key...>
//		issuer             <name>
//		period             <duration>
//		digits             6|8
//		algorithm          SHA1|SHA256|SHA512
//		skew               <periods>
//		max_failures       <n>
//		lock_duration      <duration>
//		challenge_lifetime <duration>
//		max_body           <size>
//		max_buffered       <size>
//		allow_ambiguous_paths <prefix/**...>
//		validity           <duration>
//		renew_window       <duration>
//		link_lifetime      <duration>
//		require_otp        all | <service_id...>
//		public_url         <https://host>
//		home               <path>
//		enrol_at_login     on|off
//		enrol_address      registered | any | domain <domain...>
//		bank_table         <CSV file of bank and branch names>
//		contact            <how to reach the bank>
//		sweep_interval     <duration>
//		audit_retention    <duration>
//
//		identity login_form {
//			path            <login path>
//			service_field   <field>
//			user_field      <field>
//			cookie          <session cookie name>
//			success_status  <status...>
//			success_location <path prefix>
//			logout_path     <path>
//			idle_timeout    <duration>
//			max_age         <duration>
//		}
//		identity header {
//			service <placeholder>
//			user    <placeholder>
//			trusted forward_auth|proxy
//		}
//
//		mail_from <address>
//		mail_dir  <folder>
//		smtp <host:port> {
//			username <user>
//			password <password>
//			tls      starttls|tls|none
//			ca_file  <PEM file of extra trusted roots>
//			timeout  <duration>
//		}
//
//		rule <kind> [<name>] {
//			path    <pattern...>
//			method  <method...>
//			param   <name> [<value>]
//			show    <field> [<label_ja> [<label_en> [yen|account|date|code|bank|branch|plain]]]
//			show_file <field> zengin | csv "<column map>" [utf-8|shift_jis]
//			refuse_doubtful_files
//			title   <name_ja> [<name_en>]
//			charset <charset>
//		}
//	}
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		var err error
		switch name {
		case "base_path":
			err = caddyconf.OneArg(d, &g.BasePath)
		case "public_url":
			err = caddyconf.OneArg(d, &g.PublicURL)
		case "home":
			err = caddyconf.OneArg(d, &g.Home)
		case "enrol_at_login":
			var v string
			if err = caddyconf.OneArg(d, &v); err == nil {
				if v != "on" && v != "off" {
					return d.Errf("enrol_at_login %q: want on or off", v)
				}
				on := v == "on"
				g.EnrolAtLogin = &on
			}
		case "max_body":
			var s string
			if err = caddyconf.OneArg(d, &s); err == nil {
				size, perr := humanize.ParseBytes(s)
				if perr != nil || size == 0 || size > maxBodyLimit {
					return d.Errf("max_body %q: want a size such as 10MiB, at most %dMiB (what a held operation can store)", s, maxBodyLimit>>20)
				}
				g.MaxBody = int64(size)
			}
		case "max_buffered":
			var s string
			if err = caddyconf.OneArg(d, &s); err == nil {
				size, perr := humanize.ParseBytes(s)
				if perr != nil || size == 0 || size > 1<<40 {
					return d.Errf("max_buffered %q: want a size such as 256MiB", s)
				}
				g.MaxBuffered = int64(size)
			}
		case "allow_ambiguous_paths":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("allow_ambiguous_paths: want path prefixes such as /static/**")
			}
			g.AllowAmbiguousPaths = append(g.AllowAmbiguousPaths, args...)
		case "bank_table":
			err = caddyconf.OneArg(d, &g.BankTable)
		case "identity":
			err = g.parseIdentity(d)
		case "rule":
			err = g.parseRule(d)
		default:
			var known bool
			if known, err = g.StoreSettings.UnmarshalOption(d); !known {
				return d.Errf("unrecognized otpgate option %q", name)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (g *Gateway) parseIdentity(d *caddyfile.Dispenser) error {
	if g.Identity != nil {
		return d.Errf("identity: given twice; a gateway has one identity")
	}
	if !d.NextArg() {
		return d.Errf("identity: want login_form or header")
	}
	id := &Identity{Source: d.Val()}
	if id.Source != "login_form" && id.Source != "header" {
		return d.Errf("identity %q: want login_form or header", id.Source)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if id.Source == "header" && opt != "service" && opt != "user" && opt != "trusted" {
			return d.Errf("identity header: unrecognized option %q (want service, user or trusted)", opt)
		}
		var err error
		switch opt {
		case "path":
			err = caddyconf.OneArg(d, &id.LoginPath)
		case "service_field":
			err = caddyconf.OneArg(d, &id.ServiceField)
		case "user_field":
			err = caddyconf.OneArg(d, &id.UserField)
		case "cookie":
			err = caddyconf.OneArg(d, &id.Cookie)
		case "success_location":
			err = caddyconf.OneArg(d, &id.SuccessLocation)
		case "logout_path":
			err = caddyconf.OneArg(d, &id.LogoutPath)
		case "idle_timeout":
			err = caddyconf.DurationArg(d, &id.IdleTimeout)
		case "max_age":
			err = caddyconf.DurationArg(d, &id.MaxAge)
		case "service":
			err = caddyconf.OneArg(d, &id.Service)
		case "user":
			err = caddyconf.OneArg(d, &id.User)
		case "trusted":
			err = caddyconf.OneArg(d, &id.Trusted)
		case "success_status":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("success_status: want one or more HTTP status codes")
			}
			for _, a := range args {
				n, err := strconv.Atoi(a)
				if err != nil || n < 100 || n > 599 {
					return d.Errf("success_status %q: want an HTTP status code such as 302", a)
				}
				id.SuccessStatus = append(id.SuccessStatus, n)
			}
		default:
			return d.Errf("identity login_form: unrecognized option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	// Checked again in Validate, for JSON configurations; here the error
	// names the line.
	if err := id.validate(); err != nil {
		return d.Errf("%v", err)
	}
	g.Identity = id
	return nil
}

func (g *Gateway) parseRule(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return d.Errf("rule: want a kind (transfer, bill_payment, bulk_transfer, token_management, user_change) and an optional name")
	}
	r := policy.Rule{Kind: policy.Kind(args[0])}
	if !r.Kind.Valid() {
		return d.Errf("rule %q: unknown kind; want transfer, bill_payment, bulk_transfer, token_management or user_change", args[0])
	}
	if len(args) == 2 {
		r.Name = args[1]
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		vals := d.RemainingArgs()
		switch opt {
		case "path":
			if len(vals) == 0 {
				return d.Errf("rule %s: path needs at least one pattern", args[0])
			}
			r.Paths = append(r.Paths, vals...)
		case "method":
			if len(vals) == 0 {
				return d.Errf("rule %s: method needs at least one method", args[0])
			}
			for _, m := range vals {
				r.Methods = append(r.Methods, strings.ToUpper(m))
			}
		case "param":
			if len(vals) == 0 || len(vals) > 2 {
				return d.Errf("rule %s: param wants a name and an optional value", args[0])
			}
			c := policy.Condition{Name: vals[0]}
			if len(vals) == 2 {
				c.Value = vals[1]
			}
			r.Params = append(r.Params, c)
		case "show":
			if len(vals) == 0 || len(vals) > 4 {
				return d.Errf("rule %s: show wants a field name, then optional Japanese and English labels and a format (yen, account, date, code, bank, branch or plain)", args[0])
			}
			f := policy.Field{Name: vals[0]}
			if len(vals) > 1 {
				f.Label = vals[1]
			}
			if len(vals) > 2 {
				f.LabelEn = vals[2]
			}
			if len(vals) > 3 {
				f.Format = vals[3]
			}
			r.Show = append(r.Show, f)
		case "show_file":
			if len(vals) < 2 || len(vals) > 4 || (vals[1] == "zengin") != (len(vals) == 2) {
				return d.Errf(`rule %s: show_file wants the file's field, then zengin, or csv with a column map in quotes and an optional charset (utf-8 or shift_jis)`, args[0])
			}
			r.ShowFile = &policy.FileDisplay{Field: vals[0], Format: vals[1]}
			if len(vals) > 2 {
				r.ShowFile.Columns = vals[2]
			}
			if len(vals) > 3 {
				r.ShowFile.Charset = vals[3]
			}
		case "refuse_doubtful_files":
			if len(vals) != 0 {
				return d.Errf("rule %s: refuse_doubtful_files takes no value", args[0])
			}
			r.RefuseDoubtfulFiles = true
		case "title":
			if len(vals) == 0 || len(vals) > 2 {
				return d.Errf("rule %s: title wants the operation's name in Japanese and, optionally, in English", args[0])
			}
			r.Title = vals[0]
			if len(vals) > 1 {
				r.TitleEn = vals[1]
			}
		case "charset":
			if len(vals) != 1 {
				return d.Errf("rule %s: charset wants one name such as shift_jis", args[0])
			}
			r.Charset = vals[0]
		default:
			return d.Errf("rule %s: unrecognized option %q (want path, method, param, show, show_file, refuse_doubtful_files, title or charset)", args[0], opt)
		}
	}
	if len(r.Paths) == 0 {
		return d.Errf("rule %s: no path; add 'path <pattern>'", args[0])
	}
	g.Rules = append(g.Rules, r)
	// Checked again in Validate, for JSON configurations; here the error
	// names the line.
	if err := gate.CheckRules(g.Rules); err != nil {
		return d.Errf("%v", err)
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Gateway)(nil)
