// Package etcdtest starts a real etcd cluster on loopback for the tests and
// benchmarks: each member is a child process (command member, etcd's
// embedded server v3.7.3), so a test can kill one with SIGKILL, the leader
// included, and start it again on its data.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Build builds command member once per process into a temporary folder and
// returns its path. It runs the go command in the working directory, which
// must lie inside this module (a test's package folder, the repository).
var Build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "otpgate-etcd-member-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "member")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/otpgate/otpgate/internal/store/etcdstore/etcdtest/member")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build etcdtest/member: %v\n%s", err, out)
	}
	return bin, nil
})

// Options shape a cluster.
type Options struct {
	// Members is the cluster's size. Default: 3
	Members int
	// Fsync keeps etcd's fsync on every commit; without it the members
	// skip it (faster tests; a benchmark keeps it).
	Fsync bool
}

// Cluster is a running cluster.
type Cluster struct {
	Members []*Member
	bin     string
	fsync   bool
}

// Member is one member process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	cluster   string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Start starts a cluster with its data under dir and waits (at most 60 s)
// until it has a leader and answers.
func Start(dir string, o Options) (*Cluster, error) {
	bin, err := Build()
	if err != nil {
		return nil, err
	}
	if o.Members == 0 {
		o.Members = 3
	}
	// The members' client ports, then their peer ports.
	ports, err := freePorts(2 * o.Members)
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, fsync: o.Fsync}
	var initial []string
	for i := range o.Members {
		m := &Member{Name: fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[o.Members+i]),
			dir:       filepath.Join(dir, fmt.Sprintf("m%d", i))}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for i, m := range c.Members {
		m.cluster = strings.Join(initial, ",")
		if err := c.Restart(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitReady(60 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// freePorts returns n loopback ports nothing listens on now, below the
// kernel's ephemeral range. A port the kernel hands out for port 0 can be
// handed to another test process (a parallel package's etcd, or any
// freePort) between our check and the member's bind, or while a member is
// down for a restart; a client of ours would then talk to a foreign
// cluster. Below the ephemeral range only explicit binds compete, and the
// random start keeps two processes of this package apart. The range starts
// at 24000, above the fixed ports of this repository's other tests
// (caddymodule's gateway, Tomcat and Prometheus listen below 20000).
func freePorts(n int) ([]int, error) {
	low, high := 24000, ephemeralLow()
	if high-low < 100*n {
		low, high = 1024, 20000
	}
	span := high - low
	start := rand.IntN(span)
	var out []int
	for i := 0; i < span && len(out) < n; i++ {
		p := low + (start+i)%span
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		out = append(out, p)
	}
	if len(out) < n {
		return nil, fmt.Errorf("etcdtest: only %d free loopback ports below %d, want %d", len(out), high, n)
	}
	return out, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// ip_local_port_range), 32768 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 1024 {
		return 32768
	}
	return lo
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Restart starts member i's process on its data (the first start makes it).
func (c *Cluster) Restart(i int) error {
	m := c.Members[i]
	if m.cmd != nil {
		return fmt.Errorf("etcdtest: member %s is running", m.Name)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(m.dir+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-name", m.Name, "-dir", m.dir, "-client", m.ClientURL, "-peer", m.PeerURL, "-initial-cluster", m.cluster}
	if !c.fsync {
		args = append(args, "-unsafe-no-fsync")
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(m.exited)
	return nil
}

// Kill ends member i with SIGKILL: no leadership handed over, nothing
// flushed.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// Stop ends member i with SIGTERM (etcd hands its leadership over first).
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM) }

func (c *Cluster) signal(i int, sig syscall.Signal) {
	m := c.Members[i]
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// Running reports whether member i's process runs.
func (c *Cluster) Running(i int) bool { return c.Members[i].cmd != nil }

// Close ends every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Kill(i)
	}
}

// client is a client of the given members alone.
func client(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

// WaitReady waits until the running members have a leader and a
// linearizable read through each of them succeeds.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	end := time.Now().Add(timeout)
	var last error
	for i, m := range c.Members {
		if !c.Running(i) {
			continue
		}
		cli, err := client(m.ClientURL)
		if err != nil {
			return err
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, last = cli.Get(ctx, "etcdtest-ready")
			cancel()
			if last == nil {
				break
			}
			if time.Now().After(end) {
				cli.Close()
				return fmt.Errorf("etcdtest: member %s not ready after %v: %v", m.Name, timeout, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cli.Close()
	}
	return nil
}

// Leader returns the index of the member that leads now.
func (c *Cluster) Leader() (int, error) {
	for i, m := range c.Members {
		if !c.Running(i) {
			continue
		}
		cli, err := client(m.ClientURL)
		if err != nil {
			return 0, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		cli.Close()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return 0, errors.New("etcdtest: no running member leads")
}
