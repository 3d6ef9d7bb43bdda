package inboundsmtp_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"herald/internal/inboundsmtp"
)

const domain = "mx.herald.example"

// recorder is a route's handler: it accepts prefix+TOKEN@domain, records what it is handed and
// answers with reply (of the token "fail" when set: the token picks the reply).
type recorder struct {
	prefix string
	mu     sync.Mutex
	got    []delivery
	reply  map[string]error // by token; no entry: 250
}

type delivery struct {
	rcpts []string
	msg   string
}

func (r *recorder) accept(addr string) (string, bool) {
	local, dom, ok := strings.Cut(addr, "@")
	if !ok || !strings.EqualFold(dom, domain) || !strings.HasPrefix(local, r.prefix) || len(local) == len(r.prefix) {
		return "", false
	}
	return local[len(r.prefix):], true
}

func (r *recorder) deliver(ctx context.Context, msg []byte, rcpts []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, delivery{rcpts: rcpts, msg: string(msg)})
	for _, t := range rcpts {
		if err := r.reply[t]; err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// bundle is a server with two recording routes, "a+" (cap 1 KiB) and "b+" (cap 8 KiB).
type bundle struct {
	srv  *inboundsmtp.Server
	addr string
	a, b *recorder
	done chan error
}

func setup(t *testing.T, extra ...inboundsmtp.Route) *bundle {
	t.Helper()
	bd := &bundle{
		a: &recorder{prefix: "a+", reply: map[string]error{
			"temp": inboundsmtp.TryLater(), "gone": inboundsmtp.NoSuchAddress(), "broken": errors.New("database down")}},
		b: &recorder{prefix: "b+", reply: map[string]error{
			"bad": &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed report"}}},
	}
	routes := append([]inboundsmtp.Route{
		inboundsmtp.NewRoute("a", 1<<10, bd.a.accept, bd.a.deliver),
		inboundsmtp.NewRoute("b", 8<<10, bd.b.accept, bd.b.deliver),
	}, extra...)
	bd.srv = &inboundsmtp.Server{Domain: domain, Routes: routes, WorkLimit: 5 * time.Second}
	bd.addr, bd.done = bd.serve(t)
	t.Cleanup(func() {
		if err := bd.srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-bd.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return bd
}

// serve makes the server answer on one more loopback listener.
func (bd *bundle) serve(t *testing.T) (string, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- bd.srv.Serve(ln) }()
	return ln.Addr().String(), done
}

// send delivers msg to rcpts in one transaction and returns the first refusal (RCPT or DATA).
func send(t *testing.T, addr string, rcpts []string, msg string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

// reply is an SMTP result as "code x.y.z", "250" for success.
func reply(err error) string {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return "250"
	case errors.As(err, &se):
		c := se.EnhancedCode
		return strings.Join([]string{itoa(se.Code), itoa(c[0]) + "." + itoa(c[1]) + "." + itoa(c[2])}, " ")
	}
	return "error: " + err.Error()
}

func itoa(n int) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + itoa(n%10)
}

const mail = "Subject: hello\r\n\r\nbody\r\n"

// text is n bytes of mail body in lines of 100 bytes.
func text(n int) string {
	return strings.Repeat(strings.Repeat("x", 98)+"\r\n", n/100)
}

func addr(local string) string { return local + "@" + domain }

func TestRouting(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	for _, tc := range []struct {
		name   string
		rcpts  []string
		msg    string
		reply  string
		a, b   [][]string // recipients handed to each route, per delivery
		sizeOK bool
	}{
		{name: "route a", rcpts: []string{addr("a+1")}, reply: "250", a: [][]string{{"1"}}},
		{name: "route b", rcpts: []string{addr("b+2")}, reply: "250", b: [][]string{{"2"}}},
		{name: "domain case folded", rcpts: []string{"a+3@MX.Herald.Example"}, reply: "250", a: [][]string{{"3"}}},
		{name: "mixed, in RCPT order per route", rcpts: []string{addr("b+4"), addr("a+5"), addr("b+6")}, reply: "250",
			a: [][]string{{"5"}}, b: [][]string{{"4", "6"}}},
		{name: "mixed: a temporary failure wins over success", rcpts: []string{addr("a+temp"), addr("b+7")}, reply: "451 4.3.0",
			a: [][]string{{"temp"}}, b: [][]string{{"7"}}},
		{name: "mixed: a temporary failure wins over a permanent one", rcpts: []string{addr("b+bad"), addr("a+temp")}, reply: "451 4.3.0",
			a: [][]string{{"temp"}}, b: [][]string{{"bad"}}},
		{name: "mixed: the first route's refusal", rcpts: []string{addr("a+gone"), addr("b+bad")}, reply: "550 5.1.1",
			a: [][]string{{"gone"}}, b: [][]string{{"bad"}}},
		{name: "a route's own reply", rcpts: []string{addr("b+bad")}, reply: "554 5.6.0", b: [][]string{{"bad"}}},
		{name: "a route's plain error is a temporary failure", rcpts: []string{addr("a+broken")}, reply: "451 4.3.0", a: [][]string{{"broken"}}},
		{name: "oversize for a, within b's cap", rcpts: []string{addr("a+8")}, msg: text(2 << 10), reply: "552 5.3.4"},
		{name: "same size for b", rcpts: []string{addr("b+9")}, msg: text(2 << 10), reply: "250",
			b: [][]string{{"9"}}, sizeOK: true},
		{name: "mixed, oversize for a only: b has it, the reply is 552", rcpts: []string{addr("a+10"), addr("b+11")},
			msg: text(2 << 10), reply: "552 5.3.4", b: [][]string{{"11"}}, sizeOK: true},
		{name: "oversize for every route", rcpts: []string{addr("a+12"), addr("b+13")}, msg: text(9 << 10), reply: "552 5.3.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := [2]int{len(bd.a.deliveries()), len(bd.b.deliveries())}
			msg := tc.msg
			if msg == "" {
				msg = mail
			}
			if got := reply(send(t, bd.addr, tc.rcpts, msg)); got != tc.reply {
				t.Errorf("reply %s, want %s", got, tc.reply)
			}
			for i, r := range []*recorder{bd.a, bd.b} {
				want := [][][]string{tc.a, tc.b}[i]
				got := r.deliveries()[before[i]:]
				if len(got) != len(want) {
					t.Fatalf("route %s: %d deliveries, want %d", r.prefix, len(got), len(want))
				}
				for j, d := range got {
					if !slices.Equal(d.rcpts, want[j]) {
						t.Errorf("route %s: recipients %q, want %q", r.prefix, d.rcpts, want[j])
					}
					if tc.msg == "" && d.msg != mail {
						t.Errorf("route %s: message %q", r.prefix, d.msg)
					}
					if tc.sizeOK && len(d.msg) < len(tc.msg) {
						t.Errorf("route %s: %d bytes of %d", r.prefix, len(d.msg), len(tc.msg))
					}
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	bd := setup(t)
	for name, to := range map[string]string{
		"postmaster":     addr("postmaster"),
		"relay attempt":  "victim@example.org",
		"other domain":   "a+1@example.org",
		"bare prefix":    addr("a+"),
		"unknown prefix": addr("c+1"),
		"subdomain":      "a+1@sub." + domain,
	} {
		err := send(t, bd.addr, []string{to}, mail)
		if got := reply(err); got != "550 5.1.1" {
			t.Errorf("%s: %s, want 550 5.1.1", name, got)
		}
	}
	if got := reply(send(t, bd.addr, []string{"a+1"}, mail)); got != "501 5.5.2" {
		t.Errorf("no domain: %s, want 501 5.5.2", got)
	}
	// A refused recipient next to an accepted one: the message goes to the accepted one only.
	c, err := smtp.Dial(bd.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if got := reply(c.Rcpt("victim@example.org", nil)); got != "550 5.1.1" {
		t.Errorf("relay next to a valid recipient: %s", got)
	}
	// At most DefaultMaxRecipients recipients per message.
	for i := range inboundsmtp.DefaultMaxRecipients + 1 {
		err := c.Rcpt(addr("b+r"+itoa(i)), nil)
		want := "250"
		if i == inboundsmtp.DefaultMaxRecipients {
			want = "452 4.5.3"
		}
		if got := reply(err); got != want {
			t.Errorf("recipient %d: %s, want %s", i+1, got, want)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(mail)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	d := bd.b.deliveries()
	if len(d) != 1 || len(d[0].rcpts) != inboundsmtp.DefaultMaxRecipients || len(bd.a.deliveries()) != 0 {
		t.Fatalf("deliveries a %v b %v", bd.a.deliveries(), d)
	}
	// The SIZE the server announces is the largest route's cap.
	if ok, size := c.Extension("SIZE"); !ok || size != itoa(8<<10) {
		t.Errorf("SIZE %v %q, want %d", ok, size, 8<<10)
	}
}

func TestServeValidates(t *testing.T) {
	t.Parallel()
	r := &recorder{prefix: "a+"}
	good := inboundsmtp.NewRoute("a", 1024, r.accept, r.deliver)
	for name, srv := range map[string]*inboundsmtp.Server{
		"no domain":     {Routes: []inboundsmtp.Route{good}},
		"no routes":     {Domain: domain},
		"zero route":    {Domain: domain, Routes: []inboundsmtp.Route{{Name: "x", MaxMessageBytes: 10}}},
		"no size cap":   {Domain: domain, Routes: []inboundsmtp.Route{inboundsmtp.NewRoute("a", 0, r.accept, r.deliver)}},
		"negative size": {Domain: domain, Routes: []inboundsmtp.Route{inboundsmtp.NewRoute("a", -1, r.accept, r.deliver)}},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(ln); err == nil {
			t.Errorf("%s: Serve accepted it", name)
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Errorf("%s: the listener was left open", name)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("%s: Close: %v", name, err)
		}
	}
}

// TestCloseCancelsWork closes the server while a route works on a message and while a client is
// in the middle of DATA: the route's context ends, Close waits for it, the senders get no 250 and
// Serve returns nil on both listeners.
func TestCloseCancelsWork(t *testing.T) {
	t.Parallel()
	started, returned := make(chan struct{}), make(chan error, 1)
	slow := inboundsmtp.NewRoute("slow", 1024,
		func(addr string) (string, bool) { return addr, strings.HasPrefix(addr, "slow@") },
		func(ctx context.Context, msg []byte, rcpts []string) error {
			close(started)
			<-ctx.Done()
			returned <- ctx.Err()
			return ctx.Err()
		})
	bd := setup(t, slow)
	addr2, done2 := bd.serve(t)

	// A client half-way through its DATA on the second listener.
	c, err := smtp.Dial(addr2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(addr("a+partial"), nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: half\r\n")); err != nil {
		t.Fatal(err)
	}

	// A message whose route is working on it.
	sent := make(chan error, 1)
	go func() { sent <- send(t, bd.addr, []string{"slow@x"}, mail) }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow route was not called")
	}
	closed := make(chan error, 1)
	go func() { closed <- bd.srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	// Close returned only after the route did, cancelled rather than timed out.
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("route's context: %v", err)
		}
	default:
		t.Fatal("Close returned while the route was still working")
	}
	if err := <-sent; err == nil {
		t.Fatal("the slow message was acknowledged")
	}
	if _, err := w.Write([]byte("\r\nrest\r\n")); err == nil {
		if err := w.Close(); err == nil {
			t.Fatal("the half-sent message was acknowledged")
		}
	}
	if err := <-done2; err != nil {
		t.Fatalf("Serve on the second listener: %v", err)
	}
	if d := bd.a.deliveries(); len(d) != 0 {
		t.Fatalf("the half-sent message reached its route: %v", d)
	}
	if _, err := net.Dial("tcp", bd.addr); err == nil {
		t.Fatal("still listening after Close")
	}
}
