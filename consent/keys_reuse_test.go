package consent_test

import (
	"bytes"
	"crypto/aes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"testing"

	"herald/consent"
)

// The keyed HMAC states and derived keys that Keys reuses give exactly what a fresh hmac.New and
// HKDF give, also under concurrent use (run with -race).
func TestKeysReuseMatchesFreshComputation(t *testing.T) {
	k, err := consent.NewKeys(testHashKey, "7:"+newSecret+",3:"+oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	wantToken := func(domain string, ids ...int64) string {
		b := []byte{1, 7}
		for _, id := range ids {
			b = binary.AppendUvarint(b, uint64(id))
		}
		m := hmac.New(sha256.New, []byte(newSecret))
		m.Write([]byte(domain))
		m.Write(b)
		return tokenEncoding.EncodeToString(append(b, m.Sum(nil)[:16]...))
	}
	wantHash := func(ws int64, addr string) []byte {
		m := hmac.New(sha256.New, []byte(testHashKey))
		m.Write([]byte(strconv.FormatInt(ws, 10) + "\x00" + strings.ToLower(addr)))
		return m.Sum(nil)
	}
	wantKey, err := hkdf.Key(sha256.New, []byte(testHashKey), nil, "herald/test/v1", 16)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ws, contact, purpose int64
		addr                 string
	}{
		{1, 1, 0, "a@example.com"},
		{42, 1 << 40, 9, "Mixed.Case@Example.COM"},
		{1 << 62, 1 << 62, 1 << 62, ""},
		{7, 300, 128, "x\x00y@example.com"},
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 50; i++ {
				for _, c := range cases {
					r := consent.Recipient{WorkspaceID: c.ws, ContactID: c.contact, PurposeID: c.purpose}
					tok := k.Token(r)
					if want := wantToken("herald/unsubscribe/v1", c.ws, c.contact, c.purpose); tok != want {
						t.Errorf("Token(%v) = %s, want %s", r, tok, want)
						return
					}
					if got, err := k.ParseToken(tok); err != nil || got != r {
						t.Errorf("ParseToken(Token(%v)) = %v, %v", r, got, err)
						return
					}
					if got, want := k.AddressHash(c.ws, c.addr), wantHash(c.ws, c.addr); !bytes.Equal(got, want) {
						t.Errorf("AddressHash(%d, %q) = %x, want %x", c.ws, c.addr, got, want)
						return
					}
					key := k.DeriveKey("herald/test/v1", 16)
					if !bytes.Equal(key, wantKey) {
						t.Errorf("DeriveKey = %x, want %x", key, wantKey)
						return
					}
					key[0] ^= 0xff // a caller's copy: changing it must not change the next one
					block, _ := aes.NewCipher(wantKey)
					var a, b [16]byte
					binary.BigEndian.PutUint64(a[:], uint64(c.contact))
					block.Encrypt(a[:], a[:])
					binary.BigEndian.PutUint64(b[:], uint64(c.contact))
					k.DeriveCipher("herald/test/v1").Encrypt(b[:], b[:])
					if a != b {
						t.Errorf("DeriveCipher encrypts %x, want %x", b, a)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
