package contacts_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"herald/internal/contacts"
)

// BenchmarkImport streams 100,000 NDJSON contacts through the HTTP import endpoint into PostgreSQL.
// The first iteration creates them, later ones update them.
func BenchmarkImport(b *testing.B) {
	const rows = 100_000
	bb := setup(b)
	var body bytes.Buffer
	for i := range rows {
		fmt.Fprintf(&body, `{"external_id":"crm-%d","email":"User.%d@Example.com","name":"User %d",`+
			`"locale":"en-US","timezone":"Europe/Berlin","attributes":{"plan":"pro","seats":%d}}`+"\n", i, i, i, i%50)
	}
	data := body.Bytes()

	iterations := 0
	for b.Loop() {
		bb.importAll(b, bytes.NewReader(data), rows)
		iterations++
	}
	per := b.Elapsed() / time.Duration(iterations)
	rate := float64(rows) / per.Seconds()
	b.ReportMetric(rate, "rows/s")
	fmt.Printf("contacts import: %d rows in %.2fs (%.0f rows/s)\n", rows, per.Seconds(), rate)
}

// importAll posts an NDJSON body to the import endpoint and fails unless all rows were applied.
func (bb *bundle) importAll(b *testing.B, body io.Reader, rows int) {
	b.Helper()
	resp := bb.do(b, http.MethodPost, "/v1/contacts/import", bb.keyA, "application/x-ndjson", body)
	if resp.Status != http.StatusOK {
		b.Fatalf("import: %d %s", resp.Status, resp.Raw)
	}
	var r contacts.ImportReport
	if err := json.Unmarshal(resp.Raw, &r); err != nil {
		b.Fatal(err)
	}
	if r.Received != rows || r.Created+r.Updated != rows || r.Invalid != 0 {
		b.Fatalf("report = %+v", r)
	}
}
