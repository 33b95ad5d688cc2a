package seal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTripAndBinding(t *testing.T) {
	s, err := New(key(t))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("12345678901234567890")
	sealed, err := s.Seal(secret, []byte("S001/U001"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := s.Open(sealed, []byte("S001/U001"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, []byte("S001/U002")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with another record's context = %v; want ErrCorrupt", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s.Open(sealed, []byte("S001/U001")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of altered value = %v; want ErrCorrupt", err)
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := key(t), key(t)
	oldS, _ := New(oldKey)
	sealed, _ := oldS.Seal([]byte("secret"), nil)

	rotated, err := New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Current(sealed) {
		t.Fatal("value sealed under the old key reported current")
	}
	if got, err := rotated.Open(sealed, nil); err != nil || string(got) != "secret" {
		t.Fatalf("retired key does not open: %q %v", got, err)
	}
	resealed, _ := rotated.Seal([]byte("secret"), nil)
	if !rotated.Current(resealed) {
		t.Fatal("fresh value not current")
	}
	onlyNew, _ := New(newKey)
	if _, err := onlyNew.Open(sealed, nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Open without the retired key = %v; want ErrNoKey", err)
	}
}

func TestParseKey(t *testing.T) {
	k := key(t)
	for _, in := range []string{hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k), " " + base64.StdEncoding.EncodeToString(k) + "\n"} {
		got, err := ParseKey(in)
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("ParseKey(%q) = %x, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "short", base64.StdEncoding.EncodeToString(k[:16]), "zz" + hex.EncodeToString(k)[2:]} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestMACDistinguishesParts(t *testing.T) {
	s, _ := New(key(t))
	if bytes.Equal(s.MAC("ab", "c"), s.MAC("a", "bc")) {
		t.Fatal("MAC ambiguous over part boundaries")
	}
	if !bytes.Equal(s.MAC("x"), s.MAC("x")) {
		t.Fatal("MAC not deterministic")
	}
}
