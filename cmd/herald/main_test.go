package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"herald/internal/db"
	"herald/internal/dbtest"
	"herald/internal/smtpcapture"
	"herald/internal/workspace"
)

// runCmd runs one herald command in-process and returns its exit code, stdout and stderr.
func runCmd(t *testing.T, ctx context.Context, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	errf, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	code := run(ctx, args, out, errf, func(k string) string { return env[k] })
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return code, string(o), string(e)
}

func TestMigrateTwiceAndKeys(t *testing.T) {
	t.Parallel()
	url := dbtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": url}
	ctx := context.Background()
	if code, _, stderr := runCmd(t, ctx, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s", code, stderr)
	}
	code, _, stderr := runCmd(t, ctx, env, "migrate")
	if code != 0 || !strings.Contains(stderr, "up to date") {
		t.Fatalf("second migrate: %d %s", code, stderr)
	}
	code, stdout, stderr := runCmd(t, ctx, env, "keys", "create", "--workspace", "crm-1", "--scopes", "messages:send,contacts:write")
	if code != 0 {
		t.Fatalf("keys create: %d %s", code, stderr)
	}
	key := strings.TrimSpace(stdout)
	if !strings.HasPrefix(key, "hrld_") || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("keys create printed %q; want only the key", stdout)
	}
	pool, err := db.Open(ctx, url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p, err := workspace.Authenticate(ctx, pool, key)
	if err != nil || p.WorkspaceName != "crm-1" || !p.Has("contacts:write") || p.Has("admin") {
		t.Fatalf("created key: %+v %v", p, err)
	}
	// Revocation: the key stops authenticating, the revocation is audited once, a repeat says so.
	id := strconv.FormatInt(p.KeyID, 10)
	if code, stdout, stderr := runCmd(t, ctx, env, "keys", "revoke", "--workspace", "crm-1", "--id", id); code != 0 || stdout != "revoked api_key:"+id+"\n" {
		t.Fatalf("keys revoke: %d %q %s", code, stdout, stderr)
	}
	if _, err := workspace.Authenticate(ctx, pool, key); !errors.Is(err, workspace.ErrBadKey) {
		t.Fatalf("a revoked key authenticates: %v", err)
	}
	if code, stdout, _ := runCmd(t, ctx, env, "keys", "revoke", "--workspace", "crm-1", "--id", id); code != 0 || !strings.Contains(stdout, "already revoked") {
		t.Fatalf("second revoke: %d %q", code, stdout)
	}
	var audits int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'api_key.revoke' AND target = $1 AND actor = 'cli'`,
		"api_key:"+id).Scan(&audits); err != nil || audits != 1 {
		t.Fatalf("revocation audit entries: %d %v", audits, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "revoke", "--workspace", "crm-1", "--id", "999999"}, "no such API key"},
		{[]string{"keys", "revoke", "--workspace", "nope", "--id", id}, "workspace"},
		{[]string{"keys", "revoke", "--workspace", "crm-1"}, "usage"},
		{[]string{"keys", "create", "--workspace", "crm-1", "--scopes", "root"}, "unknown scope"},
		{[]string{"keys", "create", "--scopes", "admin"}, "--workspace is required"},
		{[]string{"keys", "create", "--workspace", "Bad Name", "--scopes", "admin"}, "workspace name"},
		{[]string{"keys", "delete"}, "usage"},
		{[]string{"frobnicate"}, "unknown command"},
	} {
		code, stdout, stderr := runCmd(t, ctx, env, tc.args...)
		if code == 0 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want failure mentioning %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	if code, _, stderr := runCmd(t, ctx, map[string]string{}, "migrate"); code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "DATABASE_URL") {
		t.Errorf("migrate without DATABASE_URL: %d %q", code, stderr)
	}
	if code, _, stderr := runCmd(t, ctx, map[string]string{"DATABASE_URL": url, "HERALD_SMTP_URL": "http://x"}, "work"); code != 1 || !strings.Contains(stderr, "HERALD_SMTP_URL") {
		t.Errorf("bad HERALD_SMTP_URL: %d %q", code, stderr)
	}
}

func TestRefusesStaleSchema(t *testing.T) {
	t.Parallel()
	url := dbtest.NewDB(t)
	pool, err := db.Open(context.Background(), url, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(context.Background(), "DELETE FROM herald_migrations WHERE version = (SELECT max(version) FROM herald_migrations)")
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, context.Background(), map[string]string{"DATABASE_URL": url, "HERALD_ADDR": freeAddr(t)}, "serve")
	if code != 1 || !strings.Contains(stderr, "herald migrate") {
		t.Fatalf("serve on a stale schema: %d %q", code, stderr)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// buildHerald compiles the binary for tests that run it as a separate process.
func buildHerald(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herald")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestServeWorkDrain runs `serve` in-process and `work` as a real process, sends a message through
// the API, and sends the worker SIGTERM while the relay is still receiving the message: the
// worker must finish the delivery and record it before exiting 0.
func TestServeWorkDrain(t *testing.T) {
	t.Parallel()
	bin := buildHerald(t)
	url := dbtest.NewDB(t)
	inData := make(chan struct{}, 1)
	capture, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0", DataHook: func(*smtpcapture.Message) error {
		inData <- struct{}{}
		time.Sleep(700 * time.Millisecond)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	pool, err := db.Open(context.Background(), url, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ws, _ := workspace.Ensure(context.Background(), pool, "acme")
	key, _ := workspace.CreateKey(context.Background(), pool, ws.ID, []string{"messages:send"})

	apiAddr, workAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{"DATABASE_URL": url, "HERALD_SMTP_URL": "smtp://" + capture.Addr() + "?tls=none",
		"HERALD_LOG_LEVEL": "warn", "HERALD_SHUTDOWN_TIMEOUT": "10s", "HERALD_ADDR": apiAddr,
		"HERALD_HASH_KEY": "test-hash-key-0123456789", "HERALD_TOKEN_KEYS": "1:test-token-key-0123456789"}
	serveCtx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	serveDone := make(chan int, 1)
	go func() { c, _, _ := runCmd(t, serveCtx, env, "serve"); serveDone <- c }()

	work := exec.Command(bin, "work", "--addr", workAddr)
	for k, v := range env {
		work.Env = append(work.Env, k+"="+v)
	}
	var workErr strings.Builder
	work.Stderr = &workErr
	if err := work.Start(); err != nil {
		t.Fatal(err)
	}
	defer work.Process.Kill() //nolint:errcheck
	waitHTTP(t, "http://"+apiAddr+"/readyz")
	waitHTTP(t, "http://"+workAddr+"/readyz")
	if body := get(t, "http://"+apiAddr+"/healthz"); !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %q", body)
	}

	req, _ := http.NewRequest("POST", "http://"+apiAddr+"/v1/messages",
		strings.NewReader(`{"from":"a@acme.example","to":"x@example.com","subject":"drain","text":"t"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Idempotency-Key", "drain-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 202 {
		t.Fatalf("POST: %v %v", res, err)
	}
	res.Body.Close()
	select {
	case <-inData:
	case <-time.After(15 * time.Second):
		t.Fatal("message never reached SMTP")
	}
	if err := work.Process.Signal(syscall.SIGTERM); err != nil { // while the relay is receiving DATA
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- work.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("work exited with %v: %s", err, workErr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("work did not exit after SIGTERM")
	}
	var status string
	if err := pool.QueryRow(context.Background(), "SELECT status FROM messages").Scan(&status); err != nil || status != "sent" {
		t.Fatalf("after drain: status %q %v; want sent", status, err)
	}
	if capture.Count() != 1 {
		t.Errorf("SMTP received %d", capture.Count())
	}
	metrics := get(t, "http://"+apiAddr+"/metrics")
	for _, want := range []string{`herald_messages_accepted_total{stream="transactional"} 1`, `herald_queue_jobs{queue="transactional",state="available"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("serve /metrics lacks %s", want)
		}
	}
	if body := get(t, "http://"+apiAddr+"/nope"); !strings.Contains(body, `"status":404`) {
		t.Errorf("unknown path: %s", body)
	}
	stopServe()
	if code := <-serveDone; code != 0 {
		t.Errorf("serve exited %d", code)
	}
}
