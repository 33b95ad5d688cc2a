package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Values larger than MaxValueSize (a held payroll upload can be 10 MiB) are
// split into chunks of MaxValueSize. Each chunk is written in an Update of
// its own, because one etcd request, and so one transaction, carries at most
// 1.5 MiB. The value appears only when a small header naming the chunks is
// committed at its key, inside the caller's own transaction; until then the
// chunks are invisible, and if the header never comes they expire.
//
// A value of at most MaxValueSize is one chunk, which PutChunked writes
// with its header inside the caller's transaction: the same keys as a
// staged value, read and deleted the same way, without a commit of its own.
//
// Chunks live in the Chunks bucket under "<bucket>/<key>/<id>/0000", … where
// id is drawn afresh for each value, so writing a new value over an old one
// never touches the chunks the old header names.
const (
	// MaxChunks bounds the chunks of one value, so that deleting it (its
	// header and every chunk) fits in one transaction beside the caller's
	// own writes (MaxTxnKeys).
	MaxChunks = 64
	// MaxChunkedSize is the largest value StageChunked takes.
	MaxChunkedSize = MaxChunks * MaxValueSize
	// chunkGrace is how much longer staged chunks live than the header
	// committed with the same ttl, so that a header never outlives its
	// chunks; Commit refuses chunks staged longer ago than this.
	chunkGrace = time.Minute
)

// chunkHeader is the value at a chunked value's key.
type chunkHeader struct {
	Version int    `json:"chunked"` // 1
	ID      string `json:"id"`      // 16 hex digits
	Count   int    `json:"count"`
	Size    int    `json:"size"`
	SHA256  string `json:"sha256"` // of the whole value, hex
}

// Staged is a chunked value whose chunks are written and whose header is
// not yet committed.
type Staged struct {
	b      Bucket
	key    string
	ttl    time.Duration
	id     string
	header []byte
	at     time.Time // when staging began, with the monotonic clock
}

// StageChunked writes value's chunks for key of b, each in an Update of its
// own, to live ttl (> 0) plus a grace period; commit the value with
// Staged.Commit in the transaction that should make it visible, within that
// grace period (a minute). Keys of chunked values are at most MaxKeySize-64
// bytes. A value over MaxChunkedSize is ErrTooLarge.
func StageChunked(ctx context.Context, s Store, b Bucket, key string, value []byte, ttl time.Duration) (*Staged, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("store: chunked value %s/%s needs a time to live, so chunks never committed expire", b, key)
	}
	if len(value) > MaxChunkedSize {
		return nil, fmt.Errorf("%w: %d-byte value, at most %d in chunks", ErrTooLarge, len(value), MaxChunkedSize)
	}
	h, hb, err := newHeader(value)
	if err != nil {
		return nil, err
	}
	st := &Staged{b: b, key: key, ttl: ttl, id: h.ID, header: hb, at: time.Now()}
	for i := range h.Count {
		part := value[i*MaxValueSize : min(len(value), (i+1)*MaxValueSize)]
		err := s.Update(ctx, func(tx Tx) error {
			return PutTTL(tx, Chunks, chunkKey(b, key, h.ID, i), part, ttl+chunkGrace)
		})
		if err != nil {
			return nil, fmt.Errorf("staging chunk %d of %d of %s/%s: %w", i+1, h.Count, b, key, err)
		}
	}
	return st, nil
}

// Commit writes the header within tx, making the value visible to
// GetChunked once tx commits, with the ttl given to StageChunked. It
// replaces a chunked value already at the key and deletes that one's
// chunks. It may run again when Update re-runs fn.
func (st *Staged) Commit(tx Tx) error {
	if age := time.Since(st.at); age > chunkGrace {
		return fmt.Errorf("store: the chunks of %s/%s were staged %v ago and may expire before their header; stage them again", st.b, st.key, age.Round(time.Second))
	}
	if err := deleteChunks(tx, st.b, st.key, st.id); err != nil {
		return err
	}
	return PutTTL(tx, st.b, st.key, st.header, st.ttl)
}

