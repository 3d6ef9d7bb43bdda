package tracking

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"herald/consent"
)

// Tracker adds open and click tracking to campaign messages: it implements campaigns.Tracker,
// which the campaign send worker calls for each message of a recipient who allows tracking (the
// batch's consent decision says who: consent.Decision.Track).
type Tracker struct {
	Consent *consent.Service
	Links   *Links
	// BaseURL is Herald's public URL (HERALD_BASE_URL): the tracking URLs start with it, and
	// links under it are Herald's own and never rewritten.
	BaseURL string
}

// Instrument returns the recipient's HTML with each tracked link's href replaced by its click URL
// and the open pixel added before </body> (at the end without one); every other byte is kept.
// Tracked links are the href values of <a> and <area> holding an absolute http(s) URL, except
// Herald's own: the link placeholders (templates.Placeholder*, under .herald.invalid, replaced
// after this call) and anything under BaseURL. mailto:, tel:, fragments and relative URLs stay
// as they are. The stored URL is the attribute's unescaped value; each new campaign URL costs one
// round trip for the whole message, then none from the cache.
func (t *Tracker) Instrument(ctx context.Context, workspaceID, campaignID, recipientID int64, doc string) (string, error) {
	edits, bodyEnd := scan(doc, t.isOwn)
	keys := t.Consent.Keys
	var targets []string
	if len(edits) > 0 {
		urls := make([]string, len(edits))
		for i, e := range edits {
			urls[i] = e.url
		}
		ids, err := t.Links.IDs(ctx, workspaceID, campaignID, urls)
		if err != nil {
			return "", fmt.Errorf("instrument message: %w", err)
		}
		targets = make([]string, len(edits))
		for i, id := range ids {
			targets[i] = ClickURL(t.BaseURL, ClickToken(keys, ClickRef{WorkspaceID: workspaceID, CampaignID: campaignID,
				RecipientID: recipientID, LinkID: id}))
		}
	}
	pixel := pixelTag(OpenURL(t.BaseURL, OpenToken(keys, OpenRef{WorkspaceID: workspaceID, CampaignID: campaignID, RecipientID: recipientID})))
	var b strings.Builder
	b.Grow(len(doc) + len(pixel) + len(edits)*(len(t.BaseURL)+48))
	rewrite(&b, doc, edits, targets, bodyEnd, pixel)
	return b.String(), nil
}

// isOwn reports whether u is one of Herald's links: a link placeholder (.herald.invalid) or a
// URL under BaseURL (the recipient's pages, the view-online page, tracking URLs).
func (t *Tracker) isOwn(u *url.URL) bool {
	host := strings.ToLower(u.Hostname())
	if host == "herald.invalid" || strings.HasSuffix(host, ".herald.invalid") {
		return true
	}
	base, err := url.Parse(strings.TrimRight(t.BaseURL, "/"))
	if err != nil || base.Host == "" {
		return false
	}
	if !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) {
		return false
	}
	return base.Path == "" || u.Path == base.Path || strings.HasPrefix(u.Path, base.Path+"/")
}
