// Package bodybuf reads request bodies into memory against a budget that
// every body a handler is reading shares. Memory is counted before it is
// allocated, a chunk at a time as the body arrives, so a client that
// declares a large body and sends it slowly holds no more of the budget
// than it has sent, plus one chunk; a body that would go over the budget
// is refused rather than read, and the process keeps its memory under a
// flood of bodies.
package bodybuf

import (
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// Chunk is the most memory a body being read takes ahead of the bytes
// its client has sent.
const Chunk = 64 << 10

var (
	// ErrBusy: reading the body would take the budget over its limit.
	ErrBusy = errors.New("the bodies being read fill the memory budget")
	// ErrTooLarge: the body is longer than the most it may be.
	ErrTooLarge = errors.New("body over the limit")
)

// Budget counts the memory of the bodies read against it, up to a limit.
type Budget struct {
	used   atomic.Int64
	limit  int64
	warned atomic.Int64 // when Warn last said true, Unix nanoseconds
}

// NewBudget returns a budget of limit bytes. A body of n bytes needs up to
// 2n while its chunks are joined.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used is the memory counted now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Limit is the budget's limit.
func (b *Budget) Limit() int64 { return b.limit }

// Warn says whether to warn that the budget is full: true at most once
// every interval, however many callers ask.
func (b *Budget) Warn(interval time.Duration) bool {
	now, last := time.Now().UnixNano(), b.warned.Load()
	return now-last >= int64(interval) && b.warned.CompareAndSwap(last, now)
}

// take counts n more bytes, unless that would go over the limit.
func (b *Budget) take(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

// Read reads r, a body of at most most bytes, into memory counted against
// b, and returns it (never nil) with the function that gives its memory
// back once it is no longer used. A body longer than most is ErrTooLarge,
// found without counting the byte beyond; one the budget has no room for
// is ErrBusy; a read error (a body cut short of its declared length is
// io.ErrUnexpectedEOF) is returned as it is. On an error, or a panic, the
// memory is given back before Read returns.
func (b *Budget) Read(r io.Reader, most int64) (body []byte, release func(), err error) {
	h := &held{budget: b}
	defer func() {
		if body == nil {
			h.giveBack()
		}
	}()
	body, err = h.read(r, most)
	if err != nil {
		return nil, nil, err
	}
	return body, h.giveBack, nil
}

// held is one body's memory, counted against a budget.
type held struct {
	budget *Budget
	taken  int64
}

// alloc counts n bytes, then allocates them.
func (h *held) alloc(n int64) ([]byte, error) {
	if !h.budget.take(n) {
		return nil, ErrBusy
	}
	h.taken += n
	return make([]byte, n), nil
}

// free gives back the count of n bytes that are no longer used.
func (h *held) free(n int64) {
	h.budget.used.Add(-n)
	h.taken -= n
}

// giveBack gives back everything counted.
func (h *held) giveBack() { h.free(h.taken) }

// read reads r a chunk at a time, each counted before it is allocated, and
// joins the chunks into one body.
func (h *held) read(r io.Reader, most int64) ([]byte, error) {
	var chunks [][]byte
	var size int64
	for size < most {
		c, err := h.alloc(min(Chunk, most-size))
		if err != nil {
			return nil, err
		}
		n, err := fill(r, c)
		chunks, size = append(chunks, c[:n]), size+int64(n)
		if err == io.EOF {
			return h.join(chunks, size)
		}
		if err != nil {
			return nil, err
		}
	}
	var beyond [1]byte
	switch n, err := fill(r, beyond[:]); {
	case n > 0:
		return nil, ErrTooLarge
	case err != io.EOF:
		return nil, err
	}
	return h.join(chunks, size)
}

// fill reads into p until it is full (nil) or the body ends (io.EOF, with
// the bytes read before it); any other error is returned as it is.
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// join makes one body of the chunks, counted before it is allocated, and
// gives back the chunks' count.
func (h *held) join(chunks [][]byte, size int64) ([]byte, error) {
	switch len(chunks) {
	case 0:
		return []byte{}, nil
	case 1:
		return chunks[0], nil
	}
	body, err := h.alloc(size)
	if err != nil {
		return nil, err
	}
	body = body[:0]
	var chunked int64
	for _, c := range chunks {
		body = append(body, c...)
		chunked += int64(cap(c))
	}
	h.free(chunked)
	return body, nil
}
