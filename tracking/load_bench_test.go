package tracking

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkTrackingLoad is the tracking load test: a Go load generator on loopback against the
// real handler over real HTTP (a net/http server on 127.0.0.1, keep-alive connections), with the
// event writer writing to the real PostgreSQL. It sends a fixed number of requests
// (HERALD_BENCH_TRACKING_REQUESTS, default 100,000; stopped after 2 minutes), two opens for each
// click, with valid tokens of 1,000 recipients and 5 links, from 8 concurrent clients; then it
// shuts down as herald does (HTTP server, then the writer) and checks that every request's event
// is stored. It reports requests/s and the p50 and p99 latency seen by the clients.
func BenchmarkTrackingLoad(b *testing.B) {
	total := 100_000
	if v := os.Getenv("HERALD_BENCH_TRACKING_REQUESTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("HERALD_BENCH_TRACKING_REQUESTS=%q", v)
		}
		total = n
	}
	const (
		clients    = 8
		recipients = 1000
		maxTime    = 2 * time.Minute
	)
	for range b.N {
		t := trkSetup(b, trkOpts{})
		campaign := t.campaign(b, t.wsB) // opt-out workspace: every recipient is tracked
		rows, err := t.pool.Query(t.ctx, `
			WITH c AS (
				INSERT INTO contacts (workspace_id, external_id, email)
				SELECT $1, 'load-' || i, 'load-' || i || '@example.com' FROM generate_series(1, $3) i RETURNING id, email
			)
			INSERT INTO campaign_recipients (campaign_id, contact_id, address, status, sent_at)
			SELECT $2, id, email, 'sent', now() - interval '1 hour' FROM c ORDER BY id RETURNING id`, t.wsB, campaign, recipients)
		if err != nil {
			b.Fatal(err)
		}
		rcpts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := t.pool.Exec(t.ctx, `ANALYZE contacts; ANALYZE campaign_recipients`); err != nil {
			b.Fatal(err)
		}
		linkIDs, err := t.links.IDs(t.ctx, t.wsB, campaign, []string{"https://shop.example/1", "https://shop.example/2",
			"https://shop.example/3", "https://shop.example/4", "https://shop.example/5"})
		if err != nil {
			b.Fatal(err)
		}
		paths := make([]string, 0, 3*recipients)
		for i, r := range rcpts {
			paths = append(paths, "/t/o/"+OpenToken(t.svc.Keys, OpenRef{WorkspaceID: t.wsB, CampaignID: campaign, RecipientID: r}))
			paths = append(paths, "/t/o/"+OpenToken(t.svc.Keys, OpenRef{WorkspaceID: t.wsB, CampaignID: campaign, RecipientID: r}))
			paths = append(paths, "/t/c/"+ClickToken(t.svc.Keys, ClickRef{WorkspaceID: t.wsB, CampaignID: campaign, RecipientID: r,
				LinkID: linkIDs[i%len(linkIDs)]}))
		}
		tr := &http.Transport{MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2, IdleConnTimeout: time.Minute}
		client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		var next, failed atomic.Int64
		lat := make([][]time.Duration, clients)
		deadline := time.Now().Add(maxTime)
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]time.Duration, 0, total/clients+1)
				for {
					i := next.Add(1) - 1
					if i >= int64(total) || time.Now().After(deadline) {
						break
					}
					req, _ := http.NewRequest(http.MethodGet, t.srv.URL+paths[i%int64(len(paths))], nil)
					req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
					s := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mine = append(mine, time.Since(s))
					if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusFound {
						failed.Add(1)
					}
				}
				lat[c] = mine
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		tr.CloseIdleConnections()
		t.srv.Close()
		t.writer.Close()

		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		slices.Sort(all)
		if len(all) == 0 {
			b.Fatal("no request completed")
		}
		sent := len(all)
		var stored int
		if err := t.pool.QueryRow(t.ctx, `SELECT count(*) FROM tracking_events`).Scan(&stored); err != nil {
			b.Fatal(err)
		}
		rate := float64(sent) / elapsed.Seconds()
		p50, p99 := all[len(all)/2], all[len(all)*99/100]
		b.ReportMetric(rate, "req/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99_ms")
		b.Logf("tracking load: %d requests (%d failed) from %d clients in %v: %.0f req/s, p50 %v, p99 %v, max %v; %d events stored, %v dropped",
			sent, failed.Load(), clients, elapsed.Round(time.Millisecond), rate, p50, p99, all[len(all)-1], stored,
			counter(t.metrics.Dropped.WithLabelValues("buffer_full")))
		if failed.Load() != 0 {
			b.Errorf("%d requests failed", failed.Load())
		}
		if stored != sent {
			b.Errorf("%d events stored for %d requests", stored, sent)
		}
		_ = fmt.Sprint()
	}
}
