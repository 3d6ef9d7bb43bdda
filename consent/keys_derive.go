package consent

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// DeriveKey returns n bytes of key material for purpose, derived from the hash key by HKDF-SHA256
// (RFC 5869). purpose is a constant naming what the key is for ("herald/campaign-message-id/v1"),
// so that keys derived for different uses are independent of each other and of the hash key. Like
// the hash key it never rotates: what it protects (Message-IDs of sent mail) must stay readable.
// The derivation runs once per purpose and length; each call returns its own copy.
func (k *Keys) DeriveKey(purpose string, n int) []byte {
	return append([]byte(nil), k.derive(purpose, n)...)
}

// derive returns the cached key material of DeriveKey; callers must not modify it.
func (k *Keys) derive(purpose string, n int) []byte {
	checkDomain(purpose)
	id := derivedKey{purpose: purpose, n: n}
	if v, ok := k.derived.Load(id); ok {
		return v.([]byte)
	}
	out, err := hkdf.Key(sha256.New, k.hash, nil, purpose, n)
	if err != nil {
		// Only a length beyond 255 hash blocks fails: a programming error.
		panic(fmt.Sprintf("consent: derive key %q: %v", purpose, err))
	}
	v, _ := k.derived.LoadOrStore(id, out)
	return v.([]byte)
}

// DeriveCipher returns the AES-128 block cipher keyed with DeriveKey(purpose, 16), made once per
// purpose. A cipher.Block from crypto/aes is safe for concurrent use.
func (k *Keys) DeriveCipher(purpose string) cipher.Block {
	id := derivedKey{purpose: purpose, n: 16, cipher: true}
	if v, ok := k.derived.Load(id); ok {
		return v.(cipher.Block)
	}
	c, err := aes.NewCipher(k.derive(purpose, 16))
	if err != nil {
		panic("consent: derive cipher: " + err.Error()) // a 16-byte key never fails
	}
	v, _ := k.derived.LoadOrStore(id, c)
	return v.(cipher.Block)
}
