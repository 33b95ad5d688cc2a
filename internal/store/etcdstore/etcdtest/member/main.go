// Command member is one etcd cluster member for the tests and benchmarks
// (package etcdtest starts three of them as child processes, so that a
// test can kill one with SIGKILL): etcd's embedded server, v3.7.3, with the
// flags etcdtest passes.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	name := flag.String("name", "", "member name")
	dir := flag.String("dir", "", "data folder")
	client := flag.String("client", "", "client URL (http://127.0.0.1:port)")
	peer := flag.String("peer", "", "peer URL (http://127.0.0.1:port)")
	cluster := flag.String("initial-cluster", "", "name=peerURL,…")
	noFsync := flag.Bool("unsafe-no-fsync", false, "skip fsync (tests only; benchmarks keep it)")
	flag.Parse()
	cu, err1 := url.Parse(*client)
	pu, err2 := url.Parse(*peer)
	if err1 != nil || err2 != nil || *name == "" || *dir == "" || *cluster == "" {
		fmt.Fprintln(os.Stderr, "member: want -name, -dir, -client, -peer and -initial-cluster")
		os.Exit(2)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = *name, *dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = *cluster
	cfg.InitialClusterToken = "otpgate-test"
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintln(os.Stderr, "member: ready")
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	case <-sig:
		e.Close()
		return
	case <-time.After(time.Minute):
		// Ready waits for a quorum; a member started alone keeps waiting
		// and is told so.
		fmt.Fprintln(os.Stderr, "member: no quorum after a minute; still waiting")
	}
	select {
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	case <-sig:
		e.Close()
	}
}
