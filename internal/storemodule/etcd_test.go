package storemodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// store etcd's settings: what a bank may write is taken, and what cannot
// work is refused at load with what to write instead.
func TestEtcdStoreSettings(t *testing.T) {
	t.Setenv("OTPGATE_TEST_ETCD_PASSWORD", "s3cret")
	tests := []struct {
		name    string
		block   string
		wantErr string // "" to load
	}{
		{"endpoints as etcd takes them", `endpoints http://127.0.0.1:2379 http://127.0.0.1:22379`, ""},
		{"endpoints as arguments", ``, ""},
		{"auth from the environment", "endpoints http://127.0.0.1:2379\nusername otpgate\npassword {env.OTPGATE_TEST_ETCD_PASSWORD}", ""},
		{"no endpoints", `prefix /otpgate/`, "no endpoints"},
		{"not a URL", `endpoints 127.0.0.1:2379`, "want a client URL"},
		{"a path", `endpoints http://127.0.0.1:2379/v3`, "want a client URL"},
		{"schemes mixed", `endpoints http://a:2379 https://b:2379`, "mix http and https"},
		{"tls over http", "endpoints http://a:2379\ntls {\nca /nonexistent.pem\n}", "write them as https://"},
		{"tls file missing", "endpoints https://a:2379\ntls {\nca /nonexistent/ca.pem\n}", "tls ca"},
		{"cert without key", "endpoints https://a:2379\ntls {\ncert /nonexistent/c.pem\n}", "both cert and key"},
		{"prefix without a slash", "endpoints http://a:2379\nprefix /otpgate", "end it with /"},
		{"username alone", "endpoints http://a:2379\nusername otpgate", "both username and password"},
		{"election ttl too short", "endpoints http://a:2379\nelection_ttl 1s", "2s or more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "store etcd {\n" + tc.block + "\n}"
			if tc.block == "" {
				src = "store etcd http://127.0.0.1:2379 http://127.0.0.1:22379"
			}
			d := caddyfile.NewTestDispenser(src)
			d.Next() // store
			e := new(EtcdStore)
			if err := e.UnmarshalCaddyfile(d); err != nil {
				t.Fatalf("parsing: %v", err)
			}
			err := e.Provision(caddy.Context{})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "otpgate: ")):
				t.Fatalf("error %v, want one starting otpgate: and containing %q", err, tc.wantErr)
			}
			if tc.name == "auth from the environment" && e.opts.Password != "s3cret" {
				t.Errorf("password placeholder not replaced: %q", e.opts.Password)
			}
		})
	}
}

// Syntax errors name the option.
func TestEtcdStoreCaddyfileErrors(t *testing.T) {
	for src, want := range map[string]string{
		"store etcd {\nendpoints\n}":                             "endpoints: want",
		"store etcd http://a:2379 {\nendpoints http://b:2379\n}": "endpoints given twice",
		"store etcd {\nhost a\n}":                                "unrecognized option \"host\"",
		"store etcd {\ntls {\nca a\n}\ntls {\nca b\n}\n}":        "tls given twice",
		"store etcd {\ntls {\nserver_name a\n}\n}":               "unrecognized option \"server_name\"",
		"store etcd {\ndial_timeout soon\n}":                     "dial_timeout",
	} {
		d := caddyfile.NewTestDispenser(src)
		d.Next()
		err := new(EtcdStore).UnmarshalCaddyfile(d)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", src, err, want)
		}
	}
}

// One cluster and prefix is one store, whatever order the endpoints are
// written in; another prefix on the same cluster is another store.
func TestEtcdStorePoolKey(t *testing.T) {
	key := func(prefix string, eps ...string) string {
		e := &EtcdStore{Endpoints: eps, Prefix: prefix, RequestTimeout: caddy.Duration(time.Second)}
		if err := e.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		return e.PoolKey()
	}
	a := key("", "http://a:2379", "http://b:2379")
	if b := key("/otpgate/", "http://b:2379/", "http://a:2379"); a != b {
		t.Errorf("same cluster and prefix: keys %q and %q", a, b)
	}
	if c := key("/other/", "http://a:2379", "http://b:2379"); c == a {
		t.Errorf("another prefix has the same key %q", c)
	}
}
