package tracking

import (
	"strings"

	"herald/consent"
)

// Token domains (see consent.Keys.SignIDs): an open token is never a click token, and neither is
// an unsubscribe, view-online or any other kind of Herald token.
const (
	openDomain  = "herald/open/v1"
	clickDomain = "herald/click/v1"
)

// OpenRef is what an open token names: one recipient row of a campaign.
type OpenRef struct {
	WorkspaceID, CampaignID, RecipientID int64
}

// ClickRef is what a click token names: one recipient row and one stored link of its campaign.
type ClickRef struct {
	WorkspaceID, CampaignID, RecipientID, LinkID int64
}

// OpenToken signs an open token for the recipient.
func OpenToken(k *consent.Keys, r OpenRef) string {
	return k.SignIDs(openDomain, r.WorkspaceID, r.CampaignID, r.RecipientID)
}

// ClickToken signs a click token for the recipient and link.
func ClickToken(k *consent.Keys, r ClickRef) string {
	return k.SignIDs(clickDomain, r.WorkspaceID, r.CampaignID, r.RecipientID, r.LinkID)
}

// ParseOpenToken checks an open token's signature and returns what it names.
func ParseOpenToken(k *consent.Keys, s string) (OpenRef, error) {
	ids, err := k.ParseIDs(openDomain, s, 3)
	if err != nil || ids[0] <= 0 || ids[1] <= 0 || ids[2] <= 0 {
		return OpenRef{}, consent.ErrBadToken
	}
	return OpenRef{WorkspaceID: ids[0], CampaignID: ids[1], RecipientID: ids[2]}, nil
}

// ParseClickToken checks a click token's signature and returns what it names.
func ParseClickToken(k *consent.Keys, s string) (ClickRef, error) {
	ids, err := k.ParseIDs(clickDomain, s, 4)
	if err != nil || ids[0] <= 0 || ids[1] <= 0 || ids[2] <= 0 || ids[3] <= 0 {
		return ClickRef{}, consent.ErrBadToken
	}
	return ClickRef{WorkspaceID: ids[0], CampaignID: ids[1], RecipientID: ids[2], LinkID: ids[3]}, nil
}

// OpenURL is the pixel's address, BASE/t/o/TOKEN.
func OpenURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/t/o/" + token
}

// ClickURL is a rewritten link's address, BASE/t/c/TOKEN.
func ClickURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/t/c/" + token
}
