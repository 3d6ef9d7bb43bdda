package campaigns

import (
	"encoding/binary"
	"encoding/hex"
	"strings"

	"herald/consent"
)

// messageIDKeyPurpose names the AES key of campaign Message-IDs (consent.Keys.DeriveKey).
const messageIDKeyPurpose = "herald/campaign-message-id/v1"

// maxParsedID bounds the ids ParseMessageID accepts (2^48, some 280 trillion rows).
const maxParsedID = 1 << 48

// MessageID is the Message-ID of a campaign's recipient row: "c.<32 hex>@domain", where the hex
// is the AES-128 encryption of the campaign and row ids (8 bytes each, big-endian) under a key
// derived from the hash key. It depends on the campaign and the row only, so a message sent again
// after a crash carries the same one; it tells the recipient neither the campaign's id nor how
// many rows came before theirs; and ParseMessageID maps it back to the row, so that a bounce or
// complaint report quoting it is attributed without an index on campaign_recipients.message_id.
func MessageID(keys *consent.Keys, campaignID, recipientID int64, domain string) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(campaignID))
	binary.BigEndian.PutUint64(b[8:], uint64(recipientID))
	keys.DeriveCipher(messageIDKeyPurpose).Encrypt(b[:], b[:])
	var h [32]byte
	hex.Encode(h[:], b[:])
	var out strings.Builder
	out.Grow(2 + len(h) + 1 + len(domain))
	out.WriteString("c.")
	out.Write(h[:])
	out.WriteByte('@')
	out.WriteString(domain)
	return out.String()
}

// ParseMessageID returns the campaign and recipient row ids a Message-ID made by MessageID names.
// It accepts the id with or without its angle brackets and ignores the domain. ok is false for
// any other id. A forged id decrypts to random ids, which are almost never both in range and
// must in any case be checked against the database, within the workspace: the encryption hides
// the ids, it does not authenticate them.
func ParseMessageID(keys *consent.Keys, id string) (campaignID, recipientID int64, ok bool) {
	id = strings.TrimSpace(id)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	local, _, found := strings.Cut(id, "@")
	if !found || len(local) != 34 || !strings.EqualFold(local[:2], "c.") {
		return 0, 0, false
	}
	var b [16]byte
	if n, err := hex.Decode(b[:], []byte(local[2:])); err != nil || n != 16 {
		return 0, 0, false
	}
	keys.DeriveCipher(messageIDKeyPurpose).Decrypt(b[:], b[:])
	cid, rid := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	// Identity columns are positive and far below 2^48: a forged id decrypts to two ids in that
	// range once in 2^32 tries, and then names a row of the workspace only by chance.
	if cid == 0 || rid == 0 || cid >= maxParsedID || rid >= maxParsedID {
		return 0, 0, false
	}
	return int64(cid), int64(rid), true
}
