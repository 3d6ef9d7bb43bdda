package campaigns_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/queue"
	"herald/internal/smtpcapture"
	"herald/templates"
)

// procHarness runs `herald work` processes against a database of the test's own and an
// in-process SMTP server that records, per envelope recipient, the Message-IDs it accepted.
type procHarness struct {
	t        testing.TB
	bin      string
	url      string
	pool     *pgxpool.Pool
	river    *river.Client[pgx.Tx]
	smtp     *smtpcapture.Server
	ws       int64
	campaign int64

	mu      sync.Mutex
	got     map[string][]string // address -> Message-IDs, in arrival order
	total   int
	onNth   int           // when total reaches onNth, nth is closed
	nth     chan struct{} // closed at the onNth message
	procs   []*workerProc
	baseEnv map[string]string
	batches int // recipients per batch job
}

type workerProc struct {
	addr   string // its HTTP (ops) address
	cmd    *exec.Cmd
	stderr *strings.Builder
	done   chan error
}

// buildHeraldBinary builds bin/herald of this checkout into a temporary directory.
func buildHeraldBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/herald")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func procFreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procSetup prepares the harness; with countOnly the SMTP server only counts messages (a cheap
// sink for benchmarks) instead of recording them per address.
func procSetup(t testing.TB, env map[string]string, countOnly bool) *procHarness {
	t.Helper()
	ctx := context.Background()
	h := &procHarness{t: t, bin: buildHeraldBinary(t), url: dbtest.NewDB(t), got: map[string][]string{}, nth: make(chan struct{})}
	pool, err := db.Open(ctx, h.url, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h.pool = pool
	if h.river, err = queue.New(pool, queue.Options{}); err != nil {
		t.Fatal(err)
	}
	hook := h.record
	if countOnly {
		hook = nil
	}
	h.smtp, err = smtpcapture.Start(smtpcapture.Options{Keep: -1, DataHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.smtp.Close() })
	h.baseEnv = map[string]string{
		"DATABASE_URL": h.url, "HERALD_SMTP_URL": "smtp://" + h.smtp.Addr() + "?tls=none",
		"HERALD_BASE_URL": "https://herald.example", "HERALD_LOG_LEVEL": "warn",
		"HERALD_HASH_KEY": "test-hash-key-0123456789", "HERALD_TOKEN_KEYS": "1:test-token-key-0123456789",
		// Fast recovery: a dead batch's claims expire after 3 s and the sweeper looks every second.
		"HERALD_CAMPAIGN_LEASE": "3s", "HERALD_CAMPAIGN_SWEEP": "1s", "HERALD_CAMPAIGN_WORKERS": "4",
		"HERALD_SHUTDOWN_TIMEOUT": "5s",
	}
	for k, v := range env {
		h.baseEnv[k] = v
	}
	t.Cleanup(func() {
		for _, p := range h.procs {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	})
	return h
}

// record is the SMTP server's DataHook: it accepts every message and counts it.
func (h *procHarness) record(m *smtpcapture.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, to := range m.To {
		h.got[to] = append(h.got[to], m.MessageID)
	}
	h.total++
	if h.total == h.onNth {
		close(h.nth)
	}
	return nil
}

// received returns a copy of what arrived so far and its count.
func (h *procHarness) received() (map[string][]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]string, len(h.got))
	for k, v := range h.got {
		out[k] = append([]string(nil), v...)
	}
	return out, h.total
}

// notifyAt returns a channel closed when the n-th message arrives.
func (h *procHarness) notifyAt(n int) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.onNth, h.nth = n, make(chan struct{})
	return h.nth
}

