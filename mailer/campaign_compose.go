package mailer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"herald/consent"
)

// CampaignList is what makes a campaign message a well-behaved marketing message: the list
// facts shared by every recipient of one campaign (purpose and workspace, for List-Id) and where
// the unsubscribe links point. A campaign worker builds one per campaign and, per recipient,
// calls Compose with the recipient's token.
type CampaignList struct {
	// BaseURL is the public origin of the unsubscribe pages; it must be https (or http on a
	// loopback host, for herald dev), as for single marketing sends.
	BaseURL string
	// InboundDomain receives unsubscribe+TOKEN@ mail and is the domain part of List-Id.
	InboundDomain string
	Purpose       string // the purpose's name
	PurposeTitle  string // shown as List-Id's phrase
	Workspace     string // the workspace's name
	DKIM          *DKIM  // nil signs nothing
	Logger        *slog.Logger

	listID string
	// oneClick: the base's links are https URLs that go-mail writes back unchanged, for any
	// token of URL-unreserved characters (see Check).
	oneClick bool
}

// Check validates the configuration once per campaign, so that a worker defers rather than sends
// marketing mail without its unsubscribe headers, and prepares List-Id.
func (l *CampaignList) Check() error {
	if err := checkListConfig(l.BaseURL, l.InboundDomain); err != nil {
		return fmt.Errorf("campaign list headers: %w", err)
	}
	if l.Purpose == "" {
		return errors.New("campaign list headers: no purpose")
	}
	l.listID = listIDValue(l.PurposeTitle, l.Purpose, l.Workspace, l.InboundDomain)
	l.oneClick = roundTrips(l.UnsubscribeURL("token"))
	return nil
}

// roundTrips reports whether go-mail's SetListUnsubscribeOneClick accepts link and writes it as
// it is: an https URL with a host that url.Parse and URL.String give back unchanged. For links
// BASE/u/TOKEN, the answer for one token of URL-unreserved characters holds for all of them:
// those characters end the URL, whatever part of it they fall in, and net/url neither splits
// at nor escapes them.
func roundTrips(link string) bool {
	u, err := url.Parse(strings.TrimSpace(link))
	return err == nil && u.Scheme == "https" && u.Host != "" && u.String() == link
}

// unreserved reports whether s is made of RFC 3986 unreserved characters only (an unsubscribe
// token is lower-case base32).
func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// UnsubscribeURL is the recipient's one-click and preference-centre link for token.
func (l *CampaignList) UnsubscribeURL(token string) string {
	return consent.UnsubscribeURL(l.BaseURL, token)
}

// Compose builds the MIME message of one campaign recipient with the same code as every other
// marketing message (see compose): List-Unsubscribe (https and mailto from token),
// List-Unsubscribe-Post, List-Id, the visible unsubscribe footer and the DKIM signature. m.Stream
// is set to marketing; m.MessageID should be derived from the campaign and the recipient, so that a
// resend after a crash carries the same one. Check must have succeeded before. Hand the result to
// a Transport as it is: a signed message is sent as the bytes that were signed.
func (l *CampaignList) Compose(m *Message, token string) (Composed, error) {
	if l.listID == "" {
		return Composed{}, errors.New("campaign compose: CampaignList.Check was not called")
	}
	if token == "" {
		return Composed{}, fmt.Errorf("campaign compose: marketing message %s without an unsubscribe token", m.ID)
	}
	m.Stream = StreamMarketing
	list := newListInfo(l.BaseURL, l.InboundDomain, token, l.listID)
	list.oneClick = l.oneClick && unreserved(token)
	return compose(m, composeOpts{List: list, DKIM: l.DKIM, Logger: l.Logger})
}
