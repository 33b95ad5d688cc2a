package token

import (
	"context"
	"fmt"
	"time"

	"github.com/otpgate/otpgate/internal/seal"
	"github.com/otpgate/otpgate/internal/store"
)

// seedBatch is how many records one Update of SeedActive writes: within
// store.MaxTxnKeys, and enough that a million customers take ten thousand
// commits rather than a million.
const seedBatch = 100

// SeedActive writes, for each of users, the record an activation leaves:
// an active token holding secrets[i] sealed as the enrolment seals it,
// activated at now and valid for validity. It is for benchmarks and
// campaigns that need a large customer base (issuing each token through
// the lifecycle costs two argon2id runs and three mails); the gateway never
// calls it. Nothing is audited or mailed, and a record already there is
// replaced.
func SeedActive(ctx context.Context, s store.Store, sealer *seal.Sealer, users []User, secrets [][]byte, now time.Time, validity time.Duration) error {
	if len(users) != len(secrets) {
		return fmt.Errorf("token: %d users but %d secrets", len(users), len(secrets))
	}
	for start := 0; start < len(users); start += seedBatch {
		end := min(start+seedBatch, len(users))
		// Sealed before the Update, which may run fn more than once.
		recs := make([]*Record, 0, end-start)
		for i := start; i < end; i++ {
			u := users[i]
			if !u.valid() {
				return fmt.Errorf("token: seeding %q/%q: %w", u.Service, u.ID, ErrInvalidUser)
			}
			sealed, err := sealer.Seal(secrets[i], []byte(u.key()))
			if err != nil {
				return err
			}
			recs = append(recs, &Record{Service: u.Service, User: u.ID, State: Active, Secret: sealed,
				IssuedAt: now, ActivatedAt: now, Expires: now.Add(validity)})
		}
		err := s.Update(ctx, func(tx store.Tx) error {
			for _, r := range recs {
				if err := save(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("token: seeding users %d-%d: %w", start, end-1, err)
		}
	}
	return nil
}
