// Package seal encrypts TOTP secrets at rest with AES-256-GCM under keys
// kept outside the database, and lets the key be rotated: new secrets are
// sealed under the current key, old ones stay readable under retired keys
// until they are sealed again.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

const version = 1

// idSize bytes of a key's fingerprint are stored with each sealed value so
// the right key is found without trial decryption.
const idSize = 8

// ErrNoKey is returned by Open when the value was sealed under a key the
// Sealer does not hold (a retired key that was removed from the config).
var ErrNoKey = errors.New("seal: value was sealed under an unknown key")

// ErrCorrupt is returned by Open when a value fails authentication: it was
// altered, or moved between records.
var ErrCorrupt = errors.New("seal: value is corrupt or belongs to another record")

// Sealer seals and opens values.
type Sealer struct {
	current cipher.AEAD
	id      [idSize]byte
	all     map[[idSize]byte]cipher.AEAD
	mac     []byte
}

// ParseKey reads a key written as 64 hex digits or as standard or URL-safe
// base64 (with or without padding) of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("key is empty")
	}
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("key decodes to %d bytes; want %d (generate one with: head -c 32 /dev/urandom | base64)", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("key is neither 64 hex digits nor base64 of %d bytes (generate one with: head -c 32 /dev/urandom | base64)", KeySize)
}

// New returns a Sealer that seals under current and opens values sealed
// under current or any of retired.
func New(current []byte, retired ...[]byte) (*Sealer, error) {
	s := &Sealer{all: make(map[[idSize]byte]cipher.AEAD)}
	for i, k := range append([][]byte{current}, retired...) {
		if len(k) != KeySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes; want %d", i, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		id := fingerprint(k)
		if i == 0 {
			s.current, s.id = aead, id
			// A separate subkey for MACs, so no key is used for two purposes.
			m := hmac.New(sha256.New, k)
			m.Write([]byte("otpgate mac key v1"))
			s.mac = m.Sum(nil)
		}
		s.all[id] = aead
	}
	return s, nil
}

func fingerprint(k []byte) [idSize]byte {
	h := sha256.Sum256(append([]byte("otpgate key id v1\x00"), k...))
	var id [idSize]byte
	copy(id[:], h[:])
	return id
}

// Seal encrypts plaintext bound to context (e.g. the record's key), so a
// sealed value copied onto another record does not open.
func (s *Sealer) Seal(plaintext, context []byte) ([]byte, error) {
	nonce := make([]byte, s.current.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: reading random nonce: %w", err)
	}
	out := make([]byte, 0, 1+idSize+len(nonce)+len(plaintext)+s.current.Overhead())
	out = append(out, version)
	out = append(out, s.id[:]...)
	out = append(out, nonce...)
	return s.current.Seal(out, nonce, plaintext, context), nil
}

// Open decrypts a value sealed by Seal with the same context.
func (s *Sealer) Open(sealed, context []byte) ([]byte, error) {
	if len(sealed) < 1+idSize || sealed[0] != version {
		return nil, ErrCorrupt
	}
	var id [idSize]byte
	copy(id[:], sealed[1:1+idSize])
	aead, ok := s.all[id]
	if !ok {
		return nil, ErrNoKey
	}
	rest := sealed[1+idSize:]
	if len(rest) < aead.NonceSize() {
		return nil, ErrCorrupt
	}
	pt, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], context)
	if err != nil {
		return nil, ErrCorrupt
	}
	return pt, nil
}

// Current reports whether sealed was sealed under the current key; values
// that are not can be sealed again to finish a rotation.
func (s *Sealer) Current(sealed []byte) bool {
	return len(sealed) >= 1+idSize && string(sealed[1:1+idSize]) == string(s.id[:])
}

// MAC returns an HMAC-SHA256 of the parts under a subkey of the current key.
// The gateway uses it for CSRF tokens, so every node that shares the key
// accepts the tokens of the others.
func (s *Sealer) MAC(parts ...string) []byte {
	m := hmac.New(sha256.New, s.mac)
	for _, p := range parts {
		// Length-prefixed so ("ab","c") and ("a","bc") differ.
		fmt.Fprintf(m, "%d:%s", len(p), p)
	}
	return m.Sum(nil)
}
