package campaigns_test

import (
	"context"
	"testing"
	"time"
)

// TestTwoWorkProcesses runs two `herald work` processes on one database and one campaign: every
// address receives exactly one message, and both processes sent some of them.
func TestTwoWorkProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs herald work processes")
	}
	t.Parallel()
	const total = 3000
	h := procSetup(t, map[string]string{"HERALD_CAMPAIGN_WORKERS": "3"}, false)
	h.seed(total, 50)
	p1, p2 := h.start(nil), h.start(nil)
	// Both clients are up before there is work, so that one cannot take it all before the other
	// starts: River has registered each as a client once it has elected or lost an election.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_leader`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no River leader elected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the follower's producers start fetching too
	jobs := h.enqueue()
	h.waitStatus("sent", 90*time.Second)
	h.stop(p1)
	h.stop(p2)

	h.requireOneEach(total)
	if counts := h.statusCounts(); counts["sent"] != total {
		t.Errorf("recipient statuses %v", counts)
	}
	// Which client worked each batch job (attempted_by holds River client ids, one per process).
	rows, err := h.pool.Query(context.Background(), `SELECT attempted_by[array_length(attempted_by, 1)], count(*)
		FROM river_job WHERE kind = 'campaigns.send_batch' AND state = 'completed' GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	perClient := map[string]int{}
	for rows.Next() {
		var client string
		var n int
		if err := rows.Scan(&client, &n); err != nil {
			t.Fatal(err)
		}
		perClient[client] = n
	}
	t.Logf("%d batch jobs per client: %v", jobs, perClient)
	if len(perClient) != 2 {
		t.Errorf("batch jobs were worked by %d processes, want both: %v", len(perClient), perClient)
	}
	for c, n := range perClient {
		if n < jobs/10 {
			t.Errorf("client %s worked only %d of %d batches", c, n, jobs)
		}
	}
}
