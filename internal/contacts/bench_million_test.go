package contacts_test

import (
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkImportMillion streams 1,000,000 NDJSON contacts, generated as they are sent (the body
// is never held in memory), through the import endpoint, and reports the rate and the peak Go
// heap of the process while the import ran, to show that the import streams.
func BenchmarkImportMillion(b *testing.B) {
	const rows = 1_000_000
	bb := setup(b)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	for b.Loop() {
		pr, pw := io.Pipe()
		go func() {
			buf := make([]byte, 0, 256)
			for i := range rows {
				buf = fmt.Appendf(buf[:0], `{"external_id":"m-%d","email":"user.%d@example.com","name":"User %d","timezone":"Europe/Berlin","attributes":{"n":%d}}`+"\n", i, i, i, i)
				if _, err := pw.Write(buf); err != nil {
					return
				}
			}
			pw.Close()
		}()
		bb.importAll(b, pr, rows)
	}
	close(stop)
	<-sampled
	rate := float64(rows) / b.Elapsed().Seconds() * float64(b.N)
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	fmt.Printf("contacts import: %d rows streamed in %.1fs (%.0f rows/s), peak Go heap %d MiB\n",
		rows, b.Elapsed().Seconds()/float64(b.N), rate, peak.Load()>>20)
}
