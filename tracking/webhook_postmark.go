package tracking

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"herald/internal/httpx"
)

// postmarkEvent is the part of a Postmark bounce or spam complaint webhook Herald reads.
type postmarkEvent struct {
	RecordType  string    `json:"RecordType"`
	ID          int64     `json:"ID"`
	Type        string    `json:"Type"`
	Email       string    `json:"Email"`
	Description string    `json:"Description"`
	Details     string    `json:"Details"`
	BouncedAt   time.Time `json:"BouncedAt"`
}

// Postmark bounce types that are hard and soft bounces; other types (auto-responders,
// unsubscribe requests, challenge verifications, ...) are ignored.
var (
	postmarkHard = map[string]bool{"HardBounce": true, "BadEmailAddress": true, "ManuallyDeactivated": true}
	postmarkSoft = map[string]bool{"SoftBounce": true, "Transient": true, "DnsError": true, "Blocked": true,
		"Unknown": true, "DMARCPolicy": true}
)

// postmark handles POST /hooks/postmark/{key}: HTTP basic auth with the workspace's user and
// password (compared in constant time); RecordType Bounce (by Type) and SpamComplaint are
// recorded. Postmark's MessageID is its own id, so the report is matched by address.
func (h *WebhookHandler) postmark(w http.ResponseWriter, r *http.Request) error {
	s, err := h.hookWorkspace(r)
	if err != nil {
		return err
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="herald postmark webhook"`)
		return unauthorized("basic authentication required")
	}
	if !s.postmarkAuthOK(user, pass) {
		return forbidden("credentials refused")
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var e postmarkEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return httpx.BadRequest("body is not a Postmark webhook JSON object")
	}
	rep := Report{WorkspaceID: s.WorkspaceID, Source: SourcePostmark, Address: e.Email, Detail: e.Type + ": " + e.Details, At: e.BouncedAt}
	if e.ID != 0 {
		rep.ProviderEventID = e.RecordType + "/" + strconv.FormatInt(e.ID, 10)
	}
	switch {
	case e.RecordType == "SpamComplaint":
		rep.Kind = KindComplaint
	case e.RecordType == "Bounce" && postmarkHard[e.Type]:
		rep.Kind = KindHardBounce
	case e.RecordType == "Bounce" && postmarkSoft[e.Type]:
		rep.Kind = KindSoftBounce
	case e.RecordType == "":
		return httpx.BadRequest("RecordType is missing")
	}
	if rep.Kind == "" || e.Email == "" {
		writeProcessed(w, 0, 0, 0, 1)
		return nil
	}
	recorded, dups, unmatched, err := h.processAll(r.Context(), []Report{rep})
	if err != nil {
		return err
	}
	writeProcessed(w, recorded, dups, unmatched, 0)
	return nil
}
