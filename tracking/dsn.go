package tracking

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
)

// Limits of the report parser.
const (
	maxReportParts   = 10       // MIME parts of a multipart/report read
	maxStatusBlocks  = 50       // per-recipient blocks of a delivery-status part read
	maxPlainScan     = 64 << 10 // bytes of a plain bounce searched for a status code
	maxPartBytesRead = 1 << 20  // bytes of one part read
)

// Bounce is what a report delivered to a bounce address says.
type Bounce struct {
	// Kind is KindHardBounce, KindSoftBounce or KindComplaint; empty when the report is neither
	// (a DSN of a successful delivery, an ARF report of another type).
	Kind string
	// Source is SourceDSN (delivery reports and plain bounces) or SourceARF (feedback reports).
	Source string
	// Status is the enhanced status code (5.1.1) of a bounce when there is one.
	Status string
	// Detail is the diagnostic (Diagnostic-Code, or the ARF Feedback-Type).
	Detail string
	// OriginalMessageID is the Message-ID of the message the report is about, when it quotes it.
	OriginalMessageID string
	// ReportID is the report's own Message-ID: a report delivered twice has the same one.
	ReportID string
}

// statusRE matches an RFC 3463 enhanced status code on its own; statusInTextRE finds one in text.
var (
	statusRE       = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)
	statusInTextRE = regexp.MustCompile(`(?:^|[^\d.])([245]\.\d{1,3}\.\d{1,3})(?:$|[^\d.])`)
)

// errNotMail is returned for input that is not an RFC 5322 message at all.
var errNotMail = errors.New("not a mail message")

// ParseReport reads a message sent to a bounce address: a delivery status notification (RFC
// 3464: multipart/report; report-type=delivery-status), a feedback report (RFC 5965:
// report-type=feedback-report), or a plain bounce without a DSN, which is a soft bounce unless
// its text holds a clear 5.x.x status code.
func ParseReport(r io.Reader) (Bounce, error) {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return Bounce{}, fmt.Errorf("%w: %v", errNotMail, err)
	}
	b := Bounce{Source: SourceDSN, ReportID: strings.TrimSpace(msg.Header.Get("Message-Id"))}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["boundary"] == "" {
		return plainBounce(b, msg.Header, msg.Body)
	}
	switch strings.ToLower(params["report-type"]) {
	case "delivery-status", "global-delivery-status":
	case "feedback-report":
		b.Source = SourceARF
	default:
		return plainBounce(b, msg.Header, msg.Body)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	found := false
	for i := 0; i < maxReportParts; i++ {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return b, fmt.Errorf("read report part: %w", err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		body := partBody(p)
		switch pt {
		case "message/delivery-status", "message/global-delivery-status":
			if b.Source == SourceDSN {
				found = true
				if err := parseDeliveryStatus(&b, body); err != nil {
					return b, err
				}
			}
		case "message/feedback-report":
			if b.Source == SourceARF {
				found = true
				if err := parseFeedbackReport(&b, body); err != nil {
					return b, err
				}
			}
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			if id := originalMessageID(body); id != "" {
				b.OriginalMessageID = id
			}
		}
	}
	if !found {
		return b, errors.New("report without its machine-readable part")
	}
	return b, nil
}

// partBody returns a part's decoded body (quoted-printable and base64; NextRawPart decodes
// neither), at most maxPartBytesRead of it.
func partBody(p *multipart.Part) io.Reader {
	var r io.Reader = io.LimitReader(p, maxPartBytesRead)
	switch strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, base64Clean{r})
	}
	return r
}

// base64Clean drops the line breaks and spaces of a base64 body.
type base64Clean struct{ r io.Reader }

func (c base64Clean) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	j := 0
	for _, b := range p[:n] {
		if b != '\r' && b != '\n' && b != ' ' && b != '\t' {
			p[j] = b
			j++
		}
	}
	return j, err
}

// parseDeliveryStatus reads RFC 3464's fields: a per-message block, then a block per recipient
// with Action, Status and Diagnostic-Code. The worst recipient decides: a failed delivery with a
// 5.x.x status is a hard bounce, a 4.x.x status (failed or delayed) a soft one; delivered,
// relayed and expanded are no bounce.
func parseDeliveryStatus(b *Bounce, body io.Reader) error {
	tr := textproto.NewReader(bufio.NewReader(body))
	if _, err := tr.ReadMIMEHeader(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("delivery-status per-message fields: %w", err)
	}
	for i := 0; i < maxStatusBlocks; i++ {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			applyRecipient(b, h)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delivery-status per-recipient fields: %w", err)
		}
	}
	return nil
}

func applyRecipient(b *Bounce, h textproto.MIMEHeader) {
	action := strings.ToLower(strings.TrimSpace(h.Get("Action")))
	status := strings.TrimSpace(h.Get("Status"))
	if i := strings.IndexAny(status, " \t("); i >= 0 {
		status = status[:i] // a comment after the code
	}
	if !statusRE.MatchString(status) {
		status = ""
	}
	diag := strings.TrimSpace(h.Get("Diagnostic-Code"))
	if status == "" {
		if m := statusInTextRE.FindStringSubmatch(diag); m != nil {
			status = m[1]
		}
	}
	var kind string
	switch {
	case action == "failed" && strings.HasPrefix(status, "5."):
		kind = KindHardBounce
	case action == "failed" || action == "delayed":
		kind = KindSoftBounce // a failure without a permanent code, or a delay
	default:
		return
	}
	if b.Kind == KindHardBounce && kind == KindSoftBounce {
		return
	}
	b.Kind, b.Status, b.Detail = kind, status, diag
}

// originalMessageID reads the Message-ID from the headers of a returned message.
func originalMessageID(body io.Reader) string {
	h, err := textproto.NewReader(bufio.NewReader(body)).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) && len(h) == 0 {
		return ""
	}
	return strings.TrimSpace(h.Get("Message-Id"))
}

// plainBounce reads a bounce without a DSN: soft, unless a 5.x.x code shows in its subject or
// text (the first maxPlainScan bytes).
func plainBounce(b Bounce, h mail.Header, body io.Reader) (Bounce, error) {
	text, err := io.ReadAll(io.LimitReader(body, maxPlainScan))
	if err != nil {
		return b, fmt.Errorf("read bounce: %w", err)
	}
	b.Kind = KindSoftBounce
	for _, s := range [][]byte{[]byte(h.Get("Subject")), text} {
		for _, line := range bytes.Split(s, []byte("\n")) {
			m := statusInTextRE.FindSubmatch(line)
			if m == nil {
				continue
			}
			if code := string(m[1]); strings.HasPrefix(code, "5.") {
				b.Kind, b.Status, b.Detail = KindHardBounce, code, strings.TrimSpace(string(line))
				return b, nil
			} else if strings.HasPrefix(code, "4.") && b.Status == "" {
				b.Status, b.Detail = code, strings.TrimSpace(string(line))
			}
		}
	}
	return b, nil
}
