package mailer

import (
	"errors"
	"fmt"
	"log/slog"

	gomail "github.com/wneessen/go-mail"

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
	return nil
}

// UnsubscribeURL is the recipient's one-click and preference-centre link for token.
func (l *CampaignList) UnsubscribeURL(token string) string {
	return consent.UnsubscribeURL(l.BaseURL, token)
}

// Compose builds the MIME message of one campaign recipient with the same code as every other
// marketing message (see compose): List-Unsubscribe (https and mailto from token),
// List-Unsubscribe-Post, List-Id, the visible unsubscribe footer and the DKIM signature. m.Stream
// is set to marketing; m.MessageID should be derived from the campaign and the recipient, so that a
// resend after a crash carries the same one. Check must have succeeded before.
func (l *CampaignList) Compose(m *Message, token string) (*gomail.Msg, error) {
	if l.listID == "" {
		return nil, errors.New("campaign compose: CampaignList.Check was not called")
	}
	if token == "" {
		return nil, fmt.Errorf("campaign compose: marketing message %s without an unsubscribe token", m.ID)
	}
	m.Stream = StreamMarketing
	return compose(m, composeOpts{
		List:   newListInfo(l.BaseURL, l.InboundDomain, token, l.listID),
		DKIM:   l.DKIM,
		Logger: l.Logger,
	})
}
