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

// ErrBadToken is returned for a token that is malformed, truncated, forged, or signed by a key
// no longer in the ring.
var ErrBadToken = errors.New("invalid token")

const (
	tokenVersion = 1
	tokenMACLen  = 16 // 128-bit truncated HMAC-SHA256
	tokenDomain  = "herald/unsubscribe/v1"
	maxTokenLen  = 80
)

// tokenEncoding is lower-case base32 without padding: safe in a URL path and in the local part
// of a mailto address, whose case mail systems do not always keep (decoding folds case).
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token returns the signed unsubscribe token for r: version, key id, the three ids as varints,
// and a truncated HMAC-SHA256 over them. It carries ids only, no personal data.
func (k *Keys) Token(r Recipient) string {
	key := k.tokens[0]
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+tokenMACLen)
	b = append(b, tokenVersion, key.id)
	b = binary.AppendUvarint(b, uint64(r.WorkspaceID))
	b = binary.AppendUvarint(b, uint64(r.ContactID))
	b = binary.AppendUvarint(b, uint64(r.PurposeID))
	b = append(b, tokenMAC(key.secret, b)...)
	return tokenEncoding.EncodeToString(b)
}

// ParseToken checks a token's signature and returns what it names.
func (k *Keys) ParseToken(s string) (Recipient, error) {
	if len(s) < 8 || len(s) > maxTokenLen {
		return Recipient{}, ErrBadToken
	}
	s = strings.ToLower(s)
	b, err := tokenEncoding.DecodeString(s)
	// Re-encoding must give the token back: base32 ignores the unused low bits of the last
	// character, and a token has exactly one spelling (up to case).
	if err != nil || len(b) < 2+3+tokenMACLen || b[0] != tokenVersion || tokenEncoding.EncodeToString(b) != s {
		return Recipient{}, ErrBadToken
	}
	body, mac := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	secret, ok := k.tokenKey(body[1])
	if !ok || !hmac.Equal(mac, tokenMAC(secret, body)) {
		return Recipient{}, ErrBadToken
	}
	var ids [3]int64
	rest := body[2:]
	for i := range ids {
		v, n := binary.Uvarint(rest)
		if n <= 0 || v > 1<<62 {
			return Recipient{}, ErrBadToken
		}
		ids[i], rest = int64(v), rest[n:]
	}
	if len(rest) != 0 || ids[0] == 0 || ids[1] == 0 {
		return Recipient{}, ErrBadToken
	}
	return Recipient{WorkspaceID: ids[0], ContactID: ids[1], PurposeID: ids[2]}, nil
}

func tokenMAC(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tokenDomain))
	m.Write(body)
	return m.Sum(nil)[:tokenMACLen]
}
