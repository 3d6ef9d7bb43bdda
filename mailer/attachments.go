package mailer

import (
	"bytes"
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	gomail "github.com/wneessen/go-mail"

	"herald/internal/db"
)

// Attachment is a file attached to a message, stored in message_attachments with the message.
// Only code paths of Herald's own attach files (the preference centre's export): the public API
// takes none.
type Attachment struct {
	Filename    string
	ContentType string
	Data        []byte
}

// maxAttachmentBytes is the largest attachment stored (the table's CHECK says the same).
const maxAttachmentBytes = 10 << 20

var (
	attachmentNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	contentTypeRE    = regexp.MustCompile(`^[a-z]+/[a-z0-9.+-]+$`)
)

// validate refuses a file name or content type that could break out of its MIME header, and
// oversized content.
func (a Attachment) validate() error {
	switch {
	case !attachmentNameRE.MatchString(a.Filename):
		return fmt.Errorf("attachment: file name %q: want 1-100 letters, digits, '.', '_' or '-'", a.Filename)
	case !contentTypeRE.MatchString(a.ContentType):
		return fmt.Errorf("attachment %s: content type %q is not type/subtype", a.Filename, a.ContentType)
	case len(a.Data) > maxAttachmentBytes:
		return fmt.Errorf("attachment %s: %d bytes exceeds %d", a.Filename, len(a.Data), maxAttachmentBytes)
	}
	return nil
}

// AttachmentsInsert stores the attachments of message messageID in tx, in order.
func AttachmentsInsert(ctx context.Context, tx pgx.Tx, messageID string, atts []Attachment) error {
	b := &pgx.Batch{}
	for i, a := range atts {
		if err := a.validate(); err != nil {
			return err
		}
		b.Queue(`INSERT INTO message_attachments (message_id, position, filename, content_type, content)
			VALUES ($1, $2, $3, $4, $5)`, messageID, i, a.Filename, a.ContentType, a.Data)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert attachments: %w", err)
	}
	return nil
}

// attachmentsGet returns the attachments of message id, in order.
func attachmentsGet(ctx context.Context, q db.Querier, id string) ([]Attachment, error) {
	rows, err := q.Query(ctx, `SELECT filename, content_type, content FROM message_attachments
		WHERE message_id = $1 ORDER BY position`, id)
	if err != nil {
		return nil, fmt.Errorf("read attachments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Attachment, error) {
		var a Attachment
		err := r.Scan(&a.Filename, &a.ContentType, &a.Data)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read attachments: %w", err)
	}
	return out, nil
}

// attachAll adds atts to msg as attachments (multipart/mixed, base64), before it is signed.
func attachAll(msg *gomail.Msg, atts []Attachment) error {
	for _, a := range atts {
		if err := a.validate(); err != nil {
			return err
		}
		msg.AttachReadSeeker(a.Filename, bytes.NewReader(a.Data), gomail.WithFileContentType(gomail.ContentType(a.ContentType)))
	}
	return nil
}
