package workspace

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"herald/internal/db"
)

// Authenticator checks API keys, remembering a valid key's principal for TTL so that a busy API
// does not read the key table on every request. A revoked key therefore stops working within TTL
// (zero TTL: every request reads the database). Unknown keys are never cached.
type Authenticator struct {
	DB  db.Querier
	TTL time.Duration

	mu      sync.Mutex
	entries map[[sha256.Size]byte]cachedPrincipal
}

type cachedPrincipal struct {
	p       Principal
	expires time.Time
}

// maxCachedKeys bounds the cache; past it the cache is emptied and refills with live keys.
const maxCachedKeys = 10000

// Authenticate returns the key's principal, or ErrBadKey.
func (a *Authenticator) Authenticate(ctx context.Context, key string) (Principal, error) {
	if a.TTL <= 0 {
		return Authenticate(ctx, a.DB, key)
	}
	sum := sha256.Sum256([]byte(key))
	now := time.Now()
	a.mu.Lock()
	e, ok := a.entries[sum]
	a.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.p, nil
	}
	p, err := Authenticate(ctx, a.DB, key)
	if err != nil {
		return p, err
	}
	a.mu.Lock()
	if a.entries == nil || len(a.entries) >= maxCachedKeys {
		a.entries = make(map[[sha256.Size]byte]cachedPrincipal)
	}
	a.entries[sum] = cachedPrincipal{p: p, expires: now.Add(a.TTL)}
	a.mu.Unlock()
	return p, nil
}
