package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Activation PINs are 4-8 digits, so the hash must be slow: argon2id with
// OWASP's minimum parameters (19 MiB, 2 passes, 1 lane).
const (
	pinMemory  = 19456 // KiB
	pinTime    = 2
	pinThreads = 1
	pinSaltLen = 16
	pinKeyLen  = 32
)

var b64 = base64.RawStdEncoding

// validPIN reports whether pin is 4-8 ASCII digits. unicode.IsDigit is not
// used on purpose: full-width or Arabic-Indic digits would be accepted there
// and then typed differently on the phone.
func validPIN(pin string) bool {
	if len(pin) < 4 || len(pin) > 8 {
		return false
	}
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return false
		}
	}
	return true
}

// hashPIN returns pin's argon2id hash as a PHC string, which carries its
// parameters so they can be raised later without breaking stored hashes.
func hashPIN(pin string) (string, error) {
	salt := make([]byte, pinSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading random salt: %w", err)
	}
	key := argon2.IDKey([]byte(pin), salt, pinTime, pinMemory, pinThreads, pinKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, pinMemory, pinTime, pinThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

type argonParams struct {
	m, t uint32
	p    uint8
}

// parsePIN decodes a PHC string written by hashPIN. The parameters are
// bounded because a damaged or tampered record must not make one setup try
// allocate gigabytes or run for minutes.
func parsePIN(encoded string) (argonParams, []byte, []byte, error) {
	var ap argonParams
	f := strings.Split(encoded, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return ap, nil, nil, errors.New("not an argon2id v19 hash")
	}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return ap, nil, nil, fmt.Errorf("argon2id parameter %q: %w", kv, err)
		}
		switch k {
		case "m":
			ap.m = uint32(n)
		case "t":
			ap.t = uint32(n)
		case "p":
			if n > 255 {
				return ap, nil, nil, errors.New("argon2id parallelism out of range")
			}
			ap.p = uint8(n)
		default:
			return ap, nil, nil, fmt.Errorf("unknown argon2id parameter %q", k)
		}
	}
	if ap.m < 8 || ap.m > 1<<20 || ap.t < 1 || ap.t > 16 || ap.p < 1 || ap.p > 16 {
		return ap, nil, nil, errors.New("argon2id parameters out of range")
	}
	salt, err := b64.DecodeString(f[4])
	if err != nil || len(salt) < 8 {
		return ap, nil, nil, errors.New("argon2id salt is damaged")
	}
	key, err := b64.DecodeString(f[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return ap, nil, nil, errors.New("argon2id hash is damaged")
	}
	return ap, salt, key, nil
}

// dummySalt stands in when a record has no usable hash.
var dummySalt = make([]byte, pinSaltLen)

// verifyPIN returns 1 if pin matches encoded, else 0, as an int so that it
// combines with the other setup checks without a branch. It always does one
// full argon2id run, also for a missing or damaged hash, so timing does not
// tell a wrong PIN from anything else.
func verifyPIN(encoded, pin string) int {
	ap, salt, want, err := parsePIN(encoded)
	if err != nil {
		argon2.IDKey([]byte(pin), dummySalt, pinTime, pinMemory, pinThreads, pinKeyLen)
		return 0
	}
	got := argon2.IDKey([]byte(pin), salt, ap.t, ap.m, ap.p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want)
}

// equalFixed compares two strings in constant time and, by comparing their
// digests, without the early exit ConstantTimeCompare takes on a length
// difference, which would tell an attacker the length of a service ID.
func equalFixed(a, b string) int {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:])
}
