package campaigns

import (
	"encoding/hex"
	"strconv"

	"herald/consent"
)

// MessageID is the Message-ID of a campaign's recipient row: derived from the campaign and the
// row only, so that a message sent again after a crash carries the same one, but as a keyed hash,
// so that it tells the recipient neither the campaign's id nor how many rows came before theirs.
func MessageID(keys *consent.Keys, campaignID, recipientID int64, domain string) string {
	h := keys.AddressHash(0, "campaign-message-id/"+strconv.FormatInt(campaignID, 10)+"/"+strconv.FormatInt(recipientID, 10))
	return "c." + hex.EncodeToString(h[:16]) + "@" + domain
}
