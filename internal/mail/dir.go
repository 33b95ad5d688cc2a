package mail

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Dir writes each message as an RFC 5322 .eml file into a folder instead of
// sending it: for the demo and for development, where there is no relay. Any
// mail client opens the files. A Dir is safe for concurrent use.
//
// The files hold setup links, which are as good as a token for whoever opens
// them first: keep the folder private and do not use Dir in production.
type Dir struct {
	// Path is the folder. It is created with mode 0700 if missing; files are
	// written with mode 0600.
	Path string
	// From is the sender address written into the From header. Required.
	From string
}

// Send writes m as <UTC timestamp>-<random>.eml. The file appears under its
// final name only when complete (written to a hidden temporary file, then
// renamed), so a reader watching the folder never sees half a message.
func (d *Dir) Send(ctx context.Context, m Message) error {
	if err := d.send(ctx, m); err != nil {
		return fmt.Errorf("writing mail to folder %s: %w", d.Path, err)
	}
	return nil
}

func (d *Dir) send(ctx context.Context, m Message) error {
	if d.Path == "" {
		return errors.New("no mail folder configured")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	msg, err := newMsg(d.From, m, now)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}

	// The timestamp makes a directory listing chronological; the random part
	// keeps names distinct when several mails are written in the same
	// nanosecond or by several processes.
	name := now.UTC().Format("20060102T150405.000000000Z") + "-" + strings.ToLower(rand.Text()[:16]) + ".eml"

	// The leading dot and missing .eml suffix keep readers that look for
	// *.eml away from a file still being written. CreateTemp makes it 0600.
	tmp, err := os.CreateTemp(d.Path, ".mail-*.tmp")
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := msg.WriteTo(tmp); err != nil {
		return err
	}
	// Sync before rename: after a crash the name must not point at an empty
	// file.
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(d.Path, name)); err != nil {
		return err
	}
	committed = true
	return nil
}

// Interface guards
var _ Sender = (*Dir)(nil)
