package storemodule

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/otpgate/otpgate/internal/caddyconf"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/etcdstore"
)

func init() {
	caddy.RegisterModule(EtcdStore{})
}

// EtcdStore keeps the gateway's state in an etcd cluster that several
// gateway nodes share: a code spent, an operation released, a lock or a
// session bound on one node holds on all of them. Every node needs the same
// endpoints' cluster, prefix and secret_key. When etcd cannot be reached or
// has no quorum, protected operations and the gateway's pages answer 503
// and ordinary pages pass through; the node recovers by itself.
type EtcdStore struct {
	// Endpoints are the cluster members' client URLs, as etcd's
	// --endpoints takes them: http://host:2379 or https://host:2379, all
	// with one scheme. https takes the system's roots unless tls names a CA.
	Endpoints []string `json:"endpoints,omitempty"`
	// Prefix starts every key the gateway writes, so that one cluster can
	// hold several installations. Default: /otpgate/
	Prefix string `json:"prefix,omitempty"`
	// TLS is the client's TLS: the CA that signed the members'
	// certificates and the client's own certificate and key (etcd's
	// --client-cert-auth).
	TLS *EtcdTLS `json:"tls,omitempty"`
	// Username and Password, when etcd's authentication is on. Use
	// placeholders ({env.OTPGATE_ETCD_PASSWORD}); never write the password
	// into the configuration.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DialTimeout bounds the first contact at start-up. Default: 5s
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// RequestTimeout bounds each request to etcd; a protected operation
	// whose request takes longer answers 503. Default: 5s
	RequestTimeout caddy.Duration `json:"request_timeout,omitempty"`
	// ElectionTTL is how long after a node dies another node takes over
	// the background work (sweeps, reminders, the mail outbox) that runs
	// on one node at a time. Default: 10s; at least 2s.
	ElectionTTL caddy.Duration `json:"election_ttl,omitempty"`

	opts etcdstore.Options
	key  string
}

// EtcdTLS names the files of the etcd client's TLS.
type EtcdTLS struct {
	// CA is a PEM file of the certificates that signed the members'.
	CA string `json:"ca,omitempty"`
	// Cert and Key are the client's certificate and key (PEM files).
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (EtcdStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "otpgate.stores.etcd",
		New: func() caddy.Module { return new(EtcdStore) },
	}
}

// Provision reads the settings, placeholders replaced, and the TLS files.
func (e *EtcdStore) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	if len(e.Endpoints) == 0 {
		return errors.New("otpgate: store etcd: no endpoints; name the cluster's client URLs, e.g. endpoints http://127.0.0.1:2379")
	}
	var eps []string
	scheme := ""
	for _, raw := range e.Endpoints {
		ep := repl.ReplaceAll(raw, "")
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("otpgate: store etcd: endpoint %q: want a client URL such as http://127.0.0.1:2379 or https://etcd1:2379", ep)
		}
		if scheme != "" && u.Scheme != scheme {
			return fmt.Errorf("otpgate: store etcd: endpoints mix http and https (%s); use one scheme for the whole cluster", strings.Join(e.Endpoints, " "))
		}
		scheme = u.Scheme
		eps = append(eps, u.Scheme+"://"+u.Host)
	}
	prefix := repl.ReplaceAll(e.Prefix, "")
	if prefix == "" {
		prefix = "/otpgate/"
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("otpgate: store etcd: prefix %q: end it with / (e.g. /otpgate/), so that no other prefix starts with it", prefix)
	}
	e.opts = etcdstore.Options{
		Endpoints:      eps,
		Prefix:         prefix,
		Username:       repl.ReplaceAll(e.Username, ""),
		Password:       repl.ReplaceAll(e.Password, ""),
		DialTimeout:    time.Duration(e.DialTimeout),
		RequestTimeout: time.Duration(e.RequestTimeout),
		ElectionTTL:    time.Duration(e.ElectionTTL),
	}
	if (e.opts.Username == "") != (e.opts.Password == "") {
		return errors.New("otpgate: store etcd: give both username and password, or neither")
	}
	if e.opts.ElectionTTL != 0 && e.opts.ElectionTTL < 2*time.Second {
		return fmt.Errorf("otpgate: store etcd: election_ttl %v: want 2s or more (etcd's shortest lease)", e.opts.ElectionTTL)
	}
	switch {
	case e.TLS != nil && scheme == "http":
		return errors.New("otpgate: store etcd: tls is set but the endpoints are http://; write them as https://")
	case e.TLS != nil:
		c, err := e.TLS.config(repl)
		if err != nil {
			return err
		}
		e.opts.TLS = c
	case scheme == "https":
		e.opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	sorted := slices.Clone(eps)
	slices.Sort(sorted)
	e.key = "etcd:" + strings.Join(sorted, ",") + prefix
	return nil
}

