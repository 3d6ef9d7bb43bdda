package mailer_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"herald/internal/smtpcapture"
)

// benchSink records when each message (identified by its subject, "m<N>") reached SMTP.
type benchSink struct {
	mu      sync.Mutex
	arrived map[int]time.Time
	n       atomic.Int64
	done    chan struct{}
	want    int64
}

func newBenchSink(want int) *benchSink {
	return &benchSink{arrived: make(map[int]time.Time, want), done: make(chan struct{}), want: int64(want)}
}

func (s *benchSink) hook(m *smtpcapture.Message) error {
	now := time.Now()
	i, err := strconv.Atoi(m.Subject[1:])
	if err != nil || i < 0 || int64(i) >= s.want {
		return nil // warm-up traffic
	}
	s.mu.Lock()
	s.arrived[i] = now
	s.mu.Unlock()
	if s.n.Add(1) == s.want {
		close(s.done)
	}
	return nil
}

func benchBody(i int) []byte {
	return fmt.Appendf(nil, `{"from":"Acme <billing@acme.example>","to":"user%d@example.com","subject":"m%d","html":"<p>Hello user %d, here is your receipt.</p><table><tr><td>Item</td><td>9.99</td></tr></table>","text":"Hello user %d, here is your receipt. Item 9.99"}`, i, i, i, i)
}

func (b *bundle) post(client *http.Client, key string, i int) (time.Duration, error) {
	req, _ := http.NewRequest("POST", b.api.URL+"/v1/messages", bytes.NewReader(benchBody(i)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "bench-"+strconv.Itoa(i))
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("status %d", res.StatusCode)
	}
	return time.Since(start), nil
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkTransactionalThroughput posts messages through the HTTP API as fast as 32 clients can
// and measures how many per second reach the in-process SMTP server.
func BenchmarkTransactionalThroughput(bm *testing.B) {
	const n = 10000
	sink := newBenchSink(n)
	b := setup(bm, setupOpts{dataHook: sink.hook, keep: -1, workers: 64, poolSize: 16, cooldown: 20 * time.Millisecond})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	bm.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if _, err := b.post(client, b.keyA, i); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(start)
	select {
	case <-sink.done:
	case <-time.After(5 * time.Minute):
		bm.Fatalf("only %d of %d messages reached SMTP", sink.n.Load(), n)
	}
	total := time.Since(start)
	bm.StopTimer()
	if failed.Load() > 0 {
		bm.Fatalf("%d requests failed", failed.Load())
	}
	rate := float64(n) / total.Seconds()
	bm.ReportMetric(rate, "msgs/s")
	bm.ReportMetric(float64(n)/accepted.Seconds(), "accepted/s")
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("transactional throughput: %d messages API->SMTP in %s = %.0f messages/s (API accepted all in %s = %.0f req/s); peak RSS of the process (API, workers, load generator, sink) %d MiB\n",
		n, total.Round(time.Millisecond), rate, accepted.Round(time.Millisecond), float64(n)/accepted.Seconds(), ru.Maxrss/1024)
}

// paced sends count messages at rate per second, open loop (each request starts on schedule
// whatever the earlier ones are doing), numbering them from first; it returns each request's API
// latency and the time its 202 arrived.
func (b *bundle) paced(bm *testing.B, client *http.Client, rate, first, count int) ([]time.Duration, []time.Time) {
	lat := make([]time.Duration, count)
	at := make([]time.Time, count)
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range count {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := b.post(client, b.keyA, first+i)
			if err != nil {
				failed.Add(1)
				return
			}
			lat[i], at[i] = d, time.Now()
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		bm.Fatalf("%d requests failed", failed.Load())
	}
	return lat, at
}

// BenchmarkTransactionalLatency sends at fixed rates (250 and 500 requests/s) and reports API
// latency and the time from the API's acceptance to SMTP hand-off, p50 and p99. A 4 s warm-up at
// the same rate (connections opened, statements prepared, caches filled) runs first and is not
// measured.
//
// The api-only case runs the same load with the workers stopped: the API's own latency, as on a
// host that runs `herald serve` alone. In the others, the API, the send workers, PostgreSQL, the
// load generator and the SMTP sink share this machine's cores.
func BenchmarkTransactionalLatency(bm *testing.B) {
	for _, rate := range []int{250, 500} {
		bm.Run(fmt.Sprintf("rate=%d", rate), func(bm *testing.B) { benchLatency(bm, rate, true) })
	}
	bm.Run("api-only/rate=500", func(bm *testing.B) { benchLatency(bm, 500, false) })
}

func benchLatency(bm *testing.B, rate int, sending bool) {
	var (
		warmup = 4 * rate
		n      = 10 * rate
	)
	sink := newBenchSink(warmup + n)
	b := setup(bm, setupOpts{dataHook: sink.hook, keep: -1, workers: 64, poolSize: 16, cooldown: 20 * time.Millisecond})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	if !sending {
		if err := b.river.Stop(context.Background()); err != nil {
			bm.Fatal(err)
		}
		b.paced(bm, client, rate, 0, warmup)
		bm.ResetTimer()
		apiLat, _ := b.paced(bm, client, rate, warmup, n)
		bm.StopTimer()
		bm.ReportMetric(float64(pct(apiLat, .50).Microseconds())/1000, "api-p50-ms")
		bm.ReportMetric(float64(pct(apiLat, .99).Microseconds())/1000, "api-p99-ms")
		fmt.Printf("transactional API alone (workers stopped) at %d req/s for %ds: API p50 %s p99 %s max %s\n", rate, n/rate,
			pct(apiLat, .50).Round(10*time.Microsecond), pct(apiLat, .99).Round(10*time.Microsecond), pct(apiLat, 1).Round(10*time.Microsecond))
		return
	}
	b.paced(bm, client, rate, 0, warmup)
	bm.ResetTimer()
	apiLat, acceptedAt := b.paced(bm, client, rate, warmup, n)
	select {
	case <-sink.done:
	case <-time.After(2 * time.Minute):
		bm.Fatalf("only %d of %d messages reached SMTP", sink.n.Load(), warmup+n)
	}
	bm.StopTimer()
	toSMTP := make([]time.Duration, 0, n)
	sink.mu.Lock()
	for i := range n {
		// Measured from the client's receipt of the 202, so it slightly understates; the API
		// latency bounds the difference.
		toSMTP = append(toSMTP, sink.arrived[warmup+i].Sub(acceptedAt[i]))
	}
	sink.mu.Unlock()
	bm.ReportMetric(float64(pct(apiLat, .50).Microseconds())/1000, "api-p50-ms")
	bm.ReportMetric(float64(pct(apiLat, .99).Microseconds())/1000, "api-p99-ms")
	bm.ReportMetric(float64(pct(toSMTP, .50).Microseconds())/1000, "smtp-p50-ms")
	bm.ReportMetric(float64(pct(toSMTP, .99).Microseconds())/1000, "smtp-p99-ms")
	fmt.Printf("transactional latency at %d req/s for %ds (%d messages, after %d warm-up): API p50 %s p99 %s; accept->SMTP p50 %s p99 %s\n",
		rate, n/rate, n, warmup, pct(apiLat, .50).Round(10*time.Microsecond), pct(apiLat, .99).Round(10*time.Microsecond),
		pct(toSMTP, .50).Round(10*time.Microsecond), pct(toSMTP, .99).Round(10*time.Microsecond))
}
