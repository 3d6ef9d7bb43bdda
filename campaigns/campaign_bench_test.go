package campaigns_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/campaigns"
)

// BenchmarkCampaignSend100k sends a 100,000-recipient campaign (contacts opted in by SQL) from
// ONE `herald work` process to an in-process SMTP sink that only counts, with the consent check
// on (DecideBatch per batch) and no tracking. It reports messages/s from the insert of the batch
// jobs to the campaign's finished_at, CPU ms per message of the worker process (utime+stime from
// /proc/PID/stat) and of PostgreSQL (the backends serving this test's database, from /proc, so
// the cluster's other databases do not count; shared processes such as the WAL writer and
// checkpointer are left out), and the worker's peak RSS (VmHWM).
//
// HERALD_BENCH_CAMPAIGN_WORKERS and HERALD_BENCH_CAMPAIGN_PARALLEL override the worker's
// settings (defaults 8 and 16, Herald's own) for tuning runs. More senders than relay connections
// (HERALD_SMTP_POOL, 32 here) keep the two cores busy and the outcome groups large: workers ×
// parallel took, in CPU ms per message, 0.201 at 8×4 and 0.231 at 4×4 (single runs before the
// outcome writer lingered), then in two alternating rounds 0.149/0.141 at 8×8, 0.164/0.152 at
// 16×4, 0.145/0.137 at 16×8 and 0.143/0.135 at 8×16. And
// HERALD_BENCH_CAMPAIGN_BATCH the recipients per batch job (default DefaultBatchSize, as the
// fan-out plans them).
// HERALD_BENCH_PPROF=FILE saves a CPU profile of the worker (HERALD_PPROF_ADDR) over the first
// HERALD_BENCH_PPROF_SECONDS (default 10) of sending; the profiling itself costs some worker CPU.
func BenchmarkCampaignSend100k(b *testing.B) {
	const total = 100_000
	workers := envOr("HERALD_BENCH_CAMPAIGN_WORKERS", "8")
	parallel := envOr("HERALD_BENCH_CAMPAIGN_PARALLEL", "16")
	batch, err := strconv.Atoi(envOr("HERALD_BENCH_CAMPAIGN_BATCH", strconv.Itoa(campaigns.DefaultBatchSize)))
	if err != nil || batch < 1 {
		b.Fatalf("HERALD_BENCH_CAMPAIGN_BATCH: %v", err)
	}
	profile := os.Getenv("HERALD_BENCH_PPROF")
	for range b.N {
		env := map[string]string{
			"HERALD_CAMPAIGN_WORKERS": workers, "HERALD_CAMPAIGN_PARALLEL": parallel,
			"HERALD_DB_POOL": "40", "HERALD_SMTP_POOL": "32", "HERALD_CAMPAIGN_LEASE": "1m",
			"HERALD_CAMPAIGN_SWEEP": "30s", "HERALD_LOG_LEVEL": "error", "HERALD_FETCH_COOLDOWN": "10ms",
		}
		pprofAddr := ""
		if profile != "" {
			pprofAddr = procFreeAddr(b)
			env["HERALD_PPROF_ADDR"] = pprofAddr
		}
		h := procSetup(b, env, true)
		seedStart := time.Now()
		h.seed(total, batch)
		// Every contact has the attribute the template prints: a missing one renders as nil,
		// which the pre-sanitised fast path leaves to the per-render sanitiser (a slower path the
		// benchmark is not meant to measure).
		if _, err := h.pool.Exec(context.Background(), `UPDATE contacts SET attributes = jsonb_build_object('plan',
				CASE WHEN id % 3 = 0 THEN 'pro' ELSE 'free' END) WHERE workspace_id = $1`, h.ws); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d contacts, opt-ins and recipients in %s", total, time.Since(seedStart).Round(time.Millisecond))
		p := h.start(nil)
		waitReady(b, "http://"+p.addr+"/readyz")
		pid := p.cmd.Process.Pid

		b.ResetTimer()
		cpu0 := procCPU(b, pid)
		pg0 := h.backendCPU()
		xacts0 := h.commits()
		start := time.Now()
		jobs := h.enqueue()
		profiled := make(chan error, 1)
		if profile != "" {
			go func() {
				profiled <- saveProfile(pprofAddr, envOr("HERALD_BENCH_PPROF_SECONDS", "10"), profile)
			}()
		}
		finished := h.waitStatus("sent", 10*time.Minute)
		cpu1 := procCPU(b, pid)
		pg1 := h.backendCPU()
		b.StopTimer()
		hwm := procHWM(b, pid)
		// PostgreSQL flushes table statistics within a second or so of a transaction's end.
		var updates, hot int64
		if err := h.pool.QueryRow(context.Background(), `SELECT pg_sleep(1.5), n_tup_upd, n_tup_hot_upd
			FROM pg_stat_user_tables WHERE relname = 'campaign_recipients'`).Scan(nil, &updates, &hot); err != nil {
			b.Fatal(err)
		}
		xacts := h.commits() - xacts0 // after the statistics flush
		if profile != "" {
			if err := <-profiled; err != nil {
				b.Errorf("CPU profile: %v", err)
			}
		}
		h.stop(p)

		elapsed := finished.Sub(start)
		if n := h.smtp.Count(); n != total {
			b.Fatalf("the sink received %d messages, want %d", n, total)
		}
		var pgCPU time.Duration
		for pid, after := range pg1 {
			pgCPU += after - pg0[pid] // a backend started during the run counts from 0
		}
		rate := float64(total) / elapsed.Seconds()
		workerMS := float64((cpu1 - cpu0).Microseconds()) / 1000 / total
		pgMS := float64(pgCPU.Microseconds()) / 1000 / total
		b.ReportMetric(rate, "msgs/s")
		b.ReportMetric(workerMS, "worker-cpu-ms/msg")
		b.ReportMetric(pgMS, "pg-cpu-ms/msg")
		b.ReportMetric(float64(hwm)/(1<<20), "worker-peak-rss-MB")
		b.Logf("%d messages in %d batch jobs in %s: %.0f msgs/s; CPU per message: worker %.3f ms + PostgreSQL %.3f ms = %.3f ms; worker peak RSS %.1f MB (workers %s, parallel %s, batch %d); recipient row updates %d, HOT %.0f%%; %.2f transactions per message",
			total, jobs, elapsed.Round(time.Millisecond), rate, workerMS, pgMS, workerMS+pgMS, float64(hwm)/(1<<20), workers, parallel, batch,
			updates, 100*float64(hot)/float64(max(updates, 1)), float64(xacts)/total)
	}
}

