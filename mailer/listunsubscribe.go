package mailer

import (
	"context"
	"errors"
	"fmt"
	"html"
	"mime"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"herald/consent"
	"herald/internal/db"
)

// listInfo is what a marketing message carries so that its recipient can leave: the personal
// unsubscribe link (RFC 8058 one-click target and preference centre), the mailto alternative, and
// the List-Id field (RFC 2919).
type listInfo struct {
	URL    string
	Mailto string
	ListID string
	// oneClick is set when URL is known to be an https link that go-mail's
	// SetListUnsubscribeOneClick accepts and writes back unchanged (see CampaignList.Check), so
	// that compose need not parse and re-serialise it for every recipient.
	oneClick bool
}

// listCacheTTL bounds how long a purpose's id and title and a workspace's name are reused from
// the worker's cache. They are read for every marketing send and almost never change; a renamed
// title reaches List-Id within this time.
const listCacheTTL = time.Minute

type listKey struct {
	workspaceID int64
	purpose     string
}

type listEntry struct {
	purposeID int64
	title     string
	workspace string
	expires   time.Time
}

// listCache is a SendWorker's cache of the purpose and workspace facts marketing headers need.
// Entries are replaced when stale; their number is bounded by the purposes that exist.
type listCache struct {
	m sync.Map // listKey -> listEntry
}

// listInfo builds m's unsubscribe link, mailto address and List-Id on q (for marketing, the
// transaction holding the consent decision).
func (w *SendWorker) listInfo(ctx context.Context, q db.Querier, m *Message) (*listInfo, error) {
	if m.ContactID == nil || m.Purpose == "" {
		return nil, errors.New("list headers: a marketing message needs its contact and purpose")
	}
	if err := checkListConfig(w.BaseURL, w.InboundDomain); err != nil {
		return nil, fmt.Errorf("list headers: %w", err)
	}
	key := listKey{m.WorkspaceID, m.Purpose}
	e, ok := w.lists.m.Load(key)
	entry, _ := e.(listEntry)
	if !ok || time.Now().After(entry.expires) {
		p, err := consent.PurposeGet(ctx, q, m.WorkspaceID, m.Purpose)
		if err != nil {
			return nil, fmt.Errorf("list headers: %w", err)
		}
		entry = listEntry{purposeID: p.ID, title: p.Title, expires: time.Now().Add(listCacheTTL)}
		if err := q.QueryRow(ctx, `SELECT name FROM workspaces WHERE id = $1`, m.WorkspaceID).Scan(&entry.workspace); err != nil {
			return nil, fmt.Errorf("list headers: workspace name: %w", err)
		}
		w.lists.m.Store(key, entry)
	}
	token := w.Consent.Keys.Token(consent.Recipient{WorkspaceID: m.WorkspaceID, ContactID: *m.ContactID, PurposeID: entry.purposeID})
	return newListInfo(w.BaseURL, w.InboundDomain, token, listIDValue(entry.title, m.Purpose, entry.workspace, w.InboundDomain)), nil
}

// checkListConfig refuses a configuration that cannot give marketing mail its unsubscribe
// headers, so that such mail is deferred rather than sent without them.
func checkListConfig(baseURL, inboundDomain string) error {
	if !oneClickBase(baseURL) || inboundDomain == "" {
		return errors.New("marketing needs BaseURL (https) and InboundDomain configured")
	}
	return nil
}

// newListInfo is one recipient's list facts: the links of their unsubscribe token, and listID.
func newListInfo(baseURL, inboundDomain, token, listID string) *listInfo {
	return &listInfo{
		URL:    consent.UnsubscribeURL(baseURL, token),
		Mailto: consent.UnsubscribeMailto(inboundDomain, token),
		ListID: listID,
	}
}

// oneClickBase reports whether base may prefix one-click links: RFC 8058 requires https; plain
// http is accepted for a loopback host only, so that `herald dev` can send marketing mail.
func oneClickBase(base string) bool {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return u.Scheme == "http" && (host == "localhost" || ip != nil && ip.IsLoopback())
}

