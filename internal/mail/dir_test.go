package mail

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestDirSend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox")
	d := &Dir{Path: path, From: "Demo Shinkin Bank <" + testFrom + ">"}
	want := testMessage()
	if err := d.Send(context.Background(), want); err != nil {
		t.Fatalf("Send: %v", err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("folder mode %v, want no access for group and others", perm)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("folder holds %v, want one .eml and no temporary files", names(entries))
	}
	name := entries[0].Name()
	if !regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-[a-z2-7]{16}\.eml$`).MatchString(name) {
		t.Errorf("file name %q, want <UTC timestamp>-<random>.eml", name)
	}
	fi, err := entries[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}

	raw, err := os.ReadFile(filepath.Join(path, name))
	if err != nil {
		t.Fatal(err)
	}
	msg, subject, body := parse(t, raw)
	if subject != want.Subject {
		t.Errorf("Subject = %q, want %q", subject, want.Subject)
	}
	if body != want.Text {
		t.Errorf("body = %q, want %q", body, want.Text)
	}
	// Raw headers must be ASCII: the subject travels as encoded-words.
	header := string(raw[:strings.Index(string(raw), "\r\n\r\n")])
	for _, r := range header {
		if r > 0x7e {
			t.Fatalf("non-ASCII byte in header:\n%s", header)
		}
	}
	for _, h := range []string{"From", "To", "Date", "Message-ID", "MIME-Version"} {
		if msg.Header.Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	if got := msg.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", got)
	}
}

func TestDirConcurrent(t *testing.T) {
	path := t.TempDir()
	d := &Dir{Path: path, From: testFrom}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- d.Send(context.Background(), testMessage())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("%d files for %d mails: %v", len(entries), n, names(entries))
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			t.Errorf("leftover file %q", e.Name())
		}
	}
}

func TestDirErrors(t *testing.T) {
	path := t.TempDir()
	tests := map[string]struct {
		d   Dir
		m   Message
		ctx context.Context
	}{
		"no path":      {Dir{From: testFrom}, testMessage(), context.Background()},
		"no from":      {Dir{Path: path}, testMessage(), context.Background()},
		"bad to":       {Dir{Path: path, From: testFrom}, Message{To: "nobody", Subject: "x"}, context.Background()},
		"bad subject":  {Dir{Path: path, From: testFrom}, Message{To: testTo, Subject: "a\nb"}, context.Background()},
		"invalid utf8": {Dir{Path: path, From: testFrom}, Message{To: testTo, Subject: "x", Text: "\xff"}, context.Background()},
		"cancelled":    {Dir{Path: path, From: testFrom}, testMessage(), cancelled()},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tt.d.Send(tt.ctx, tt.m); err == nil {
				t.Fatal("Send succeeded")
			} else if strings.Contains(err.Error(), "SECRETLINK") {
				t.Errorf("error contains the body: %v", err)
			}
		})
	}
	if entries, _ := os.ReadDir(path); len(entries) != 0 {
		t.Errorf("failed sends left files: %v", names(entries))
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func names(entries []os.DirEntry) []string {
	var s []string
	for _, e := range entries {
		s = append(s, e.Name())
	}
	return s
}