// seed creates n opted-in contacts (consent state written by SQL, as an import leaves it), a
// template, a sender, and a sending campaign whose fan-out is done, with its n recipients and
// their batch jobs of batch recipients each.
func (h *procHarness) seed(n, batch int) {
	t, ctx := h.t, context.Background()
	t.Helper()
	err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO workspaces (name) VALUES ('acme') RETURNING id`).Scan(&h.ws); err != nil {
			return err
		}
		if _, _, err := consent.PurposeSave(ctx, tx, consent.Purpose{WorkspaceID: h.ws, Name: "news", Title: "Acme News",
			Notice: "Monthly news."}); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO contacts (workspace_id, external_id, email, name)
			SELECT $1, 'c' || g, 'u' || g || '@d' || (g % 50) || '.example', 'User ' || g FROM generate_series(1, $2) g`,
			h.ws, n); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO consent_state (workspace_id, contact_id, purpose, status, event_id, source, updated_at)
			SELECT $1, id, 'news', 'granted', 0, 'import', now() FROM contacts WHERE workspace_id = $1`, h.ws)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := templates.Create(ctx, h.pool, h.ws, templates.Input{Name: "news", Subject: "News for {{.contact.first_name}}",
		HTML: sendTestHTML})
	if err != nil {
		t.Fatal(err)
	}
	var sender int64
	if err := h.pool.QueryRow(ctx, `INSERT INTO senders (workspace_id, name, from_address, from_name, postal_address)
		VALUES ($1, 'news', 'news@acme.example', 'Acme News', '1 Main Street, Springfield') RETURNING id`, h.ws).Scan(&sender); err != nil {
		t.Fatal(err)
	}
	if err := h.pool.QueryRow(ctx, `INSERT INTO campaigns (workspace_id, name, purpose, template_name, template_version,
			sender_id, audience, status, fanout_done, audience_size, started_at)
		VALUES ($1, 'November', 'news', $2, $3, $4, '{}', 'sending', true, $5, now()) RETURNING id`,
		h.ws, tpl.Name, tpl.Version, sender, n).Scan(&h.campaign); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `INSERT INTO campaign_recipients (campaign_id, contact_id, address)
		SELECT $1, id, email FROM contacts WHERE workspace_id = $2 ORDER BY id`, h.campaign, h.ws); err != nil {
		t.Fatal(err)
	}
	// A database in use has statistics (autovacuum analyses a table within a minute of a bulk
	// load); without them the planner takes these freshly filled tables for empty and may scan a
	// whole workspace per batch, which is not what is measured here.
	if _, err := h.pool.Exec(ctx, `ANALYZE contacts, consent_state, campaign_recipients, suppressions`); err != nil {
		t.Fatal(err)
	}
	h.batches = batch
}

// enqueue inserts the campaign's batch jobs (ranges of h.batches recipient ids), as the fan-out
// does, and returns how many.
func (h *procHarness) enqueue() int {
	t, ctx := h.t, context.Background()
	t.Helper()
	rows, err := h.pool.Query(ctx, `SELECT min(id), max(id) FROM campaign_recipients WHERE campaign_id = $1
		GROUP BY (id - (SELECT min(id) FROM campaign_recipients WHERE campaign_id = $1)) / $2 ORDER BY 1`, h.campaign, h.batches)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []river.InsertManyParams
	for rows.Next() {
		var a campaigns.SendBatchArgs
		if err := rows.Scan(&a.FirstID, &a.LastID); err != nil {
			t.Fatal(err)
		}
		a.CampaignID = h.campaign
		jobs = append(jobs, river.InsertManyParams{Args: a, InsertOpts: &river.InsertOpts{Queue: campaigns.QueueCampaigns}})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.river.InsertManyFast(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

// start runs `herald work` with the harness's environment plus env.
func (h *procHarness) start(env map[string]string) *workerProc {
	t := h.t
	t.Helper()
	addr := procFreeAddr(t)
	cmd := exec.Command(h.bin, "work", "--addr", addr)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range h.baseEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &workerProc{addr: addr, cmd: cmd, stderr: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{b: p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	h.procs = append(h.procs, p)
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// runUntil enqueues the batch jobs, runs one `herald work` and returns it once n messages have
// arrived, failing if the process exits first or a minute passes.
func (h *procHarness) runUntil(n int) *workerProc {
	h.t.Helper()
	at := h.notifyAt(n)
	h.enqueue()
	p := h.start(nil)
	select {
	case <-at:
	case err := <-p.done:
		h.t.Fatalf("herald work exited early: %v\n%s", err, p.stderr.String())
	case <-time.After(60 * time.Second):
		h.t.Fatalf("%d messages never arrived:\n%s", n, p.stderr.String())
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (h *procHarness) kill(p *workerProc) {
	h.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatal(err)
	}
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (h *procHarness) stop(p *workerProc) {
	h.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			h.t.Errorf("herald work exited with %v:\n%s", err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		h.t.Errorf("herald work did not stop after SIGTERM")
	}
}

// waitStatus polls until the campaign has the status, failing after timeout.
func (h *procHarness) waitStatus(status string, timeout time.Duration) time.Time {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var s string
		var finished *time.Time
		if err := h.pool.QueryRow(context.Background(), `SELECT status, finished_at FROM campaigns WHERE id = $1`,
			h.campaign).Scan(&s, &finished); err != nil {
			h.t.Fatal(err)
		}
		if s == status {
			if finished != nil {
				return *finished
			}
			return time.Now()
		}
		if time.Now().After(deadline) {
			counts := h.statusCounts()
			var logs []string
			for _, p := range h.procs {
				logs = append(logs, p.stderr.String())
			}
			h.t.Fatalf("campaign still %s after %s (recipients %v); worker logs:\n%s", s, timeout, counts, strings.Join(logs, "\n---\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *procHarness) statusCounts() map[string]int {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1`, h.campaign)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			h.t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

// requireOneEach checks that total addresses received one message each.
func (h *procHarness) requireOneEach(total int) {
	h.t.Helper()
	got, n := h.received()
	if n != total || len(got) != total {
		h.t.Errorf("%d messages to %d addresses, want %d each", n, len(got), total)
	}
	for addr, ids := range got {
		if len(ids) != 1 {
			h.t.Errorf("%s received %d messages", addr, len(ids))
		}
	}
}