// saveProfile fetches a CPU profile of seconds from a pprof listener into file.
func saveProfile(addr, seconds, file string) error {
	res, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=" + seconds)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", res.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func waitReady(tb testing.TB, url string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s never became ready: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU returns the user+system CPU time a process has used.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	d, err := readProcCPU(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func readProcCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its closing parenthesis are
	// state (3), ..., utime (14), stime (15).
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, fields[11], fields[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// procHWM returns a process's peak resident set size in bytes (VmHWM).
func procHWM(tb testing.TB, pid int) int64 {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// commits returns how many transactions have committed in the harness's database, as far as
// PostgreSQL's statistics (flushed about once a second by each backend) know.
func (h *procHarness) commits() int64 {
	h.t.Helper()
	var n int64
	if err := h.pool.QueryRow(context.Background(), `SELECT pg_stat_force_next_flush(), xact_commit FROM pg_stat_database
		WHERE datname = current_database()`).Scan(nil, &n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// backendCPU returns the CPU time used so far by each PostgreSQL backend connected to the
// harness's database.
func (h *procHarness) backendCPU() map[int]time.Duration {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			h.t.Fatal(err)
		}
		if d, err := readProcCPU(pid); err == nil { // a backend may have just exited
			out[pid] = d
		}
	}
	return out
}
