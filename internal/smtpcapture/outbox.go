package smtpcapture

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"herald/internal/httpx"
)

// outboxEntry is one message in the outbox JSON listing.
type outboxEntry struct {
	ID         int64     `json:"id"`
	ReceivedAt time.Time `json:"received_at"`
	From       string    `json:"from"`
	To         []string  `json:"to"`
	Subject    string    `json:"subject"`
	MessageID  string    `json:"message_id"`
	Size       int       `json:"size"`
}

// OutboxHandler serves the captured messages, newest first, wherever it is mounted (with or
// without the prefix stripped):
//   - GET {prefix}: an HTML table; with ?format=json or Accept: application/json, a JSON array
//     of {id, received_at, from, to, subject, message_id, size};
//   - GET {prefix}/{id} or {prefix}?id={id}: the raw message as text/plain, 404 if not kept.
func (s *Server) OutboxHandler() http.Handler {
	return httpx.Handler(s.log, s.serveOutbox)
}

func (s *Server) serveOutbox(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return httpx.NewProblem(http.StatusMethodNotAllowed, "the outbox is read-only")
	}
	id, ok, err := outboxID(r)
	if err != nil {
		return err
	}
	if ok {
		return s.serveRaw(w, id)
	}
	msgs := s.Messages()
	slices.Reverse(msgs)
	if wantsJSON(r) {
		entries := make([]outboxEntry, 0, len(msgs))
		for _, m := range msgs {
			entries = append(entries, outboxEntry{ID: m.ID, ReceivedAt: m.ReceivedAt, From: m.From,
				To: m.To, Subject: m.Subject, MessageID: m.MessageID, Size: m.Size()})
		}
		httpx.WriteJSON(w, http.StatusOK, entries)
		return nil
	}
	var page bytes.Buffer
	if err := outboxPage.Execute(&page, outboxData{Messages: msgs, Total: s.Count()}); err != nil {
		return fmt.Errorf("render outbox: %w", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = page.WriteTo(w)
	return nil
}

// outboxID finds a message ID in ?id= or in the last path segment.
func outboxID(r *http.Request) (int64, bool, error) {
	if q := r.URL.Query().Get("id"); q != "" {
		id, err := strconv.ParseInt(q, 10, 64)
		if err != nil || id <= 0 {
			return 0, false, httpx.Invalid("id", "must be a positive integer")
		}
		return id, true, nil
	}
	id, err := strconv.ParseInt(path.Base(r.URL.Path), 10, 64)
	if err != nil || id <= 0 {
		return 0, false, nil // the listing itself
	}
	return id, true, nil
}

func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// serveRaw writes one kept message exactly as received.
func (s *Server) serveRaw(w http.ResponseWriter, id int64) error {
	m, ok := s.store.get(id)
	if !ok {
		return httpx.NotFound("no such message in the outbox (it may have been dropped from memory)")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Content-Length", strconv.Itoa(len(m.Raw)))
	_, _ = w.Write(m.Raw)
	return nil
}

type outboxData struct {
	Messages []Message
	Total    int64
}

// outboxPage is html/template, so every subject, address and header is escaped.
var outboxPage = template.Must(template.New("outbox").Funcs(template.FuncMap{
	"join": strings.Join,
	"when": func(t time.Time) string { return t.Format("2006-01-02 15:04:05") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald outbox</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
code{font-size:12px}</style></head><body>
<h1>Outbox</h1>
<p>{{len .Messages}} kept, {{.Total}} captured in total. <a href="?format=json">JSON</a></p>
{{if .Messages}}<table>
<thead><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th><th>Message-ID</th><th>Size</th><th></th></tr></thead>
<tbody>{{range .Messages}}
<tr><td>{{when .ReceivedAt}}</td><td>{{.From}}</td><td>{{join .To ", "}}</td><td>{{.Subject}}</td><td><code>{{.MessageID}}</code></td><td>{{.Size}}</td><td><a href="?id={{.ID}}">raw</a></td></tr>{{end}}
</tbody></table>{{else}}<p>No messages yet.</p>{{end}}
</body></html>
`))
