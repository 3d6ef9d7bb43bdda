package tracking

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Default sizes of the link caches.
const (
	DefaultURLCacheSize  = 50_000
	DefaultLinkCacheSize = 100_000
)

// Link is a stored link of a campaign (a campaign_links row) with its campaign's workspace.
type Link struct {
	ID          int64
	CampaignID  int64
	WorkspaceID int64
	URL         string
}

type urlKey struct {
	campaignID int64
	url        string
}

// Links stores the links of campaigns (campaign_links) and caches them both ways in bounded
// per-process caches: (campaign, URL) to id for rewriting messages, so a campaign costs one
// round trip per distinct URL and process rather than one per message, and id to link for the
// click redirect, so a click costs no query once its link is known. Rows are never changed once
// written, so the caches cannot go stale; a deleted campaign's links fail the redirect's
// campaign check or its query.
type Links struct {
	DB    db.Querier
	byURL *lru[urlKey, int64]
	byID  *lru[int64, Link]
}

// NewLinks returns a Links on q with caches of the given sizes (defaults when 0).
func NewLinks(q db.Querier, urlCache, linkCache int) *Links {
	if urlCache <= 0 {
		urlCache = DefaultURLCacheSize
	}
	if linkCache <= 0 {
		linkCache = DefaultLinkCacheSize
	}
	return &Links{DB: q, byURL: newLRU[urlKey, int64](urlCache), byID: newLRU[int64, Link](linkCache)}
}

// linkUpsertSQL stores each URL of a campaign once and returns every id. The URLs come sorted and
// unique, so two statements storing overlapping sets lock their rows in the same order, and no
// row is affected twice. DO UPDATE (a no-op change) makes RETURNING give the existing rows too.
const linkUpsertSQL = `
	INSERT INTO campaign_links (campaign_id, url)
	SELECT $1, u FROM unnest($2::text[]) AS u
	ON CONFLICT (campaign_id, url) DO UPDATE SET url = EXCLUDED.url
	RETURNING id, url`

// IDs returns the ids of urls (ids[i] for urls[i]) among campaignID's links, storing the new
// ones, in at most one round trip (none when all are cached).
func (l *Links) IDs(ctx context.Context, workspaceID, campaignID int64, urls []string) ([]int64, error) {
	ids := make([]int64, len(urls))
	var missing []string
	for i, u := range urls {
		if id, ok := l.byURL.get(urlKey{campaignID, u}); ok {
			ids[i] = id
			continue
		}
		missing = append(missing, u)
	}
	if len(missing) == 0 {
		return ids, nil
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	rows, err := l.DB.Query(ctx, linkUpsertSQL, campaignID, missing)
	if err != nil {
		return nil, fmt.Errorf("store campaign links: %w", err)
	}
	found := make(map[string]int64, len(missing))
	var id int64
	var u string
	_, err = pgx.ForEachRow(rows, []any{&id, &u}, func() error {
		found[u] = id
		l.byURL.put(urlKey{campaignID, u}, id)
		l.byID.put(id, Link{ID: id, CampaignID: campaignID, WorkspaceID: workspaceID, URL: u})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store campaign links: %w", err)
	}
	for i, u := range urls {
		if ids[i] != 0 {
			continue
		}
		if ids[i] = found[u]; ids[i] == 0 {
			return nil, fmt.Errorf("store campaign links: no id returned for a link of campaign %d", campaignID)
		}
	}
	return ids, nil
}

// linkGetSQL reads a link with its campaign's workspace.
const linkGetSQL = `
	SELECT l.campaign_id, c.workspace_id, l.url
	FROM campaign_links l JOIN campaigns c ON c.id = l.campaign_id
	WHERE l.id = $1`

// Get returns the link with id, from the cache or in one query; db.ErrNotFound if there is none.
func (l *Links) Get(ctx context.Context, id int64) (Link, error) {
	if k, ok := l.byID.get(id); ok {
		return k, nil
	}
	k := Link{ID: id}
	err := l.DB.QueryRow(ctx, linkGetSQL, id).Scan(&k.CampaignID, &k.WorkspaceID, &k.URL)
	if errors.Is(err, pgx.ErrNoRows) {
		return Link{}, db.ErrNotFound
	}
	if err != nil {
		return Link{}, fmt.Errorf("read link %d: %w", id, err)
	}
	l.byID.put(id, k)
	return k, nil
}
