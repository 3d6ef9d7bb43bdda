package tracking

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/httpx"
)

// pixelGIF is a transparent 1x1 GIF (GIF89a, 43 bytes).
var pixelGIF = [43]byte{
	'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, // header, 1x1, global colour table of 2
	0, 0, 0, 0xff, 0xff, 0xff, // black, white
	0x21, 0xf9, 4, 1, 0, 0, 0, 0, // graphic control extension: colour 0 transparent
	0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, // image descriptor 1x1
	2, 2, 0x44, 1, 0, // LZW min code size 2, one block: the single pixel
	0x3b, // trailer
}

// pixelLength is the Content-Length of the pixel.
var pixelLength = strconv.Itoa(len(pixelGIF))

// TrackHandler serves the tracking URLs. Both are public: the signed token is the only credential.
//
//   - GET|HEAD /t/o/{token}: always 200 with the pixel and no-store headers, whatever the token,
//     so a pixel never shows as broken; a valid open token records an open.
//   - GET|HEAD /t/c/{token}: a valid click token whose link belongs to the token's campaign and
//     workspace records a click and answers 302 to the stored URL, read from campaign_links by the
//     token's link id and never from the token or the query string (no open redirect). Anything
//     else is a small 404 page.
//
// Neither waits for the database per event: events go to the EventWriter's buffer.
type TrackHandler struct {
	Keys   *consent.Keys
	Links  *Links
	Events *EventWriter
	Logger *slog.Logger
	// Now is the clock of the events (time.Now when nil).
	Now func() time.Time
}

// Routes mounts the tracking URLs at the root of r.
func (h *TrackHandler) Routes(r chi.Router) {
	r.Get("/t/o/{token}", h.open)
	r.Head("/t/o/{token}", h.open)
	r.Get("/t/c/{token}", h.click)
	r.Head("/t/c/{token}", h.click)
}

func (h *TrackHandler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *TrackHandler) event(r *http.Request, kind string, ws, campaign, recipient, link int64) Event {
	ip := remoteIP(r)
	ua := cleanUserAgent(r.UserAgent())
	reason := classifyRequest(kind, r.Method == http.MethodHead, ua, ip)
	return Event{Kind: kind, WorkspaceID: ws, CampaignID: campaign, RecipientID: recipient, LinkID: link,
		At: h.now(), IP: ip, UserAgent: ua, Machine: reason != "", Reason: reason}
}

func (h *TrackHandler) open(w http.ResponseWriter, r *http.Request) {
	if ref, err := ParseOpenToken(h.Keys, chi.URLParam(r, "token")); err == nil {
		// A dropped event is counted by the writer; the pixel is served either way.
		_ = h.Events.Add(r.Context(), h.event(r, KindOpen, ref.WorkspaceID, ref.CampaignID, ref.RecipientID, 0))
	}
	hd := w.Header()
	setNoStore(hd)
	hd.Set("Content-Type", "image/gif")
	hd.Set("Content-Length", pixelLength)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(pixelGIF[:])
	}
}

func (h *TrackHandler) click(w http.ResponseWriter, r *http.Request) {
	ref, err := ParseClickToken(h.Keys, chi.URLParam(r, "token"))
	if err != nil {
		h.notFound(w, r)
		return
	}
	link, err := h.Links.Get(r.Context(), ref.LinkID)
	switch {
	case errors.Is(err, db.ErrNotFound):
		h.notFound(w, r)
		return
	case err != nil:
		httpx.LoggerOrDiscard(h.Logger).ErrorContext(r.Context(), "tracking click: link lookup", "link_id", ref.LinkID, "err", err)
		h.page(w, r, http.StatusServiceUnavailable, "Please try again", "This link cannot be followed right now. Please try again in a minute.")
		return
	case link.CampaignID != ref.CampaignID || link.WorkspaceID != ref.WorkspaceID || !redirectable(link.URL):
		h.notFound(w, r)
		return
	}
	_ = h.Events.Add(r.Context(), h.event(r, KindClick, ref.WorkspaceID, ref.CampaignID, ref.RecipientID, ref.LinkID))
	hd := w.Header()
	setNoStore(hd)
	hd.Set("Location", link.URL)
	w.WriteHeader(http.StatusFound)
}

// redirectable checks a stored URL once more before it becomes a Location header: an absolute
// http(s) URL without control characters (Instrument stores nothing else).
func redirectable(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" // Parse lower-cases the scheme
}

// setNoStore sets the headers every tracking answer carries: never cached (each open and click
// reaches Herald), no Referer to the target, not indexed.
func setNoStore(h http.Header) {
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, private, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "0")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Robots-Tag", "noindex, nofollow")
	h.Set("X-Content-Type-Options", "nosniff")
}

func (h *TrackHandler) notFound(w http.ResponseWriter, r *http.Request) {
	h.page(w, r, http.StatusNotFound, "Link not found",
		"This link is not valid. Please use the link from the email exactly as you received it.")
}

// page writes a small HTML page (title and message are fixed text, never data), without scripts.
func (h *TrackHandler) page(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	hd := w.Header()
	setNoStore(hd)
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>`+title+
			`</title></head><body><h1>`+title+`</h1><p>`+msg+`</p></body></html>`)
	}
}
