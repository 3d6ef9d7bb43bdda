package tracking

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/consent"
	"herald/internal/httpx"
)

// Event kinds (tracking_events.kind).
const (
	KindOpen  = "open"
	KindClick = "click"
)

// Event is one open or click as a request reported it, before the writer checks and stores it.
type Event struct {
	Kind        string
	WorkspaceID int64
	CampaignID  int64
	RecipientID int64
	LinkID      int64 // clicks only
	At          time.Time
	IP          netip.Addr // whole; truncated when written unless the workspace keeps full IPs
	UserAgent   string     // cleaned (cleanUserAgent)
	Machine     bool
	Reason      string // why Machine (Reason* constants)
}

// Defaults of EventWriter's knobs.
const (
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultBatchSize     = 1000
	DefaultBufferSize    = 16384
	DefaultEnqueueWait   = 50 * time.Millisecond
	// maxHeldClicks bounds the clicks held for burst detection; past it the oldest are written
	// early (a burst across them is then seen only in part).
	maxHeldClicks = 100_000
	flushAttempts = 3
)

// ErrWriterClosed is what Add reports after Close.
var ErrWriterClosed = errors.New("tracking event writer closed")

// ErrBufferFull is what Add reports when the buffer stayed full for EnqueueWait.
var ErrBufferFull = errors.New("tracking event buffer full")

// EventWriter takes events from the request handlers into a bounded in-memory buffer, and one
// goroutine writes them in batches with COPY: every FlushInterval, or as soon as BatchSize events
// are waiting. A handler never waits for the database; when the buffer is full it waits up to
// EnqueueWait for room (backpressure), then drops the event and counts it. Clicks are held for
// MachineRules.BurstWindow before they are written, so that every click of a scanner's burst can
// be flagged. Close writes everything still buffered or held.
//
// Before writing, each batch is checked in a few queries for the whole batch (not per event):
// its recipient rows (campaign, workspace, contact, sent_at), the workspaces' tracking settings
// (consent.Service.TrackingPolicies) and whether each contact allows tracking now
// (consent.Service.TrackingAllowed, one query per workspace in the batch). Events of contacts who
// turned tracking off since the send, or whose recipient row is gone, are not written.
type EventWriter struct {
	DB      *pgxpool.Pool
	Consent *consent.Service
	Metrics *EventMetrics
	Logger  *slog.Logger
	Rules   MachineRules
	// Now is the clock of the click hold (time.Now when nil).
	Now           func() time.Time
	FlushInterval time.Duration // default DefaultFlushInterval
	BatchSize     int           // default DefaultBatchSize
	BufferSize    int           // default DefaultBufferSize
	EnqueueWait   time.Duration // default DefaultEnqueueWait

	once    sync.Once
	mu      sync.RWMutex // guards closed against sends on ch
	closed  bool
	ch      chan Event
	quit    chan struct{}
	stopped chan struct{}
	rules   MachineRules
}

func (w *EventWriter) start() {
	w.once.Do(func() {
		if w.FlushInterval <= 0 {
			w.FlushInterval = DefaultFlushInterval
		}
		if w.BatchSize <= 0 {
			w.BatchSize = DefaultBatchSize
		}
		if w.BufferSize <= 0 {
			w.BufferSize = DefaultBufferSize
		}
		if w.EnqueueWait <= 0 {
			w.EnqueueWait = DefaultEnqueueWait
		}
		w.Logger = httpx.LoggerOrDiscard(w.Logger)
		w.rules = w.Rules.withDefaults()
		w.ch = make(chan Event, w.BufferSize)
		w.quit = make(chan struct{})
		w.stopped = make(chan struct{})
		go w.loop()
	})
}

// Start starts the writer's goroutine (Add also does on first use).
func (w *EventWriter) Start() { w.start() }

func (w *EventWriter) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Add queues an event. It waits only when the buffer is full, up to EnqueueWait or the end of
// ctx; then the event is dropped (counted) and ErrBufferFull returned.
func (w *EventWriter) Add(ctx context.Context, ev Event) error {
	w.start()
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.Metrics.Dropped.WithLabelValues("closed").Inc()
		return ErrWriterClosed
	}
	select {
	case w.ch <- ev:
		return nil
	default:
	}
	t := time.NewTimer(w.EnqueueWait)
	defer t.Stop()
	select {
	case w.ch <- ev:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	w.Metrics.Dropped.WithLabelValues("buffer_full").Inc()
	return ErrBufferFull
}

// Close stops taking events and returns once every event taken is written (or dropped after
// failed retries). Call it after the HTTP server has stopped, before the pool closes.
func (w *EventWriter) Close() {
	w.start()
	w.mu.Lock()
	already := w.closed
	w.closed = true
	w.mu.Unlock()
	if !already {
		close(w.quit)
	}
	<-w.stopped
}

