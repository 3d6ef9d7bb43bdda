package consent

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
)

// Keys are the secrets the consent package hashes and signs with: one key for the keyed hashes of
// addresses on the suppression list (never rotated: a new key would orphan every entry), and a
// ring of token keys. The first token key signs new tokens; every key in the ring verifies, so a
// rotation keeps old links working for as long as the retired key stays in the ring (at least 60
// days after the last message it signed).
//
// Keys keeps keyed HMAC states for reuse (see macPool) and the derived keys it has handed out, so
// that signing a token or hashing an address does not hash the key again each time: a campaign
// signs several tokens and hashes an address for every recipient.
type Keys struct {
	hash    []byte
	hashMAC *macPool
	tokens  []tokenKey
	// derived caches DeriveKey and DeriveCipher by purpose and length.
	derived sync.Map // derivedKey -> []byte, or cipher.Block for DeriveCipher
}

type tokenKey struct {
	id     byte
	secret []byte
	mac    *macPool
}

// macPool hands out HMAC-SHA256 states keyed with one secret. A state put back is Reset, which
// restores the precomputed inner and outer pads (FIPS 198-1 allows storing them), instead of
// hmac.New hashing the key into two fresh SHA-256 states per MAC.
type macPool struct {
	pool sync.Pool
}

func newMACPool(secret []byte) *macPool {
	key := append([]byte(nil), secret...)
	p := &macPool{}
	p.pool.New = func() any { return hmac.New(sha256.New, key) }
	return p
}

// sum returns the HMAC of the concatenation of parts, appended to dst.
func (p *macPool) sum(dst []byte, parts ...[]byte) []byte {
	m := p.pool.Get().(hash.Hash)
	for _, b := range parts {
		m.Write(b)
	}
	dst = m.Sum(dst)
	m.Reset()
	p.pool.Put(m)
	return dst
}

type derivedKey struct {
	purpose string
	n       int
	cipher  bool
}

// minSecretLen is the shortest secret accepted (128 bits of hex, or 16 random bytes of text).
const minSecretLen = 16

// NewKeys builds Keys from the hash key and a token key ring "id:secret,id:secret" (ids 1-255,
// the first signs).
func NewKeys(hashKey, tokenKeys string) (*Keys, error) {
	if len(hashKey) < minSecretLen {
		return nil, fmt.Errorf("HERALD_HASH_KEY: want at least %d characters of random secret", minSecretLen)
	}
	k := &Keys{hash: []byte(hashKey)}
	k.hashMAC = newMACPool(k.hash)
	seen := map[byte]bool{}
	for _, part := range strings.Split(tokenKeys, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ids, secret, ok := strings.Cut(part, ":")
		id, err := strconv.Atoi(ids)
		if !ok || err != nil || id < 1 || id > 255 {
			return nil, errors.New("HERALD_TOKEN_KEYS: each entry is ID:SECRET with ID from 1 to 255")
		}
		if len(secret) < minSecretLen {
			return nil, fmt.Errorf("HERALD_TOKEN_KEYS: key %d: want at least %d characters of random secret", id, minSecretLen)
		}
		if seen[byte(id)] {
			return nil, fmt.Errorf("HERALD_TOKEN_KEYS: key id %d is given twice", id)
		}
		seen[byte(id)] = true
		k.tokens = append(k.tokens, tokenKey{id: byte(id), secret: []byte(secret), mac: newMACPool([]byte(secret))})
	}
	if len(k.tokens) == 0 {
		return nil, errors.New("HERALD_TOKEN_KEYS: at least one key is required (ID:SECRET)")
	}
	return k, nil
}

// DevKeys are fixed keys for `herald dev` and tests; never use them in production.
func DevKeys() *Keys {
	k, err := NewKeys("herald-dev-hash-key-not-secret", "1:herald-dev-token-key-not-secret")
	if err != nil {
		panic(err)
	}
	return k
}

// AddressHash is the keyed hash under which the workspace's suppression list stores an address.
// The address must already be normalised (contacts.NormalizeAddress): lower-cased domain, and
// the local part as given.
func (k *Keys) AddressHash(workspaceID int64, address string) []byte {
	var ws [24]byte
	prefix := append(strconv.AppendInt(ws[:0], workspaceID, 10), 0)
	return k.hashMAC.sum(make([]byte, 0, sha256.Size), prefix, []byte(strings.ToLower(address)))
}

func (k *Keys) tokenKey(id byte) (*macPool, bool) {
	for _, t := range k.tokens {
		if t.id == id {
			return t.mac, true
		}
	}
	return nil, false
}
