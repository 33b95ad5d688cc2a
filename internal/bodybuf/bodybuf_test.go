package bodybuf

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// A body is read into memory a chunk at a time, each counted before it is
// allocated: what comes out is the body as sent, counted once; a body cut
// short is a read error, one over the most it may be ErrTooLarge however
// full the budget, one the budget has no room for ErrBusy; nothing stays
// counted after an error or a release.
func TestRead(t *testing.T) {
	const most = 3*Chunk + 100
	big := strings.Repeat("0123456789", (2*Chunk+50)/10)
	for _, tc := range []struct {
		name   string
		body   io.Reader
		most   int64
		others int64 // bytes other bodies hold of the budget of 2*most
		err    error
		want   string
	}{
		{"small", strings.NewReader("amount=1"), most, 0, nil, "amount=1"},
		{"empty", strings.NewReader(""), most, 0, nil, ""},
		{"declared length", strings.NewReader("amount=1"), 8, 0, nil, "amount=1"},
		{"several chunks", strings.NewReader(big), most, 0, nil, big},
		{"several chunks, declared length", strings.NewReader(big), int64(len(big)), 0, nil, big},
		{"one byte at a time", iotest.OneByteReader(strings.NewReader(big)), most, 0, nil, big},
		{"exactly the most", strings.NewReader(strings.Repeat("x", most)), most, 0, nil, strings.Repeat("x", most)},
		{"one byte over", strings.NewReader(strings.Repeat("x", most+1)), most, 0, ErrTooLarge, ""},
		{"over, with the budget nearly full", strings.NewReader(strings.Repeat("x", most+1)), most, most, ErrTooLarge, ""},
		{"cut short", io.MultiReader(strings.NewReader("amount=1"), iotest.ErrReader(io.ErrUnexpectedEOF)), 100, 0, io.ErrUnexpectedEOF, ""},
		{"no room for a chunk", strings.NewReader("amount=1"), most, 2*most - 7, ErrBusy, ""},
		{"no room to join the chunks", strings.NewReader(big), int64(len(big)), 2*most - int64(len(big)) - 1, ErrBusy, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(2 * most)
			b.used.Store(tc.others)
			body, release, err := b.Read(tc.body, tc.most)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v; want %v", err, tc.err)
			}
			if tc.err != nil {
				if body != nil || release != nil {
					t.Errorf("a body or release with the error")
				}
				if used := b.Used(); used != tc.others {
					t.Errorf("%d bytes counted after the error; want the others' %d", used, tc.others)
				}
				return
			}
			if body == nil || string(body) != tc.want {
				t.Fatalf("read %d bytes (nil %v); want the %d sent", len(body), body == nil, len(tc.want))
			}
			if held := b.Used() - tc.others; held < int64(len(body)) || held > int64(len(body))+Chunk {
				t.Errorf("%d bytes counted for a body of %d", held, len(body))
			}
			release()
			if used := b.Used(); used != tc.others {
				t.Errorf("%d bytes counted after the release; want the others' %d", used, tc.others)
			}
		})
	}
}

// A reader that panics leaves nothing counted.
func TestReadPanic(t *testing.T) {
	b := NewBudget(1 << 20)
	func() {
		defer func() { recover() }()
		b.Read(io.MultiReader(strings.NewReader(strings.Repeat("x", 3*Chunk)), panicReader{}), 1<<20)
	}()
	if used := b.Used(); used != 0 {
		t.Errorf("%d bytes counted after a panic; want 0", used)
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("broken body") }

// Many bodies read at once never take the budget over its limit, and give
// all of it back.
func TestReadConcurrent(t *testing.T) {
	const limit = 10 * Chunk
	b := NewBudget(limit)
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[error]int{}
	var peak int64
	for range 50 {
		wg.Go(func() {
			body, release, err := b.Read(iotest.HalfReader(strings.NewReader(strings.Repeat("y", 3*Chunk))), 4*Chunk)
			mu.Lock()
			results[err]++
			peak = max(peak, b.Used())
			mu.Unlock()
			if err == nil {
				if len(body) != 3*Chunk {
					t.Errorf("read %d bytes; want %d", len(body), 3*Chunk)
				}
				release()
			}
		})
	}
	wg.Wait()
	if peak > limit {
		t.Errorf("%d bytes counted at once; want at most %d", peak, limit)
	}
	if used := b.Used(); used != 0 {
		t.Errorf("%d bytes counted once all were released", used)
	}
	if results[nil]+results[ErrBusy] != 50 {
		t.Errorf("results %v; want each read or busy", results)
	}
}

// Warn says yes once per interval.
func TestWarn(t *testing.T) {
	b := NewBudget(1)
	if !b.Warn(time.Hour) {
		t.Fatal("no first warning")
	}
	if b.Warn(time.Hour) {
		t.Fatal("a second warning within the interval")
	}
	if !b.Warn(0) {
		t.Fatal("no warning once the interval passed")
	}
}

// chunkedReader returns data in reads of the sizes sizes cycles through.
type chunkedReader struct {
	data  []byte
	sizes []byte
	n     int
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	size := 1
	if len(r.sizes) > 0 {
		size = int(r.sizes[r.n%len(r.sizes)]) + 1
		r.n++
	}
	n := copy(p, r.data[:min(size, len(r.data))])
	r.data = r.data[n:]
	return n, nil
}

// Whatever the body, the reads it arrives in, the most it may be and the
// budget: Read returns the body exactly or refuses it for the right reason,
// never counts over the limit, and gives everything back.
func FuzzRead(f *testing.F) {
	f.Add([]byte("amount=1"), []byte{0}, int64(100), int64(1<<20))
	f.Add([]byte(strings.Repeat("x", 3*Chunk+7)), []byte{255, 3}, int64(3*Chunk+7), int64(8*Chunk))
	f.Add([]byte(strings.Repeat("x", 2*Chunk)), []byte{17}, int64(2*Chunk-1), int64(4*Chunk))
	f.Add([]byte(strings.Repeat("y", Chunk+1)), []byte{200}, int64(4*Chunk), int64(Chunk+10))
	f.Fuzz(func(t *testing.T, data, sizes []byte, most, limit int64) {
		most = max(0, most%(4*Chunk))
		limit = max(1, limit%(10*Chunk))
		b := NewBudget(limit)
		body, release, err := b.Read(&chunkedReader{data: data, sizes: sizes}, most)
		if peak := b.Used(); peak > limit {
			t.Fatalf("%d bytes counted of a budget of %d", peak, limit)
		}
		switch {
		case err == nil:
			if !bytes.Equal(body, data) {
				t.Fatalf("read %d bytes; want the %d sent", len(body), len(data))
			}
			if int64(len(data)) > most {
				t.Fatalf("a body of %d bytes read with at most %d", len(data), most)
			}
			release()
		case errors.Is(err, ErrTooLarge):
			if int64(len(data)) <= most {
				t.Fatalf("a body of %d bytes refused as over %d", len(data), most)
			}
		case errors.Is(err, ErrBusy):
		default:
			t.Fatalf("unexpected error %v", err)
		}
		if used := b.Used(); used != 0 {
			t.Fatalf("%d bytes still counted", used)
		}
	})
}
