package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// dropBank answers ordinary requests and, for a request marked
// X-Release, counts it and drops the connection without an answer: a bank
// that executed the operation and then lost the connection.
type dropBank struct {
	ln       net.Listener
	executed atomic.Int32
}

func newDropBank(t testing.TB) *dropBank {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &dropBank{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *dropBank) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if req.Header.Get("X-Release") != "" {
			b.executed.Add(1)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

// FuzzReleaseOnce sends a released request, whatever its method, headers
// and body, on a kept-alive connection that the bank drops after executing
// it (issue 6, class 6): Go's transport re-sends requests it deems
// replayable, and the release's guard must stop the second attempt before
// anything is written.
func FuzzReleaseOnce(f *testing.F) {
	f.Add("GET", "", "", []byte(nil))
	f.Add("HEAD", "", "", []byte(nil))
	f.Add("OPTIONS", "", "", []byte(nil))
	f.Add("POST", "Idempotency-Key", "k1", []byte(nil))
	f.Add("POST", "X-Idempotency-Key", "k2", []byte(nil))
	f.Add("POST", "idempotency-key", "k3", []byte("amount=1"))
	f.Add("PUT", "", "", []byte("amount=1"))
	f.Add("DELETE", "Idempotency-Key", "k4", []byte(nil))
	b := newDropBank(f)
	f.Fuzz(func(t *testing.T, method, header, value string, body []byte) {
		if !httpguts.ValidHeaderFieldName(method) || (header != "" && !httpguts.ValidHeaderFieldName(header)) || strings.ContainsAny(value, "\r\n\x00") || method == "CONNECT" {
			return
		}
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		warm, _ := http.NewRequest(http.MethodGet, "http://"+b.ln.Addr().String()+"/menu", nil)
		res, err := tr.RoundTrip(warm)
		if err != nil {
			t.Fatalf("warming the connection: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()

		before := b.executed.Load()
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		guard := &onceGuard{cancel: cancel}
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: guard.gotConn})
		var rd io.Reader
		if len(body) > 0 {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, "http://"+b.ln.Addr().String()+"/transfer/execute", rd)
		if err != nil {
			return
		}
		req.Header.Set("X-Release", "1")
		if header != "" {
			req.Header.Set(header, value)
		}
		if res, err := tr.RoundTrip(req); err == nil {
			res.Body.Close()
			t.Fatalf("%s: the bank answered although it drops the connection", method)
		}
		// At most once: a request the transport refuses to write (a control
		// character in a header value) reaches the bank no time at all.
		if n := b.executed.Load() - before; n > 1 {
			t.Fatalf("%s with %s=%q and a %d-byte body: the bank executed it %d times", method, header, value, len(body), n)
		}
	})
}
