package campaigns

import (
	"context"
)

// Tracker adds open and click tracking to the messages of recipients who allow it. A
// SendBatchWorker without one tracks nothing. The tracking package implements it.
type Tracker interface {
	// Instrument returns html with its links rewritten to click-tracking URLs and the open pixel
	// added, for one recipient of a campaign. It leaves Herald's own link placeholders
	// (templates.Placeholder*) alone, so unsubscribe and preference links are never rewritten.
	Instrument(ctx context.Context, workspaceID, campaignID, recipientID int64, html string) (string, error)
}
