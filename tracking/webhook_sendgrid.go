package tracking

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"herald/internal/httpx"
)

// SendGrid's signature headers (Signed Event Webhook): an ECDSA P-256 signature, base64 of its
// ASN.1 form, over the timestamp header followed by the raw body.
const (
	sendGridSigHeader = "X-Twilio-Email-Event-Webhook-Signature"
	sendGridTSHeader  = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// sendGridEvent is the part of a SendGrid event Herald reads.
type sendGridEvent struct {
	Email     string `json:"email"`
	Timestamp int64  `json:"timestamp"`
	Event     string `json:"event"`
	Type      string `json:"type"`   // bounce events: "bounce" or "blocked"
	Reason    string `json:"reason"` // bounce and dropped events
	Status    string `json:"status"` // bounce events: the enhanced status code
	SMTPID    string `json:"smtp-id"`
	EventID   string `json:"sg_event_id"`
}

// sendGrid handles POST /hooks/sendgrid/{key}: the signature must verify under the workspace's
// key; bounce (type bounce hard, blocked soft), dropped for "Bounced Address" (hard) and
// spamreport (complaint) are recorded, other events ignored.
func (h *WebhookHandler) sendGrid(w http.ResponseWriter, r *http.Request) error {
	s, err := h.hookWorkspace(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	if s.SendGridPublicKey == "" {
		return forbidden("SendGrid webhook is not configured for this workspace")
	}
	key, err := sendGridKey(s.SendGridPublicKey)
	if err != nil {
		return forbidden("SendGrid webhook key is not usable; set it again")
	}
	if !verifySendGrid(key, r.Header.Get(sendGridTSHeader), r.Header.Get(sendGridSigHeader), body) {
		return unauthorized("signature does not verify")
	}
	var events []sendGridEvent
	if err := json.Unmarshal(body, &events); err != nil {
		return httpx.BadRequest("body is not a JSON array of SendGrid events")
	}
	if len(events) > maxEventsPerPost {
		return httpx.NewProblem(http.StatusRequestEntityTooLarge, "too many events in one request")
	}
	var reports []Report
	ignored := 0
	for _, e := range events {
		rep, ok := sendGridReport(s.WorkspaceID, e)
		if !ok {
			ignored++
			continue
		}
		reports = append(reports, rep)
	}
	recorded, dups, unmatched, err := h.processAll(r.Context(), reports)
	if err != nil {
		return err
	}
	writeProcessed(w, recorded, dups, unmatched, ignored)
	return nil
}

// verifySendGrid checks the signature over timestamp+body.
func verifySendGrid(key *ecdsa.PublicKey, ts, sig string, body []byte) bool {
	if ts == "" || sig == "" || len(ts) > 32 {
		return false
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write(body)
	return ecdsa.VerifyASN1(key, h.Sum(nil), der)
}

func sendGridReport(workspaceID int64, e sendGridEvent) (Report, bool) {
	rep := Report{WorkspaceID: workspaceID, Source: SourceSendGrid, MessageID: e.SMTPID, Address: e.Email,
		Status: e.Status, Detail: e.Reason, ProviderEventID: e.EventID}
	if e.Timestamp > 0 {
		rep.At = time.Unix(e.Timestamp, 0).UTC()
	}
	switch {
	case e.Event == "bounce" && e.Type == "blocked":
		rep.Kind = KindSoftBounce
	case e.Event == "bounce":
		rep.Kind = KindHardBounce
	case e.Event == "dropped" && strings.EqualFold(strings.TrimSpace(e.Reason), "Bounced Address"):
		rep.Kind = KindHardBounce
	case e.Event == "spamreport":
		rep.Kind = KindComplaint
	default:
		return rep, false // deferred, delivered, opens, clicks, other drops
	}
	if e.Email == "" && e.SMTPID == "" {
		return rep, false
	}
	return rep, true
}
