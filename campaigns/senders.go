package campaigns

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
)

// Sender is a sender identity of a workspace: who its campaigns come from and the postal address
// every marketing email must show.
type Sender struct {
	ID            int64     `json:"-"`
	WorkspaceID   int64     `json:"-"`
	Name          string    `json:"name"`
	FromAddress   string    `json:"from_address"`
	FromName      string    `json:"from_name"`
	ReplyTo       string    `json:"reply_to"`
	PostalAddress string    `json:"postal_address"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// SenderInput is what SenderCreate and SenderPut store.
type SenderInput struct {
	Name          string `json:"name"`
	FromAddress   string `json:"from_address"`
	FromName      string `json:"from_name"`
	ReplyTo       string `json:"reply_to"`
	PostalAddress string `json:"postal_address"`
}

// Limits on a sender's texts, in characters.
const (
	maxFromName      = 200
	maxPostalAddress = 500
)

// senderNameRE is the form of a sender name (as of list, segment and purpose names).
var senderNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

const senderColumns = `id, workspace_id, name, from_address, from_name, reply_to, postal_address, created_at, updated_at`

func scanSender(row pgx.Row) (Sender, error) {
	var s Sender
	err := row.Scan(&s.ID, &s.WorkspaceID, &s.Name, &s.FromAddress, &s.FromName, &s.ReplyTo, &s.PostalAddress,
		&s.CreatedAt, &s.UpdatedAt)
	return s, err
}

// normalize validates in and returns it with its addresses normalised, or a 422 naming the field.
func (in SenderInput) normalize() (SenderInput, error) {
	if !senderNameRE.MatchString(in.Name) {
		return in, httpx.Invalid("name", "must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	from, err := contacts.NormalizeAddress(in.FromAddress)
	if err != nil {
		return in, httpx.Invalid("from_address", err.Error())
	}
	in.FromAddress = from
	if in.ReplyTo != "" {
		rt, err := contacts.NormalizeAddress(in.ReplyTo)
		if err != nil {
			return in, httpx.Invalid("reply_to", err.Error())
		}
		in.ReplyTo = rt
	}
	// The from name goes into a From: header: one line, no control characters.
	in.FromName = strings.TrimSpace(in.FromName)
	if !printableLine(in.FromName, maxFromName) {
		return in, httpx.Invalid("from_name", fmt.Sprintf("must be at most %d printable characters on one line", maxFromName))
	}
	pa, ok := cleanPostalAddress(in.PostalAddress)
	if !ok {
		return in, httpx.Invalid("postal_address",
			fmt.Sprintf("is required: 1-%d printable characters, lines separated by line breaks", maxPostalAddress))
	}
	in.PostalAddress = pa
	return in, nil
}

// printableLine reports whether s is valid UTF-8 of at most max printable characters (no CR, LF or
// other control or format characters).
func printableLine(s string, max int) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// cleanPostalAddress cleans a postal address: CRLF becomes LF, each line is trimmed, and it must be
// 1-500 printable characters with line breaks as the only control characters.
func cleanPostalAddress(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
		for _, r := range lines[i] {
			if !unicode.IsPrint(r) {
				return "", false
			}
		}
	}
	out := strings.TrimSpace(strings.Join(lines, "\n"))
	n := utf8.RuneCountInString(out)
	return out, n > 0 && n <= maxPostalAddress
}

// ErrSenderExists is returned by SenderCreate when the workspace has a sender of that name.
var ErrSenderExists = errors.New("a sender with this name exists")

// SenderCreate stores a new sender identity of the workspace.
func SenderCreate(ctx context.Context, q db.Querier, workspaceID int64, in SenderInput) (Sender, error) {
	in, err := in.normalize()
	if err != nil {
		return Sender{}, err
	}
	s, err := scanSender(q.QueryRow(ctx, `
		INSERT INTO senders (workspace_id, name, from_address, from_name, reply_to, postal_address)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (workspace_id, name) DO NOTHING
		RETURNING `+senderColumns, workspaceID, in.Name, in.FromAddress, in.FromName, in.ReplyTo, in.PostalAddress))
	if errors.Is(err, pgx.ErrNoRows) {
		return Sender{}, fmt.Errorf("create sender: %w", ErrSenderExists)
	}
	if err != nil {
		return Sender{}, fmt.Errorf("create sender: %w", err)
	}
	return s, nil
}

// SenderPut creates the named sender or replaces its fields; created tells which. A campaign
// reads its sender when each batch is sent, so a change applies to campaigns still sending.
func SenderPut(ctx context.Context, q db.Querier, workspaceID int64, in SenderInput) (s Sender, created bool, err error) {
	in, err = in.normalize()
	if err != nil {
		return Sender{}, false, err
	}
	err = q.QueryRow(ctx, `
		INSERT INTO senders (workspace_id, name, from_address, from_name, reply_to, postal_address)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (workspace_id, name) DO UPDATE SET from_address = EXCLUDED.from_address,
			from_name = EXCLUDED.from_name, reply_to = EXCLUDED.reply_to,
			postal_address = EXCLUDED.postal_address, updated_at = now()
		RETURNING `+senderColumns+`, (xmax = 0)`, workspaceID, in.Name, in.FromAddress, in.FromName, in.ReplyTo, in.PostalAddress).
		Scan(&s.ID, &s.WorkspaceID, &s.Name, &s.FromAddress, &s.FromName, &s.ReplyTo, &s.PostalAddress,
			&s.CreatedAt, &s.UpdatedAt, &created)
	if err != nil {
		return Sender{}, false, fmt.Errorf("put sender: %w", err)
	}
	return s, created, nil
}

// SenderGet returns the workspace's sender by name, or an error wrapping db.ErrNotFound.
func SenderGet(ctx context.Context, q db.Querier, workspaceID int64, name string) (Sender, error) {
	s, err := scanSender(q.QueryRow(ctx, `SELECT `+senderColumns+` FROM senders WHERE workspace_id = $1 AND name = $2`,
		workspaceID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Sender{}, fmt.Errorf("get sender: %w", db.ErrNotFound)
	}
	if err != nil {
		return Sender{}, fmt.Errorf("get sender: %w", err)
	}
	return s, nil
}

// SenderByID returns the workspace's sender by id, or an error wrapping db.ErrNotFound.
func SenderByID(ctx context.Context, q db.Querier, workspaceID, id int64) (Sender, error) {
	s, err := scanSender(q.QueryRow(ctx, `SELECT `+senderColumns+` FROM senders WHERE workspace_id = $1 AND id = $2`,
		workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Sender{}, fmt.Errorf("get sender: %w", db.ErrNotFound)
	}
	if err != nil {
		return Sender{}, fmt.Errorf("get sender: %w", err)
	}
	return s, nil
}

// Senders lists the workspace's senders by name (a workspace has a handful).
func Senders(ctx context.Context, q db.Querier, workspaceID int64) ([]Sender, error) {
	rows, err := q.Query(ctx, `SELECT `+senderColumns+` FROM senders WHERE workspace_id = $1 ORDER BY name`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("list senders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sender, error) { return scanSender(r) })
	if err != nil {
		return nil, fmt.Errorf("list senders: %w", err)
	}
	return out, nil
}
