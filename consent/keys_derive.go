package consent

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// DeriveKey returns n bytes of key material for purpose, derived from the hash key by HKDF-SHA256
// (RFC 5869). purpose is a constant naming what the key is for ("herald/campaign-message-id/v1"),
// so that keys derived for different uses are independent of each other and of the hash key. Like
// the hash key it never rotates: what it protects (Message-IDs of sent mail) must stay readable.
func (k *Keys) DeriveKey(purpose string, n int) []byte {
	checkDomain(purpose)
	out, err := hkdf.Key(sha256.New, k.hash, nil, purpose, n)
	if err != nil {
		// Only a length beyond 255 hash blocks fails: a programming error.
		panic(fmt.Sprintf("consent: derive key %q: %v", purpose, err))
	}
	return out
}