func (t *EtcdTLS) config(repl *caddy.Replacer) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := repl.ReplaceAll(t.CA, ""); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("otpgate: store etcd: tls ca: %v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("otpgate: store etcd: tls ca %s holds no PEM certificate", ca)
		}
	}
	cert, key := repl.ReplaceAll(t.Cert, ""), repl.ReplaceAll(t.Key, "")
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		return nil, errors.New("otpgate: store etcd: tls needs both cert and key, or neither")
	default:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("otpgate: store etcd: tls cert and key: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// Options are the client options Provision resolved. They are exported
// for "otpgate store copy" (internal/cli), which opens the store itself
// and, working offline, refuses a cluster that does not answer, where Open
// lets the gateway start.
func (e *EtcdStore) Options() etcdstore.Options { return e.opts }

// PoolKey is the cluster and prefix: what the data is, however many
// handlers and loads name it.
func (e *EtcdStore) PoolKey() string { return e.key }

// Open connects to the cluster. A cluster that does not answer now does
// not stop the gateway from starting: it answers 503 on protected
// operations until etcd does.
func (e *EtcdStore) Open() (store.Store, error) {
	logger := caddy.Log().Named("otpgate.etcd")
	o := e.opts
	o.Logger = logger.WithOptions(zap.IncreaseLevel(zap.ErrorLevel))
	s, reachErr, err := etcdstore.Open(o)
	if err != nil {
		return nil, fmt.Errorf("otpgate: store etcd: %v", err)
	}
	if reachErr != nil {
		logger.Warn("etcd does not answer now; protected operations answer 503 until it does",
			zap.Strings("endpoints", o.Endpoints), zap.Error(reachErr))
	}
	return s, nil
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store etcd [<endpoint...>] {
//		endpoints       <url...>
//		prefix          <prefix>
//		tls {
//			ca   <file>
//			cert <file>
//			key  <file>
//		}
//		username        <name>
//		password        <password, e.g. {env.OTPGATE_ETCD_PASSWORD}>
//		dial_timeout    <duration>
//		request_timeout <duration>
//		election_ttl    <duration>
//	}
func (e *EtcdStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	e.Endpoints = d.RemainingArgs()
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "endpoints":
			if len(e.Endpoints) > 0 {
				return d.Errf("store etcd: endpoints given twice")
			}
			if e.Endpoints = d.RemainingArgs(); len(e.Endpoints) == 0 {
				return d.Errf("store etcd: endpoints: want the cluster's client URLs, e.g. http://127.0.0.1:2379")
			}
		case "prefix":
			err = caddyconf.OneArg(d, &e.Prefix)
		case "username":
			err = caddyconf.OneArg(d, &e.Username)
		case "password":
			err = caddyconf.OneArg(d, &e.Password)
		case "dial_timeout":
			err = caddyconf.DurationArg(d, &e.DialTimeout)
		case "request_timeout":
			err = caddyconf.DurationArg(d, &e.RequestTimeout)
		case "election_ttl":
			err = caddyconf.DurationArg(d, &e.ElectionTTL)
		case "tls":
			err = e.parseTLS(d)
		default:
			return d.Errf("store etcd: unrecognized option %q (want endpoints, prefix, tls, username, password, dial_timeout, request_timeout or election_ttl)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *EtcdStore) parseTLS(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if e.TLS != nil {
		return d.Errf("store etcd: tls given twice")
	}
	e.TLS = new(EtcdTLS)
	for d.NextBlock(1) {
		var err error
		switch d.Val() {
		case "ca":
			err = caddyconf.OneArg(d, &e.TLS.CA)
		case "cert":
			err = caddyconf.OneArg(d, &e.TLS.Cert)
		case "key":
			err = caddyconf.OneArg(d, &e.TLS.Key)
		default:
			return d.Errf("store etcd: tls: unrecognized option %q (want ca, cert or key)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ Store                 = (*EtcdStore)(nil)
	_ caddy.Provisioner     = (*EtcdStore)(nil)
	_ caddyfile.Unmarshaler = (*EtcdStore)(nil)
)