// sentAddresses returns the addresses whose recipient row is sent.
func (h *procHarness) sentAddresses() map[string]string {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT address, message_id FROM campaign_recipients
		WHERE campaign_id = $1 AND status = 'sent'`, h.campaign)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var a, m string
		if err := rows.Scan(&a, &m); err != nil {
			h.t.Fatal(err)
		}
		out[a] = m
	}
	return out
}

// TestCrashMidCampaign SIGKILLs the only worker process once 1,000 of 3,000 messages have
// arrived, restarts it, and checks that every recipient ends with one sent row, and that the only
// messages received twice are messages whose outcome was not committed at the kill (at most the
// hand-offs in flight: workers × parallel), each sent again with the same Message-ID.
func TestCrashMidCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs herald work processes")
	}
	t.Parallel()
	const total, workers, parallel = 3000, 4, 4
	h := procSetup(t, map[string]string{"HERALD_CAMPAIGN_WORKERS": fmt.Sprint(workers),
		"HERALD_CAMPAIGN_PARALLEL": fmt.Sprint(parallel)}, false)
	h.seed(total, 100)
	p := h.runUntil(1000)
	h.kill(p)
	before, n := h.received()
	committed := h.sentAddresses()
	var uncommitted []string // received, but the outcome not committed: may be sent again
	for addr := range before {
		if _, ok := committed[addr]; !ok {
			uncommitted = append(uncommitted, addr)
		}
	}
	t.Logf("killed after %d messages received; %d sent rows committed; %d in flight", n, len(committed), len(uncommitted))
	if len(uncommitted) > workers*parallel {
		t.Errorf("%d received messages without a committed outcome; at most one per hand-off in flight (%d)", len(uncommitted), workers*parallel)
	}
	for addr := range committed {
		if _, ok := before[addr]; !ok {
			t.Errorf("%s is recorded sent but the relay never received it", addr)
		}
	}

	// River's leader row of the dead process would expire on its own 15 s after its last renewal;
	// removing it lets the new process lead (and run the sweeper) at once.
	if _, err := h.pool.Exec(context.Background(), `DELETE FROM river_leader`); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	p2 := h.start(nil)
	h.waitStatus("sent", 90*time.Second)
	t.Logf("campaign sent %s after the restart", time.Since(restart).Round(time.Millisecond))
	h.stop(p2)

	after, n := h.received()
	if counts := h.statusCounts(); counts["sent"] != total || len(counts) != 1 {
		t.Errorf("recipient statuses %v, want %d sent", counts, total)
	}
	final := h.sentAddresses()
	inFlight := map[string]bool{}
	for _, a := range uncommitted {
		inFlight[a] = true
	}
	dups := 0
	for addr, ids := range after {
		switch {
		case len(ids) > 2:
			t.Errorf("%s received %d messages", addr, len(ids))
		case len(ids) == 2:
			dups++
			if !inFlight[addr] {
				t.Errorf("%s received twice but its outcome was committed before the kill", addr)
			}
			if ids[0] != ids[1] || ids[0] != "<"+final[addr]+">" {
				t.Errorf("%s: a resend with another Message-ID: %v (row %s)", addr, ids, final[addr])
			}
		}
	}
	if len(after) != total {
		t.Errorf("%d addresses received mail, want %d", len(after), total)
	}
	t.Logf("%d messages for %d recipients: %d duplicates, all in flight at the kill", n, total, dups)
}

// TestPauseResumeProcess pauses a campaign being sent by a `herald work` process: within a second
// nothing more arrives; after resume the campaign completes and nobody receives two messages.
func TestPauseResumeProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs herald work processes")
	}
	t.Parallel()
	ctx := context.Background()
	const total = 3000
	h := procSetup(t, nil, false)
	h.seed(total, 100)
	p := h.runUntil(800)
	transition := func(action string) {
		t.Helper()
		err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
			_, err := campaigns.Transition(ctx, tx, h.river, h.ws, h.campaign, action, time.Now())
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
	}
	transition("pause")
	paused := time.Now()
	_, atPause := h.received()
	// The workers read the status at most 500 ms old and stop before their next message.
	time.Sleep(time.Second)
	_, oneSecond := h.received()
	time.Sleep(time.Second)
	_, twoSeconds := h.received()
	t.Logf("at pause %d; +1 s %d; +2 s %d", atPause, oneSecond, twoSeconds)
	if twoSeconds != oneSecond {
		t.Errorf("%d messages arrived between 1 and 2 s after the pause", twoSeconds-oneSecond)
	}
	if twoSeconds >= total {
		t.Fatal("the campaign finished before the pause took effect; nothing was tested")
	}
	if s := h.statusCounts(); s["sending"] != 0 {
		t.Errorf("recipients still claimed %s after the pause: %v", time.Since(paused), s)
	}

	transition("resume")
	h.waitStatus("sent", 90*time.Second)
	h.stop(p)
	h.requireOneEach(total)
}
