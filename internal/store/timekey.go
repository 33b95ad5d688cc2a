package store

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"time"
)

// Time-ordered keys: 16 hex digits of the time's Unix nanoseconds, then 16
// of a random number drawn once per process (the node), then 16 of a
// process-wide sequence. All three are fixed width, so byte order (which
// every store scans in) is time order, then node, then call order.
//
// Nothing in the store is read or written to make a key unique, so two
// gateways appending at once never conflict (on etcd a shared counter key
// would make every pair of transactions conflict). Times come from the
// caller's clock: across nodes the order is as good as their clocks agree.

var (
	node   = newNode()
	keySeq atomic.Uint64
)

func newNode() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// AppendAt writes value under a new key of b that sorts by t, after every
// key for an earlier time and, for an equal time, after those this process
// appended before; it returns the key. t must lie between 1970 and 2262
// (Unix nanoseconds in 63 bits).
//
// A run of fn that Update repeats draws new keys; the discarded run's keys
// were never written, so records are neither lost nor doubled.
func AppendAt(tx Tx, b Bucket, t time.Time, value []byte) (string, error) {
	ns := t.UnixNano()
	if t.Before(time.Unix(0, 0)) || !time.Unix(0, ns).Equal(t) {
		return "", fmt.Errorf("store: time %v cannot key a record (before 1970 or after 2262)", t)
	}
	key := fmt.Sprintf("%016x%s%016x", ns, node, keySeq.Add(1))
	return key, tx.Put(b, key, value)
}

// TimeCursor is the Scan cursor (after) that starts at keys AppendAt made
// for t or later: the time part alone sorts before every full key with
// that time. Times before 1970 start at the beginning.
// Times after 2262 start past every key.
func TimeCursor(t time.Time) string {
	ns := t.UnixNano()
	switch {
	case t.Before(time.Unix(0, 0)):
		return ""
	case !time.Unix(0, ns).Equal(t):
		return "g" // after every hex digit
	}
	return fmt.Sprintf("%016x", ns)
}