// PutChunked writes value, at most MaxValueSize bytes, at key of b within
// tx as one chunk and its header, to live ttl (> 0): a value GetChunked
// reads and DeleteChunked deletes like a staged one, visible when tx
// commits. It replaces a chunked value already at the key and deletes
// that one's chunks. A larger value is ErrTooLarge: stage it
// (StageChunked). It may run again when Update re-runs fn.
func PutChunked(tx Tx, b Bucket, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("store: chunked value %s/%s needs a time to live", b, key)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d-byte value, at most %d in one chunk; stage it", ErrTooLarge, len(value), MaxValueSize)
	}
	h, hb, err := newHeader(value)
	if err != nil {
		return err
	}
	if err := deleteChunks(tx, b, key, h.ID); err != nil {
		return err
	}
	// An empty value has no chunk. The chunk gets a staged chunk's grace
	// too, so that it never expires before its header whatever instant a
	// store counts expiries from.
	if h.Count > 0 {
		if err := PutTTL(tx, Chunks, chunkKey(b, key, h.ID, 0), value, ttl+chunkGrace); err != nil {
			return err
		}
	}
	return PutTTL(tx, b, key, hb, ttl)
}

// newHeader describes value under a chunk ID drawn afresh.
func newHeader(value []byte) (chunkHeader, []byte, error) {
	var id [8]byte
	rand.Read(id[:]) // never fails (crypto/rand since Go 1.24)
	sum := sha256.Sum256(value)
	h := chunkHeader{Version: 1, ID: hex.EncodeToString(id[:]), Count: (len(value) + MaxValueSize - 1) / MaxValueSize,
		Size: len(value), SHA256: hex.EncodeToString(sum[:])}
	hb, err := json.Marshal(h)
	return h, hb, err
}

// GetChunked returns the value committed at key of b by StageChunked and
// Commit, or by PutChunked, copied out of the transaction; ErrNotFound if there is none (or it
// expired); ErrCorrupt if the header is not one, or a chunk is missing or
// does not match the header's size and digest. It reads at most MaxChunks+1
// keys.
func GetChunked(tx Tx, b Bucket, key string) ([]byte, error) {
	h, err := readHeader(tx, b, key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, h.Size)
	for i := range h.Count {
		part, err := tx.Get(Chunks, chunkKey(b, key, h.ID, i))
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %s/%s: chunk %d of %d is missing", ErrCorrupt, b, key, i+1, h.Count)
		}
		if err != nil {
			return nil, err
		}
		if len(out)+len(part) > h.Size {
			return nil, fmt.Errorf("%w: %s/%s: chunks longer than the %d bytes of the header", ErrCorrupt, b, key, h.Size)
		}
		out = append(out, part...)
	}
	sum := sha256.Sum256(out)
	if len(out) != h.Size || hex.EncodeToString(sum[:]) != h.SHA256 {
		return nil, fmt.Errorf("%w: %s/%s: chunks do not match the header's size and digest", ErrCorrupt, b, key)
	}
	return out, nil
}

// DeleteChunked removes the chunked value at key of b, header and chunks;
// deleting a missing value is not an error. A header that is not one is
// deleted alone (its chunks, if any, expire).
func DeleteChunked(tx Tx, b Bucket, key string) error {
	if err := deleteChunks(tx, b, key, ""); err != nil {
		return err
	}
	return tx.Delete(b, key)
}

// deleteChunks deletes the chunks named by the header at key, if there is
// a readable one and its chunks are not keep's (a second Commit of the same
// value).
func deleteChunks(tx Tx, b Bucket, key, keep string) error {
	h, err := readHeader(tx, b, key)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		return nil
	case err != nil:
		return err
	case h.ID == keep:
		return nil
	}
	for i := range h.Count {
		if err := tx.Delete(Chunks, chunkKey(b, key, h.ID, i)); err != nil {
			return err
		}
	}
	return nil
}

// readHeader reads and checks the header at key, so that nothing it says
// (a count, a size to allocate) is used unchecked.
func readHeader(tx Tx, b Bucket, key string) (*chunkHeader, error) {
	v, err := tx.Get(b, key)
	if err != nil {
		return nil, err
	}
	var h chunkHeader
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: header unreadable: %v", ErrCorrupt, b, key, err)
	}
	id, idErr := hex.DecodeString(h.ID)
	sum, sumErr := hex.DecodeString(h.SHA256)
	if h.Version != 1 || idErr != nil || len(id) != 8 || sumErr != nil || len(sum) != sha256.Size ||
		h.Count < 0 || h.Count > MaxChunks || h.Size < 0 || h.Count != (h.Size+MaxValueSize-1)/MaxValueSize {
		return nil, fmt.Errorf("%w: %s/%s: header out of bounds", ErrCorrupt, b, key)
	}
	return &h, nil
}

func chunkKey(b Bucket, key, id string, i int) string {
	return fmt.Sprintf("%s/%s/%s/%04d", b, key, id, i)
}
