package tracking

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
)

// ARF feedback types that are complaints about the message (RFC 5965 section 7.3).
var complaintTypes = map[string]bool{"abuse": true, "fraud": true, "virus": true, "other": true}

// parseFeedbackReport reads RFC 5965's fields; Feedback-Type abuse, fraud, virus or other is a
// complaint, anything else (auth-failure, not-spam) none.
func parseFeedbackReport(b *Bounce, body io.Reader) error {
	h, err := textproto.NewReader(bufio.NewReader(body)).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("feedback-report fields: %w", err)
	}
	ft := strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))
	if ft == "" {
		return errors.New("feedback-report without Feedback-Type")
	}
	b.Detail = "feedback-type " + ft
	if complaintTypes[ft] {
		b.Kind = KindComplaint
	}
	return nil
}
