package seal

import (
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkSeal and BenchmarkOpen seal what the gateway seals: a token
// secret (20 bytes), a held form (2 KiB) and a held bulk file (1 MiB, one
// store chunk).
//
// go test -run '^$' -bench . -count 10 ./internal/seal | tee new.txt
var benchSizes = []int{20, 2 << 10, 1 << 20}

func benchSealer(b *testing.B) *Sealer {
	k := make([]byte, KeySize)
	rand.Read(k)
	s, err := New(k)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkSeal(b *testing.B) {
	s := benchSealer(b)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			pt := make([]byte, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(pt, []byte("S001\x1fU001")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	s := benchSealer(b)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", n), func(b *testing.B) {
			sealed, err := s.Seal(make([]byte, n), []byte("S001\x1fU001"))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Open(sealed, []byte("S001\x1fU001")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
