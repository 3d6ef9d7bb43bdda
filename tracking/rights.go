package tracking

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
)

// RightsPart is the tracking package's consent.DataPart: the opens and clicks of the contact's
// campaign messages, and the bounce and complaint reports about its address. Erasure empties the
// events' IP and user agent and the reports' detail (a DSN's text quotes the address); kinds,
// times, links and machine flags stay, so campaign statistics do not change.
type RightsPart struct{}

var _ consent.DataPart = RightsPart{}

// Name is "tracking".
func (RightsPart) Name() string { return "tracking" }

type eventExport struct {
	CampaignID    int64     `json:"campaign_id"`
	Campaign      string    `json:"campaign"`
	Kind          string    `json:"kind"`
	URL           string    `json:"url,omitempty"`
	At            time.Time `json:"at"`
	IP            string    `json:"ip"`
	UserAgent     string    `json:"user_agent"`
	Machine       bool      `json:"machine"`
	MachineReason string    `json:"machine_reason,omitempty"`
}

type feedbackExport struct {
	Kind       string    `json:"kind"`
	Source     string    `json:"source"`
	Status     string    `json:"status"`
	Detail     string    `json:"detail"`
	CampaignID *int64    `json:"campaign_id"`
	MessageID  *string   `json:"message_id"`
	At         time.Time `json:"at"`
}

type trackingExport struct {
	Events   []eventExport    `json:"events"`
	Feedback []feedbackExport `json:"feedback"`
}

// contactRecipients are the ids of the contact's campaign send log rows, found through the
// workspace's campaigns and the (campaign_id, contact_id) unique index.
const contactRecipients = `SELECT r.id FROM campaign_recipients r
	WHERE r.campaign_id = ANY (ARRAY(SELECT id FROM campaigns WHERE workspace_id = $1)) AND r.contact_id = $2`

// Export returns the contact's tracking events and the feedback about its address.
func (RightsPart) Export(ctx context.Context, q db.Querier, s consent.Subject) (any, error) {
	out := trackingExport{Events: []eventExport{}, Feedback: []feedbackExport{}}
	rows, err := q.Query(ctx, `SELECT e.campaign_id, c.name, e.kind, coalesce(l.url, ''), e.at, e.ip, e.user_agent,
			e.machine, e.machine_reason
		FROM tracking_events e JOIN campaigns c ON c.id = e.campaign_id
		LEFT JOIN campaign_links l ON l.id = e.link_id
		WHERE e.workspace_id = $1 AND e.recipient_id IN (`+contactRecipients+`)
		ORDER BY e.at, e.kind`, s.WorkspaceID, s.ContactID)
	if err != nil {
		return nil, fmt.Errorf("export tracking events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (eventExport, error) {
		var e eventExport
		return e, r.Scan(&e.CampaignID, &e.Campaign, &e.Kind, &e.URL, &e.At, &e.IP, &e.UserAgent, &e.Machine, &e.MachineReason)
	})
	if err != nil {
		return nil, fmt.Errorf("export tracking events: %w", err)
	}
	out.Events = append(out.Events, events...)
	if s.AddressHash == nil {
		return out, nil
	}
	rows, err = q.Query(ctx, `SELECT kind, source, status, detail, campaign_id, message_id::text, at FROM feedback_events
		WHERE workspace_id = $1 AND address_hash = $2 ORDER BY at, id`, s.WorkspaceID, s.AddressHash)
	if err != nil {
		return nil, fmt.Errorf("export feedback: %w", err)
	}
	fb, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (feedbackExport, error) {
		var f feedbackExport
		return f, r.Scan(&f.Kind, &f.Source, &f.Status, &f.Detail, &f.CampaignID, &f.MessageID, &f.At)
	})
	if err != nil {
		return nil, fmt.Errorf("export feedback: %w", err)
	}
	out.Feedback = append(out.Feedback, fb...)
	return out, nil
}

// Erase empties the IP and user agent of the contact's events and the detail of the reports
// about its address.
func (RightsPart) Erase(ctx context.Context, tx pgx.Tx, s consent.Subject) (int64, error) {
	tag, err := tx.Exec(ctx, `UPDATE tracking_events SET ip = '', user_agent = ''
		WHERE workspace_id = $1 AND recipient_id IN (`+contactRecipients+`) AND (ip <> '' OR user_agent <> '')`,
		s.WorkspaceID, s.ContactID)
	if err != nil {
		return 0, fmt.Errorf("erase tracking events: %w", err)
	}
	n := tag.RowsAffected()
	if s.AddressHash == nil {
		return n, nil
	}
	tag, err = tx.Exec(ctx, `UPDATE feedback_events SET detail = '' WHERE workspace_id = $1 AND address_hash = $2 AND detail <> ''`,
		s.WorkspaceID, s.AddressHash)
	if err != nil {
		return n, fmt.Errorf("erase feedback: %w", err)
	}
	return n + tag.RowsAffected(), nil
}
