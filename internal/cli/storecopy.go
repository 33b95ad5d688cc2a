package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/otpgate/otpgate/internal/store"
	"github.com/otpgate/otpgate/internal/store/boltstore"
	"github.com/otpgate/otpgate/internal/store/etcdstore"
	"github.com/otpgate/otpgate/internal/storemodule"
)

// "otpgate store copy" moves an installation from one store to another,
// typically from the bbolt file of one gateway to the etcd cluster of
// several. Unlike the admin commands it does not talk to a running
// gateway: it works offline, on stores no gateway uses.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "store",
		Usage: "copy --from bbolt:<file>|etcd:<url,...> --to bbolt:<file>|etcd:<url,...> [--prefix /otpgate/] [--cacert <file>] [--cert <file> --key <file>]",
		Short: "Copy the gateway's store to another (bbolt to etcd), offline",
		Long: `store copy copies every token, session, held operation, setup link, queued notice and audit
record from one store to another, as it is stored: secrets and held requests stay sealed (no key
is needed or read), expiries are kept, what has expired is left out. Afterwards it reads both
stores again and compares them bucket by bucket, and prints the counts.

It works offline. Stop the gateway first: a running gateway holds its bbolt file's lock, and the
copy refuses a file it cannot lock. The target must be empty (for etcd: nothing under --prefix).

An etcd store is named by its client URLs, comma-separated: etcd:https://etcd1:2379,https://etcd2:2379.
--prefix, --cacert, --cert and --key apply to it as the store etcd options do; the username and
password are read from OTPGATE_ETCD_USERNAME and OTPGATE_ETCD_PASSWORD.`,
		CobraFunc: func(cmd *cobra.Command) {
			cp := &cobra.Command{
				Use:   "copy --from <store> --to <store>",
				Short: "Copy every entry from one store to an empty one and compare them",
				Args:  cobra.NoArgs,
			}
			cp.Flags().String("from", "", "the store to copy: bbolt:<file> or etcd:<url,...>")
			cp.Flags().String("to", "", "the empty store to copy into: bbolt:<file> or etcd:<url,...>")
			cp.Flags().String("prefix", "/otpgate/", "the etcd key prefix")
			cp.Flags().String("cacert", "", "the CA of the etcd members' certificates (PEM)")
			cp.Flags().String("cert", "", "the etcd client certificate (PEM)")
			cp.Flags().String("key", "", "the etcd client key (PEM)")
			cp.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				if err := storeCopy(os.Stdout, fl.String("from"), fl.String("to"), etcdFlags{
					prefix: fl.String("prefix"), ca: fl.String("cacert"), cert: fl.String("cert"), key: fl.String("key"),
				}); err != nil {
					return caddy.ExitCodeFailedStartup, err
				}
				return caddy.ExitCodeSuccess, nil
			})
			cmd.AddCommand(cp)
		},
	})
}

type etcdFlags struct{ prefix, ca, cert, key string }

// storeCopy opens both stores, copies and prints the counts.
func storeCopy(w io.Writer, from, to string, ef etcdFlags) error {
	if from == "" || to == "" {
		return errors.New("otpgate: store copy needs --from and --to, e.g. --from bbolt:/var/lib/otpgate/otpgate.db --to etcd:https://etcd1:2379,https://etcd2:2379")
	}
	if from == to {
		return errors.New("otpgate: --from and --to name the same store")
	}
	src, err := openNamedStore(from, ef)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openNamedStore(to, ef)
	if err != nil {
		return err
	}
	defer dst.Close()
	start := time.Now()
	copied, err := store.Copy(context.Background(), src, dst, time.Now)
	for _, c := range copied {
		fmt.Fprintf(w, "%-12s %8d copied  %8d compared\n", c.Bucket, c.Copied, c.Checked)
	}
	if err != nil {
		return fmt.Errorf("otpgate: store copy: %v", err)
	}
	fmt.Fprintf(w, "copied %s to %s in %v; both read again and equal\n", from, to, time.Since(start).Round(time.Millisecond))
	return nil
}

// openNamedStore opens bbolt:<file> or etcd:<url,...>.
func openNamedStore(name string, ef etcdFlags) (store.Store, error) {
	kind, where, _ := strings.Cut(name, ":")
	switch kind {
	case "bbolt":
		if where == "" {
			return nil, errors.New("otpgate: bbolt: needs the file: bbolt:/var/lib/otpgate/otpgate.db")
		}
		db, err := boltstore.Open(where, 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("otpgate: %v (stop the gateway using it first: the copy works offline)", err)
		}
		return db, nil
	case "etcd":
		e := &storemodule.EtcdStore{Endpoints: strings.Split(where, ","), Prefix: ef.prefix,
			Username: "{env.OTPGATE_ETCD_USERNAME}", Password: "{env.OTPGATE_ETCD_PASSWORD}"}
		if ef.ca != "" || ef.cert != "" || ef.key != "" {
			e.TLS = &storemodule.EtcdTLS{CA: ef.ca, Cert: ef.cert, Key: ef.key}
		}
		if err := e.Provision(caddy.Context{}); err != nil {
			return nil, err
		}
		s, reachErr, err := etcdstore.Open(e.Options())
		if err != nil {
			return nil, fmt.Errorf("otpgate: %v", err)
		}
		if reachErr != nil {
			s.Close()
			return nil, fmt.Errorf("otpgate: etcd at %s does not answer: %v", where, reachErr)
		}
		return s, nil
	}
	return nil, fmt.Errorf("otpgate: store %q: want bbolt:<file> or etcd:<url,...>", name)
}
