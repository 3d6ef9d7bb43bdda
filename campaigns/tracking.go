package campaigns

import (
	"context"

	"herald/internal/db"
)

// Tracker adds open and click tracking to the messages of recipients who allow it. A
// SendBatchWorker without one tracks nothing. The tracking package implements it.
type Tracker interface {
	// Allowed answers, for each contact of a batch (in order), whether its messages may carry the
	// pixel and rewritten links: the workspace's tracking mode and the contact's choice for the
	// tracking purpose. q is the batch's consent transaction.
	Allowed(ctx context.Context, q db.Querier, workspaceID int64, contactIDs []int64) ([]bool, error)
	// Instrument returns html with its links rewritten to click-tracking URLs and the open pixel
	// added, for one recipient of a campaign. It leaves Herald's own link placeholders
	// (templates.Placeholder*) alone, so unsubscribe and preference links are never rewritten.
	Instrument(ctx context.Context, workspaceID, campaignID, recipientID int64, html string) (string, error)
}
