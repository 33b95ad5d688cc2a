package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// costPart is one part of a cycle's cost: the share of CPU samples whose
// stack passes through any of its frames or their closures (a bbolt batch
// runs the closures of Update on another goroutine than their caller), so
// the parts overlap where one calls another.
type costPart struct {
	name   string
	frames []string // full function names; a name ending in "." is a package prefix
}

// costParts take a step-up run apart.
var costParts = []costPart{
	{"load generator (vegeta, same process)", []string{"github.com/tsenart/vegeta/v12/lib.(*Attacker).hit"}},
	{"HTTP servers, all of them: Caddy's and the bank's (net/http conn.serve)", []string{"net/http.(*conn).serve"}},
	{"HTTP client connections: vegeta's and the reverse proxy's (persistConn loops)", []string{"net/http.(*persistConn).readLoop", "net/http.(*persistConn).writeLoop"}},
	{"otpgate handler, all of it", []string{"github.com/otpgate/otpgate/caddymodule.(*Gateway).ServeHTTP"}},
	{"reverse proxy to the bank (pass-through and releases)", []string{"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP"}},
	{"demo bank", []string{"github.com/otpgate/otpgate/internal/demobank.(*Bank).ServeHTTP"}},
	{"path check and classification (policy)", []string{"github.com/otpgate/otpgate/policy.CheckPath", "github.com/otpgate/otpgate/policy.(*Policy).Watches", "github.com/otpgate/otpgate/policy.(*Policy).Classify"}},
	{"session lookup", []string{"github.com/otpgate/otpgate/internal/session.(*Manager).Lookup"}},
	{"hold: decide, seal, stage, commit (challenge.Pause)", []string{"github.com/otpgate/otpgate/internal/challenge.(*Manager).Pause"}},
	{"held request staged in chunks (store.StageChunked)", []string{"github.com/otpgate/otpgate/internal/store.StageChunked"}},
	{"confirm: code check, consume, audit (challenge.Confirm)", []string{"github.com/otpgate/otpgate/internal/challenge.(*Manager).Confirm"}},
	{"release audit record (challenge.RecordRelease)", []string{"github.com/otpgate/otpgate/internal/challenge.(*Manager).RecordRelease"}},
	{"sealing and opening (AES-256-GCM)", []string{"github.com/otpgate/otpgate/internal/seal.(*Sealer).Seal", "github.com/otpgate/otpgate/internal/seal.(*Sealer).Open"}},
	{"TOTP (HMAC over the window)", []string{"github.com/otpgate/otpgate/internal/token.(*Manager).match"}},
	{"argon2id", []string{"golang.org/x/crypto/argon2."}},
	{"bbolt write transactions, all of them (batch run)", []string{"go.etcd.io/bbolt.(*batch).run", "go.etcd.io/bbolt.(*DB).Update"}},
	{"bbolt commits (Tx.Commit)", []string{"go.etcd.io/bbolt.(*Tx).Commit"}},
	{"fsync, CPU side (bbolt fdatasync)", []string{"go.etcd.io/bbolt.fdatasync"}},
	{"audit encoding and append (audit.Append)", []string{"github.com/otpgate/otpgate/internal/audit.Append"}},
	{"JSON encode/decode, anywhere", []string{"encoding/json.Marshal", "encoding/json.Unmarshal", "encoding/json.(*Encoder).Encode", "encoding/json.(*Decoder).Decode"}},
	{"logging (zap entries written)", []string{"go.uber.org/zap/zapcore.(*CheckedEntry).Write"}},
	{"gateway pages and JSON answers (writeJSON)", []string{"github.com/otpgate/otpgate/caddymodule.writeJSON"}},
	{"garbage collection (background mark)", []string{"runtime.gcBgMarkWorker"}},
	{"allocation (mallocgc)", []string{"runtime.mallocgc"}},
}

var topLine = regexp.MustCompile(`^\s*[\d.]+\w*\s+([\d.]+)%\s+[\d.]+%\s+[\d.]+\w*\s+([\d.]+)%\s+(.+)$`)

// profileEntry is one function of `go tool pprof -top`.
type profileEntry struct {
	name      string
	flat, cum float64 // percent of all samples
}

// readProfile lists every function of the CPU profile at path.
func readProfile(path string) ([]profileEntry, error) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=100000", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -top %s: %v", path, err)
	}
	var es []profileEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := topLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		flat, _ := strconv.ParseFloat(m[1], 64)
		cum, _ := strconv.ParseFloat(m[2], 64)
		es = append(es, profileEntry{name: strings.TrimSpace(m[3]), flat: flat, cum: cum})
	}
	return es, sc.Err()
}

// trace is one distinct stack of the profile and its CPU time.
type trace struct {
	value  time.Duration
	frames []string
}

// readTraces lists every sampled stack of the CPU profile at path.
func readTraces(path string) ([]trace, error) {
	out, err := exec.Command("go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %v", path, err)
	}
	var ts []trace
	for _, block := range strings.Split(string(out), "-----------+-------------------------------------------------------")[1:] {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		first := strings.Fields(lines[0])
		if len(first) < 2 {
			continue
		}
		d, err := time.ParseDuration(first[0])
		if err != nil {
			continue
		}
		t := trace{value: d, frames: []string{strings.Join(first[1:], " ")}}
		for _, l := range lines[1:] {
			t.frames = append(t.frames, strings.TrimSpace(l))
		}
		for i, f := range t.frames {
			t.frames[i] = strings.TrimSuffix(f, " (inline)")
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// matches: frame is f, one of f's closures, or in f's package when f ends
// in ".".
func matches(frame, f string) bool {
	if strings.HasSuffix(f, ".") {
		return strings.HasPrefix(frame, f)
	}
	return frame == f || strings.HasPrefix(frame, f+".func")
}

// partShare is the percentage of all CPU time whose stack passes through
// any frame of part (each sample counted once).
func partShare(ts []trace, part costPart) float64 {
	var in, all time.Duration
	for _, t := range ts {
		all += t.value
	stack:
		for _, fr := range t.frames {
			for _, f := range part.frames {
				if matches(fr, f) {
					in += t.value
					break stack
				}
			}
		}
	}
	if all == 0 {
		return 0
	}
	return 100 * float64(in) / float64(all)
}