// loop is the writer goroutine.
func (w *EventWriter) loop() {
	defer close(w.stopped)
	tick := time.NewTicker(w.FlushInterval)
	defer tick.Stop()
	det := &burstDetector{rules: w.rules, recent: map[int64][]*Event{}}
	var batch, held []*Event
	take := func(ev Event) {
		e := &ev
		if e.Kind == KindClick {
			det.add(e)
			held = append(held, e)
			return
		}
		batch = append(batch, e)
	}
	// release moves the held clicks whose window has passed (all of them at the end) to batch.
	release := func(all bool) {
		now := w.now()
		k := 0
		for k < len(held) && (all || now.Sub(held[k].At) >= w.rules.BurstWindow || len(held)-k > maxHeldClicks) {
			det.forget(held[k])
			batch = append(batch, held[k])
			k++
		}
		held = slices.Delete(held, 0, k)
	}
	flush := func() {
		for len(batch) > 0 {
			n := min(len(batch), w.BatchSize)
			w.write(batch[:n])
			batch = slices.Delete(batch, 0, n)
		}
	}
	for {
		select {
		case ev := <-w.ch:
			take(ev)
			if len(batch) >= w.BatchSize {
				flush()
			}
		case <-tick.C:
			release(false)
			flush()
		case <-w.quit:
			// Close holds no lock now and no Add can be sending: drain what is buffered.
			for {
				select {
				case ev := <-w.ch:
					take(ev)
					continue
				default:
				}
				break
			}
			release(true)
			flush()
			return
		}
	}
}

// write checks and stores one batch, retrying a failed write a few times.
func (w *EventWriter) write(batch []*Event) {
	var err error
	for attempt := 1; attempt <= flushAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = w.store(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		if attempt < flushAttempts {
			time.Sleep(time.Duration(attempt*attempt) * 100 * time.Millisecond)
		}
	}
	w.Logger.Error("tracking events not written", "events", len(batch), "err", err)
	w.Metrics.Dropped.WithLabelValues("write_failed").Add(float64(len(batch)))
}

// recipientInfo is what the batch check reads of a recipient row.
type recipientInfo struct {
	campaignID, workspaceID, contactID int64
	sentAt                             *time.Time
}

// eventRecipientsSQL reads the recipient rows the events name, with their campaign's workspace.
const eventRecipientsSQL = `
	SELECT r.id, r.campaign_id, c.workspace_id, r.contact_id, r.sent_at
	FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
	WHERE r.id = ANY ($1)`

// eventColumns are the columns COPY writes.
var eventColumns = []string{"workspace_id", "campaign_id", "recipient_id", "kind", "link_id", "at", "ip",
	"user_agent", "machine", "machine_reason"}

// store checks a batch (recipients, tracking still allowed, settings), flags early events and
// writes the rest with COPY. The metrics count only once the COPY succeeded.
func (w *EventWriter) store(ctx context.Context, batch []*Event) error {
	ids := make([]int64, 0, len(batch))
	for _, e := range batch {
		ids = append(ids, e.RecipientID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	info := make(map[int64]recipientInfo, len(ids))
	rows, err := w.DB.Query(ctx, eventRecipientsSQL, ids)
	if err != nil {
		return fmt.Errorf("write tracking events: recipients: %w", err)
	}
	var rid int64
	var ri recipientInfo
	_, err = pgx.ForEachRow(rows, []any{&rid, &ri.campaignID, &ri.workspaceID, &ri.contactID, &ri.sentAt}, func() error {
		info[rid] = ri
		return nil
	})
	if err != nil {
		return fmt.Errorf("write tracking events: recipients: %w", err)
	}
	// Contacts per workspace, for the tracking decision now.
	contactsOf := map[int64][]int64{}
	for _, r := range info {
		contactsOf[r.workspaceID] = append(contactsOf[r.workspaceID], r.contactID)
	}
	workspaces := make([]int64, 0, len(contactsOf))
	allowed := map[[2]int64]bool{} // (workspace, contact) -> allowed
	for ws, cs := range contactsOf {
		workspaces = append(workspaces, ws)
		slices.Sort(cs)
		cs = slices.Compact(cs)
		ok, err := w.Consent.TrackingAllowed(ctx, w.DB, ws, cs)
		if err != nil {
			return fmt.Errorf("write tracking events: %w", err)
		}
		for i, c := range cs {
			allowed[[2]int64{ws, c}] = ok[i]
		}
	}
	policies, err := w.Consent.TrackingPolicies(ctx, w.DB, workspaces)
	if err != nil {
		return fmt.Errorf("write tracking events: %w", err)
	}

	out := make([][]any, 0, len(batch))
	kept := make([]*Event, 0, len(batch))
	var unknown, refused int
	for _, e := range batch {
		r, ok := info[e.RecipientID]
		if !ok || r.campaignID != e.CampaignID || r.workspaceID != e.WorkspaceID {
			unknown++
			continue
		}
		if !allowed[[2]int64{r.workspaceID, r.contactID}] {
			refused++
			continue
		}
		machine, reason := e.Machine, e.Reason
		if !machine && r.sentAt != nil && e.At.Sub(*r.sentAt) < w.rules.Early {
			machine, reason = true, ReasonEarly
		}
		var link any
		if e.Kind == KindClick {
			link = e.LinkID
		}
		out = append(out, []any{e.WorkspaceID, e.CampaignID, e.RecipientID, e.Kind, link, e.At,
			storedIP(e.IP, policies[r.workspaceID].FullIP), e.UserAgent, machine, reason})
		kept = append(kept, e)
	}
	if len(out) > 0 {
		if _, err := w.DB.CopyFrom(ctx, pgx.Identifier{"tracking_events"}, eventColumns, pgx.CopyFromRows(out)); err != nil {
			return fmt.Errorf("write tracking events: copy: %w", err)
		}
	}
	for i, e := range kept {
		w.Metrics.Events.WithLabelValues(e.Kind, fmt.Sprint(out[i][8].(bool))).Inc()
	}
	if unknown > 0 {
		w.Metrics.Discarded.WithLabelValues("unknown_recipient").Add(float64(unknown))
	}
	if refused > 0 {
		w.Metrics.Discarded.WithLabelValues("not_allowed").Add(float64(refused))
	}
	return nil
}
