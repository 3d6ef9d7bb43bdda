package campaigns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/db"
	"herald/mailer"
	"herald/templates"
)

// Campaign statuses the send worker acts on.
const (
	csScheduled = "scheduled"
	csSending   = "sending"
	csPaused    = "paused"
	csSent      = "sent"
	csCancelled = "cancelled"
)

// DefaultStateTTL is how old a cached campaign status may be: pause and cancel take effect
// within it (plus the message in flight). The issue allows a second; half leaves room.
const DefaultStateTTL = 500 * time.Millisecond

// maxCachedCampaigns bounds the cache; entries idle longer than stateCacheIdle are dropped first.
const (
	maxCachedCampaigns = 256
	stateCacheIdle     = 10 * time.Minute
)

// sendContent is what a send needs of a campaign and never changes once it is scheduled (the
// template version, sender, purpose and throttle are frozen then): loaded once per process.
type sendContent struct {
	ID            int64
	WorkspaceID   int64
	Workspace     string
	Name          string
	Purpose       string
	PurposeID     int64
	Template      *templates.Compiled
	From          string
	FromName      string
	ReplyTo       string
	PostalAddress string
	RatePerSecond int
	DomainRate    int
	List          *mailer.CampaignList
}

// StateCache is a worker process's cache of campaigns: the status, at most TTL old, read by
// every batch between two messages, and the frozen content with its compiled template. It is
// safe for concurrent use; one query refreshes a status however many workers ask.
type StateCache struct {
	DB  db.Querier
	TTL time.Duration // default DefaultStateTTL; at most a second
	// List headers of every campaign message: see mailer.CampaignList.
	BaseURL       string
	InboundDomain string
	DKIM          *mailer.DKIM
	Logger        *slog.Logger

	mu      sync.Mutex
	entries map[int64]*stateEntry
	// final is where each campaign's check for open recipients starts (see sendFinishSQL).
	final finalPrefix
}

type stateEntry struct {
	mu      sync.Mutex // held while loading, so concurrent callers share one query
	status  string
	fetched time.Time
	content *sendContent
	used    time.Time // guarded by StateCache.mu
}

func (s *StateCache) entry(id int64) *stateEntry {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[int64]*stateEntry{}
	}
	e := s.entries[id]
	if e == nil {
		if len(s.entries) >= maxCachedCampaigns {
			s.evictLocked(now)
		}
		e = &stateEntry{}
		s.entries[id] = e
	}
	e.used = now
	return e
}

// evictLocked drops idle entries, or all of them if none is idle (a reload costs a few queries).
func (s *StateCache) evictLocked(now time.Time) {
	for id, e := range s.entries {
		if now.Sub(e.used) > stateCacheIdle {
			delete(s.entries, id)
		}
	}
	if len(s.entries) >= maxCachedCampaigns {
		clear(s.entries)
	}
}

// Status returns the campaign's status, read from the database at most TTL ago.
func (s *StateCache) Status(ctx context.Context, id int64) (string, error) {
	e := s.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	ttl := s.TTL
	if ttl <= 0 || ttl > time.Second {
		ttl = DefaultStateTTL
	}
	if e.status != "" && time.Since(e.fetched) < ttl {
		return e.status, nil
	}
	at := time.Now()
	var status string
	err := s.DB.QueryRow(ctx, `SELECT status FROM campaigns WHERE id = $1`, id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("campaign %d: %w", id, db.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("campaign %d status: %w", id, err)
	}
	e.status, e.fetched = status, at
	return status, nil
}

// Forget drops a campaign's cached status, so that the next Status reads it (after this process
// changed it).
func (s *StateCache) Forget(id int64) {
	e := s.entry(id)
	e.mu.Lock()
	e.status = ""
	e.mu.Unlock()
}

const campaignContentSQL = `
	SELECT c.workspace_id, w.name, c.name, c.purpose, c.template_name, c.template_version,
		c.rate_per_second, c.domain_rate, s.from_address, s.from_name, s.reply_to, s.postal_address
	FROM campaigns c
	JOIN workspaces w ON w.id = c.workspace_id
	JOIN senders s ON s.id = c.sender_id AND s.workspace_id = c.workspace_id
	WHERE c.id = $1`

// content returns the campaign's frozen content, loading and compiling it on first use.
func (s *StateCache) content(ctx context.Context, id int64) (*sendContent, error) {
	e := s.entry(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.content != nil {
		return e.content, nil
	}
	c := &sendContent{ID: id}
	var tplName string
	var tplVersion int
	err := s.DB.QueryRow(ctx, campaignContentSQL, id).Scan(&c.WorkspaceID, &c.Workspace, &c.Name, &c.Purpose,
		&tplName, &tplVersion, &c.RatePerSecond, &c.DomainRate, &c.From, &c.FromName, &c.ReplyTo, &c.PostalAddress)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("campaign %d: %w", id, db.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	p, err := consent.PurposeGet(ctx, s.DB, c.WorkspaceID, c.Purpose)
	if err != nil {
		return nil, fmt.Errorf("campaign %d purpose: %w", id, err)
	}
	c.PurposeID = p.ID
	t, err := templates.Get(ctx, s.DB, c.WorkspaceID, tplName, tplVersion)
	if err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	if c.Template, err = templates.Compile(t); err != nil {
		return nil, fmt.Errorf("campaign %d template: %w", id, err)
	}
	c.List = &mailer.CampaignList{BaseURL: s.BaseURL, InboundDomain: s.InboundDomain, Purpose: c.Purpose,
		PurposeTitle: p.Title, Workspace: c.Workspace, DKIM: s.DKIM, Logger: s.Logger}
	if err := c.List.Check(); err != nil {
		return nil, fmt.Errorf("campaign %d: %w", id, err)
	}
	e.content = c
	return c, nil
}

// finalPrefix remembers, per campaign, an id below which every recipient is final (sent,
// suppressed, failed or cancelled), so that looking for a campaign's open recipients starts there
// instead of at its first recipient: without an index on status (it would keep the send worker's
// updates from being HOT, see migration 007) each look would otherwise read the whole campaign.
//
// It is sound because a final status never changes and a campaign's fan-out commits its pages one
// after the other, so a recipient not yet visible has a higher id than every visible one. It is
// only a hint: a forgotten campaign starts again from 0.
type finalPrefix struct {
	mu sync.Mutex
	m  map[int64]int64
}

// from returns the id from which campaign id may have open recipients.
func (f *finalPrefix) from(id int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[id]
}

// advance records that every recipient of campaign id below to is final.
func (f *finalPrefix) advance(id, to int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) >= maxCachedCampaigns {
		f.m = map[int64]int64{}
	}
	f.m[id] = max(f.m[id], to)
}