// maxListTitle bounds the title's bytes in List-Id, keeping the field well under 998 bytes.
const maxListTitle = 200

var listLabelRE = regexp.MustCompile(`[^a-z0-9_-]+`)

// listIDValue is the List-Id field value: the purpose's title as a phrase, then
// <purpose.workspace.domain>. The title is user data: control characters (CR, LF among them)
// become spaces, and it is written as a quoted-string (ASCII) or as base64 encoded-words, whose
// alphabet cannot end the phrase or the field.
func listIDValue(title, purpose, workspace, domain string) string {
	id := "<" + listLabel(purpose) + "." + listLabel(workspace) + "." + domain + ">"
	title = strings.Join(strings.FieldsFunc(strings.ToValidUTF8(title, ""), func(r rune) bool {
		return unicode.IsControl(r) || unicode.IsSpace(r)
	}), " ")
	for len(title) > maxListTitle {
		_, n := utf8.DecodeLastRuneInString(title)
		title = title[:len(title)-n]
	}
	if title == "" {
		return id
	}
	ascii := strings.IndexFunc(title, func(r rune) bool { return r >= utf8.RuneSelf }) < 0
	if ascii {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(title) + `" ` + id
	}
	// Encoded-words are at most 75 bytes each and separated by spaces; fold between them.
	return strings.ReplaceAll(mime.BEncoding.Encode("utf-8", title), "?= =?", "?=\r\n =?") + "\r\n " + id
}

// listLabel makes a purpose or workspace name a safe List-Id label.
func listLabel(s string) string {
	s = strings.Trim(listLabelRE.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if s == "" {
		return "x"
	}
	return s
}

const unsubscribeText = "Unsubscribe or manage your preferences"

const (
	htmlFooterStart = `<p style="font-size:12px;color:#666666;margin-top:24px"><a href="`
	htmlFooterEnd   = `">` + unsubscribeText + `</a></p>`
)

// withHTMLFooter adds the visible unsubscribe link before the last </body>, or at the end. The
// body is copied once, with the footer in place.
func withHTMLFooter(body, link string) string {
	link = html.EscapeString(link)
	at := lastBodyClose(body)
	if at < 0 {
		at = len(body)
	}
	var b strings.Builder
	b.Grow(len(body) + len(htmlFooterStart) + len(link) + len(htmlFooterEnd))
	b.WriteString(body[:at])
	b.WriteString(htmlFooterStart)
	b.WriteString(link)
	b.WriteString(htmlFooterEnd)
	b.WriteString(body[at:])
	return b.String()
}

// lastBodyClose returns the index of the last end tag </body> in s, matched as the regular
// expression (?i)</body\s*> would (any case, white space before the ">"), or -1. It looks back
// from the end of the message instead of running a regular expression over all of it, which
// costs a newsletter-sized render for every recipient.
func lastBodyClose(s string) int {
	for end := len(s); ; {
		i := strings.LastIndex(s[:end], "</")
		if i < 0 {
			return -1
		}
		if isBodyClose(s[i+2:]) {
			return i
		}
		end = i
	}
}

// isBodyClose reports whether s starts with "body" in any case, then \s* (tab, line feed, form
// feed, carriage return, space) and ">".
func isBodyClose(s string) bool {
	if len(s) < 5 || s[0]|0x20 != 'b' || s[1]|0x20 != 'o' || s[2]|0x20 != 'd' || s[3]|0x20 != 'y' {
		return false
	}
	for i := 4; i < len(s); i++ {
		switch s[i] {
		case '>':
			return true
		case '\t', '\n', '\f', '\r', ' ':
		default:
			return false
		}
	}
	return false
}

// withTextFooter adds the visible unsubscribe link after a signature separator.
func withTextFooter(body, link string) string {
	return body + "\n\n--\n" + unsubscribeText + ": " + link + "\n"
}
