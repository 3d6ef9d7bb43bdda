package consent

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Break is the first place where a workspace's chain fails to verify.
type Break struct {
	EventID int64 // 0 when the event is missing altogether
	Seq     int64
	Problem string
}

func (b *Break) Error() string {
	if b.EventID == 0 {
		return fmt.Sprintf("%v: seq %d: %s", ErrChainBroken, b.Seq, b.Problem)
	}
	return fmt.Sprintf("%v: event %d (seq %d): %s", ErrChainBroken, b.EventID, b.Seq, b.Problem)
}

func (b *Break) Unwrap() error { return ErrChainBroken }

// Verify recomputes the workspace's chain from its first event: sequence numbers without gaps,
// each event's prev_hash equal to the previous event's hash, each hash equal to the hash of the
// event's canonical form, each surviving evidence row matching its commitment, and the chain head
// naming the last event. It returns the number of events checked, and a *Break (wrapping
// ErrChainBroken) naming the first event that fails. Rows are streamed, so memory stays flat.
func Verify(ctx context.Context, q db.Querier, workspaceID int64) (int64, error) {
	rows, err := q.Query(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.workspace_id = $1 ORDER BY e.seq`, workspaceID)
	if err != nil {
		return 0, fmt.Errorf("verify ledger: %w", err)
	}
	defer rows.Close()
	prev, seq := genesis, int64(0)
	for rows.Next() {
		e, salt, err := scanEvent(rows)
		if err != nil {
			return seq, fmt.Errorf("verify ledger: %w", err)
		}
		switch {
		case e.Seq != seq+1:
			return seq, &Break{Seq: seq + 1, Problem: fmt.Sprintf("missing (deleted?): the next event present is %d (seq %d)", e.ID, e.Seq)}
		case !bytes.Equal(e.PrevHash, prev):
			return seq, &Break{EventID: e.ID, Seq: e.Seq, Problem: "prev_hash does not match the previous event's hash"}
		case !bytes.Equal(eventHash(&e), e.Hash):
			return seq, &Break{EventID: e.ID, Seq: e.Seq, Problem: "hash does not match its content (altered)"}
		case salt != nil && !bytes.Equal(evidenceCommitment(salt, *e.Evidence), e.EvidenceCommitment):
			return seq, &Break{EventID: e.ID, Seq: e.Seq, Problem: "evidence does not match its commitment (altered)"}
		}
		prev, seq = e.Hash, e.Seq
	}
	if err := rows.Err(); err != nil {
		return seq, fmt.Errorf("verify ledger: %w", err)
	}
	var headSeq int64
	var headHash []byte
	err = q.QueryRow(ctx, `SELECT seq, hash FROM consent_chain_heads WHERE workspace_id = $1`, workspaceID).Scan(&headSeq, &headHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows) && seq == 0:
		return 0, nil
	case errors.Is(err, pgx.ErrNoRows):
		return seq, &Break{Seq: seq, Problem: "the chain head is missing"}
	case err != nil:
		return seq, fmt.Errorf("verify ledger: %w", err)
	case headSeq != seq:
		return seq, &Break{Seq: seq + 1, Problem: fmt.Sprintf("missing (deleted?): the chain head says the last event is seq %d", headSeq)}
	case !bytes.Equal(headHash, prev):
		return seq, &Break{Seq: seq, Problem: "the chain head's hash does not match the last event"}
	}
	return seq, nil
}
