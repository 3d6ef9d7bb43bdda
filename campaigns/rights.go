package campaigns

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
)

// RightsPart is the campaigns package's consent.DataPart: the contact's list memberships and its
// rows in campaign send logs. Erasure deletes the memberships and empties each send's address and
// relay reply; campaign, status, attempts and times stay (the campaign's counts are unchanged).
type RightsPart struct{}

var _ consent.DataPart = RightsPart{}

// Name is "campaigns".
func (RightsPart) Name() string { return "campaigns" }

type listExport struct {
	Name    string    `json:"name"`
	AddedAt time.Time `json:"added_at"`
}

type campaignSendExport struct {
	CampaignID int64      `json:"campaign_id"`
	Campaign   string     `json:"campaign"`
	Purpose    string     `json:"purpose"`
	Subject    string     `json:"subject"`
	Address    string     `json:"address"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	SentAt     *time.Time `json:"sent_at"`
}

type campaignsExport struct {
	Lists    []listExport         `json:"lists"`
	Messages []campaignSendExport `json:"messages"`
}

// workspaceRecipients restricts campaign_recipients r to the workspace's campaigns, so that the
// (campaign_id, contact_id) unique index finds a contact's rows without an index of its own.
const workspaceRecipients = `r.campaign_id = ANY (ARRAY(SELECT id FROM campaigns WHERE workspace_id = $1)) AND r.contact_id = $2`

// Export returns the contact's lists and campaign messages.
func (RightsPart) Export(ctx context.Context, q db.Querier, s consent.Subject) (any, error) {
	out := campaignsExport{Lists: []listExport{}, Messages: []campaignSendExport{}}
	rows, err := q.Query(ctx, `SELECT l.name, m.added_at FROM list_members m JOIN lists l ON l.id = m.list_id
		WHERE m.contact_id = $2 AND m.workspace_id = $1 ORDER BY l.name`, s.WorkspaceID, s.ContactID)
	if err != nil {
		return nil, fmt.Errorf("export lists: %w", err)
	}
	lists, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (listExport, error) {
		var l listExport
		return l, r.Scan(&l.Name, &l.AddedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("export lists: %w", err)
	}
	out.Lists = append(out.Lists, lists...)
	rows, err = q.Query(ctx, `SELECT c.id, c.name, c.purpose, coalesce(t.subject, ''), r.address, r.status, r.reason, r.sent_at
		FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
		LEFT JOIN templates t ON t.workspace_id = c.workspace_id AND t.name = c.template_name AND t.version = c.template_version
		WHERE `+workspaceRecipients+` ORDER BY r.campaign_id`, s.WorkspaceID, s.ContactID)
	if err != nil {
		return nil, fmt.Errorf("export campaign messages: %w", err)
	}
	sends, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (campaignSendExport, error) {
		var m campaignSendExport
		return m, r.Scan(&m.CampaignID, &m.Campaign, &m.Purpose, &m.Subject, &m.Address, &m.Status, &m.Reason, &m.SentAt)
	})
	if err != nil {
		return nil, fmt.Errorf("export campaign messages: %w", err)
	}
	out.Messages = append(out.Messages, sends...)
	return out, nil
}

// Erase deletes the contact's list memberships and empties its send log rows' address and reply.
func (RightsPart) Erase(ctx context.Context, tx pgx.Tx, s consent.Subject) (int64, error) {
	tag, err := tx.Exec(ctx, `DELETE FROM list_members WHERE contact_id = $2 AND workspace_id = $1`, s.WorkspaceID, s.ContactID)
	if err != nil {
		return 0, fmt.Errorf("erase list memberships: %w", err)
	}
	n := tag.RowsAffected()
	tag, err = tx.Exec(ctx, `UPDATE campaign_recipients r SET address = '', smtp_reply = ''
		WHERE `+workspaceRecipients+` AND (r.address <> '' OR r.smtp_reply <> '')`, s.WorkspaceID, s.ContactID)
	if err != nil {
		return n, fmt.Errorf("erase campaign sends: %w", err)
	}
	return n + tag.RowsAffected(), nil
}
