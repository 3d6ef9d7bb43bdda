package consent

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// ActorFeedback is the actor of the ledger events and suppressions a bounce or complaint report
// causes: the mailbox provider's feedback loop, not the recipient or an operator.
const ActorFeedback = "feedback"

// Complaint acts on a spam complaint about a message to address, in tx: every marketing purpose
// each contact has granted (expired grants included) gets a withdrawn event with source
// complaint, all recorded in one RecordAll so that the contacts' locks and the workspace's chain
// are taken as every other writer takes them, and the address goes on the suppression list with
// reason complaint (an address listed already keeps its first entry). contactIDs are the
// contacts the message was for: one for a campaign or marketing message, none for a
// transactional message to a bare address (then only the suppression is made), or every contact
// holding the address when a report names only the address. The tracking purpose is not a
// marketing purpose and is left as it is. withdrawn counts the events recorded.
func (s *Service) Complaint(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs []int64, address, detail string, messageID *string) (withdrawn int, err error) {
	if len(contactIDs) > 0 {
		withdrawn, err = s.complaintWithdraw(ctx, tx, workspaceID, contactIDs, address)
		if err != nil {
			return 0, fmt.Errorf("complaint: %w", err)
		}
	}
	if _, err := s.Suppress(ctx, tx, Suppression{WorkspaceID: workspaceID, Address: address, Reason: ReasonComplaint,
		Detail: detail, MessageID: messageID, Actor: ActorFeedback}); err != nil {
		return 0, fmt.Errorf("complaint: %w", err)
	}
	return withdrawn, nil
}

// complaintWithdraw takes the contacts' consent locks, then their state rows FOR UPDATE (contact
// by contact in id order, purposes in name order: the order RecordAll takes them in), and
// records the withdrawals.
func (s *Service) complaintWithdraw(ctx context.Context, tx pgx.Tx, workspaceID int64, contactIDs []int64, address string) (int, error) {
	ids := slices.Clone(contactIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if err := s.LockContacts(ctx, tx, workspaceID, ids...); err != nil {
		return 0, err
	}
	rows, err := tx.Query(ctx, `SELECT name, notice_version FROM purposes WHERE workspace_id = $1 AND kind = 'marketing'`, workspaceID)
	if err != nil {
		return 0, fmt.Errorf("marketing purposes: %w", err)
	}
	versions := map[string]int{}
	var name string
	var version int
	_, err = pgx.ForEachRow(rows, []any{&name, &version}, func() error {
		versions[name] = version
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("marketing purposes: %w", err)
	}
	ev := Evidence{Address: address}
	var events []*Event
	for _, id := range ids {
		states, err := s.states(ctx, tx, workspaceID, id, "FOR UPDATE")
		if err != nil {
			return 0, err
		}
		for _, st := range states {
			v, marketing := versions[st.Purpose]
			if st.Status != ActionGranted || !marketing {
				continue
			}
			events = append(events, &Event{WorkspaceID: workspaceID, ContactID: id, Purpose: st.Purpose,
				Action: ActionWithdrawn, Source: SourceComplaint, LawfulBasis: BasisConsent, NoticeVersion: v,
				Actor: ActorFeedback, Proof: map[string]string{"channel": "complaint"}, Evidence: &ev})
		}
	}
	if err := s.RecordAll(ctx, tx, events); err != nil {
		return 0, err
	}
	return len(events), nil
}
