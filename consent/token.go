package consent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"strings"
)

// Recipient is what an unsubscribe token names: a contact of a workspace and the purpose the
// message was sent for (0 for none: a preference link outside a marketing message).
type Recipient struct {
	WorkspaceID int64
	ContactID   int64
	PurposeID   int64
}

// ErrBadToken is returned for a token that is malformed, truncated, forged, signed by a key
// no longer in the ring, or signed for another domain.
var ErrBadToken = errors.New("invalid token")

// A token is version, key id, its ids as uvarints and a truncated HMAC-SHA256 over the domain
// and those bytes, in lower-case base32. The domain keeps tokens of one kind from being accepted
// as another: every domain is printable text, so no domain followed by the version byte (1) is a
// prefix of another domain's MAC input.
const (
	tokenVersion = 1
	tokenMACLen  = 16 // 128-bit truncated HMAC-SHA256
	tokenDomain  = "herald/unsubscribe/v1"
	maxTokenID   = 1 << 62 // at most 9 bytes as a uvarint
)

// tokenEncoding is lower-case base32 without padding: safe in a URL path and in the local part
// of a mailto address, whose case mail systems do not always keep (decoding folds case).
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token returns the signed unsubscribe token for r: the three ids signed for the unsubscribe
// domain. It carries ids only, no personal data.
func (k *Keys) Token(r Recipient) string {
	return k.SignIDs(tokenDomain, r.WorkspaceID, r.ContactID, r.PurposeID)
}

// ParseToken checks an unsubscribe token's signature and returns what it names.
func (k *Keys) ParseToken(s string) (Recipient, error) {
	ids, err := k.ParseIDs(tokenDomain, s, 3)
	if err != nil || ids[0] == 0 || ids[1] == 0 {
		return Recipient{}, ErrBadToken
	}
	return Recipient{WorkspaceID: ids[0], ContactID: ids[1], PurposeID: ids[2]}, nil
}

// SignIDs returns a token naming ids (each from 0 to 2^62), signed with the ring's first key for
// domain, a constant such as "herald/view/v1" that no other kind of token uses. The token is
// opaque but not secret: it carries the ids, never personal data.
func (k *Keys) SignIDs(domain string, ids ...int64) string {
	checkDomain(domain)
	key := k.tokens[0]
	// Room for the whole MAC, which is truncated once appended.
	b := make([]byte, 0, 2+len(ids)*binary.MaxVarintLen64+sha256.Size)
	b = append(b, tokenVersion, key.id)
	for _, id := range ids {
		b = binary.AppendUvarint(b, uint64(id))
	}
	b = tokenMAC(b, domain, key.mac, b)
	return tokenEncoding.EncodeToString(b)
}

// ParseIDs checks that s is a token SignIDs made for domain with n ids, under a key still in the
// ring, and returns the ids. Anything else, including another spelling of a valid token than
// its case, is ErrBadToken.
func (k *Keys) ParseIDs(domain, s string, n int) ([]int64, error) {
	checkDomain(domain)
	if len(s) < 8 || len(s) > tokenEncoding.EncodedLen(2+n*9+tokenMACLen) {
		return nil, ErrBadToken
	}
	s = strings.ToLower(s)
	b, err := tokenEncoding.DecodeString(s)
	// Re-encoding must give the token back: base32 ignores the unused low bits of the last
	// character, and a token has exactly one spelling (up to case).
	if err != nil || len(b) < 2+n+tokenMACLen || b[0] != tokenVersion || tokenEncoding.EncodeToString(b) != s {
		return nil, ErrBadToken
	}
	body, mac := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	key, ok := k.tokenKey(body[1])
	var sum [sha256.Size]byte
	if !ok || !hmac.Equal(mac, tokenMAC(sum[:0], domain, key, body)) {
		return nil, ErrBadToken
	}
	ids := make([]int64, n)
	rest := body[2:]
	for i := range ids {
		v, m := binary.Uvarint(rest)
		if m <= 0 || v > maxTokenID {
			return nil, ErrBadToken
		}
		ids[i], rest = int64(v), rest[m:]
	}
	if len(rest) != 0 {
		return nil, ErrBadToken
	}
	return ids, nil
}

// tokenMAC appends the truncated MAC of body for domain under key to dst.
func tokenMAC(dst []byte, domain string, key *macPool, body []byte) []byte {
	n := len(dst)
	return key.sum(dst, []byte(domain), body)[:n+tokenMACLen]
}

// checkDomain panics on a domain that would break the separation argument above: domains are
// constants in the code, so this is a programming error, never bad input.
func checkDomain(domain string) {
	if domain == "" {
		panic("consent: token domain is empty")
	}
	for i := 0; i < len(domain); i++ {
		if domain[i] < 0x20 || domain[i] > 0x7e {
			panic("consent: token domain must be printable ASCII")
		}
	}
}
