package caddymodule

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
)

// Held requests are sealed at rest (SECURITY.md 31; issue 7 item 4): a
// transfer paused through the real handler chain leaves neither its
// transaction password nor its Authorization value readable in the
// database file the gateway is running on, and its release still hands the
// bank the exact body and header.
func TestHeldTransferSealedInDatabaseFile(t *testing.T) {
	e := newEnv(t, envOptions{})
	bank := &recordingBank{next: e.bank, path: "/transfer/execute"}
	srv := httptest.NewServer(bank)
	t.Cleanup(srv.Close)
	e.bankURL = srv.URL
	gwLoad(t, e.caddyfile(envOptions{}))
	waitServing(t)
	c := gwEnrolled(e, "S001", "U001")

	var r [12]byte
	rand.Read(r[:])
	password := "TXPASS" + base64.RawURLEncoding.EncodeToString(r[:])
	rand.Read(r[:])
	authorization := "Basic " + base64.StdEncoding.EncodeToString([]byte("U001:AUTH"+base64.RawURLEncoding.EncodeToString(r[:])))
	rand.Read(r[:4])
	account := fmt.Sprintf("%07d", binary.BigEndian.Uint32(r[:4])%10_000_000) // shown, so audited
	body := url.Values{"to_bank": {"0001"}, "to_account": {account}, "amount": {"50000"}, "txn_password": {password}}.Encode()
	id := oncePause(c, http.MethodPost, "/transfer/execute", body, http.Header{"Authorization": {authorization}})

	secrets := []string{password, authorization, base64.StdEncoding.EncodeToString([]byte(body))}
	db := sealedReadDB(t, e)
	// The audit trail records the shown fields in the clear (by design):
	// finding the account proves the file read holds the pause.
	if !bytes.Contains(db, []byte(account)) {
		t.Fatalf("the database file lacks the audited account %s: the pause is not in what was read", account)
	}
	sealedAbsent(t, db, "while held", secrets)

	res, page, _ := gwConfirmForm(c, id, c.code(), nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "R0000") {
		t.Fatalf("confirm: status %d; want the bank's completion page\n%s", res.StatusCode, page)
	}
	got := bank.received()
	if len(got) != 1 || got[0].body != body || got[0].authorization != authorization {
		t.Fatalf("the bank received %+v; want once the body %q with Authorization %q", got, body, authorization)
	}
	sealedAbsent(t, sealedReadDB(t, e), "after the release", secrets)
}

// sealedReadDB reads the database file the running gateway holds open
// (bbolt writes committed pages to the file itself).
func sealedReadDB(t *testing.T, e *env) []byte {
	t.Helper()
	b, err := os.ReadFile(gwDBPath(e))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sealedAbsent(t *testing.T, db []byte, when string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(db, []byte(s)) {
			t.Errorf("%s, the database file contains %q", when, s)
		}
	}
}

// recordingBank passes every request on to the bank and keeps the body and
// Authorization header of those to path.
type recordingBank struct {
	next http.Handler
	path string
	mu   sync.Mutex
	got  []recorded
}

type recorded struct{ body, authorization string }

func (b *recordingBank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == b.path {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.got = append(b.got, recorded{string(body), r.Header.Get("Authorization")})
		b.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	b.next.ServeHTTP(w, r)
}

func (b *recordingBank) received() []recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recorded(nil), b.got...)
}
