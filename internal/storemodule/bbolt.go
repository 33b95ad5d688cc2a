// Package storemodule holds the modules of the otpgate.stores namespace:
// where the gateway keeps its state (bbolt, for one node; etcd, for
// several), as the otpgate app opens it. The stores themselves are plain
// Go under internal/store.
package storemodule

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/otpgate/otpgate/internal/caddyconf"
	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
)

func init() {
	caddy.RegisterModule(BoltStore{})
}

// Store is a module of the otpgate.stores namespace: where the gateway's
// state lives. A store for many nodes (etcd) is one more module.
type Store interface {
	// PoolKey names what Open opens, the same in every configuration
	// load: handlers and loads whose stores have one key share one open
	// store (the otpgate app's store pool), so a reload never opens it a second time.
	PoolKey() string
	// Open opens the store. It is called once per key for as long as
	// any loaded configuration uses it.
	Open() (store.Store, error)
}

// BoltStore keeps the gateway's state in one bbolt file, for one node.
// "database <file>" is its shorthand.
type BoltStore struct {
	// Path of the database file, created with mode 0600 (and its folder
	// with 0700). A relative path is relative to the working directory.
	// Default: otpgate.db
	Path string `json:"path,omitempty"`

	path string
}

// CaddyModule returns the Caddy module information.
func (BoltStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "otpgate.stores.bbolt",
		New: func() caddy.Module { return new(BoltStore) },
	}
}

// Provision resolves the path.
func (b *BoltStore) Provision(caddy.Context) error {
	p := caddy.NewReplacer().ReplaceAll(b.Path, "")
	if p == "" {
		p = "otpgate.db"
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("otpgate: database path %q: %v", p, err)
	}
	b.path = abs
	return nil
}

// PoolKey is the file's absolute path: bbolt locks the file, so one
// process opens it once however many handlers and loads name it.
func (b *BoltStore) PoolKey() string { return b.path }

// Open opens the file, waiting at most 5 seconds for its lock, so that a
// second process on the same file fails to load instead of hanging.
func (b *BoltStore) Open() (store.Store, error) {
	return boltstore.Open(b.path, 5*time.Second)
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store bbolt [<path>] {
//		path <path>
//	}
func (b *BoltStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // module name
	if d.NextArg() {
		b.Path = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "path":
			if b.Path != "" {
				return d.Errf("store bbolt: path given twice")
			}
			if err := caddyconf.OneArg(d, &b.Path); err != nil {
				return err
			}
		default:
			return d.Errf("store bbolt: unrecognized option %q (want path)", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ Store                 = (*BoltStore)(nil)
	_ caddy.Provisioner     = (*BoltStore)(nil)
	_ caddyfile.Unmarshaler = (*BoltStore)(nil)
)
