package tracking

import (
	"os"
	"strings"
	"testing"
)

// sample reads a testdata report with RECIPIENT and MESSAGEID filled in.
func sample(tb testing.TB, name, recipient, messageID string) string {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "RECIPIENT", recipient)
	s = strings.ReplaceAll(s, "MESSAGEID", messageID)
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func TestParseReport(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, kind, source, status string
		original                   string
	}{
		{"dsn_hard.eml", KindHardBounce, SourceDSN, "5.1.1", "<m-1@mid.example>"},
		{"dsn_delayed.eml", KindSoftBounce, SourceDSN, "4.4.1", ""},
		{"arf_abuse.eml", KindComplaint, SourceARF, "", "<m-1@mid.example>"},
		{"plain_bounce.eml", KindHardBounce, SourceDSN, "5.1.1", ""},
	} {
		b, err := ParseReport(strings.NewReader(sample(t, tc.file, "a@example.org", "m-1@mid.example")))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if b.Kind != tc.kind || b.Source != tc.source || b.Status != tc.status || b.OriginalMessageID != tc.original || b.ReportID == "" {
			t.Errorf("%s: %+v; want kind %s source %s status %s original %s", tc.file, b, tc.kind, tc.source, tc.status, tc.original)
		}
	}
	for _, tc := range []struct{ name, msg, kind string }{
		{"plain soft", "Subject: Delivery delayed\r\n\r\nWe will keep trying: 451 4.7.1 greylisted\r\n", KindSoftBounce},
		{"plain without code", "Subject: oops\r\n\r\nsomething failed\r\n", KindSoftBounce},
		{"delivered dsn", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n" +
			"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: delivered\r\nStatus: 2.0.0\r\n--x--\r\n", ""},
		{"arf not-spam", "Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n--x\r\n" +
			"Content-Type: message/feedback-report\r\n\r\nFeedback-Type: not-spam\r\nVersion: 1\r\n--x--\r\n", ""},
		{"failed without code", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n" +
			"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: bogus\r\n--x--\r\n", KindSoftBounce},
	} {
		b, err := ParseReport(strings.NewReader(tc.msg))
		if err != nil || b.Kind != tc.kind {
			t.Errorf("%s: %+v, %v; want kind %q", tc.name, b, err, tc.kind)
		}
	}
	for name, msg := range map[string]string{
		"not mail":        "\x00\x01garbage without headers",
		"report, no part": "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
		"truncated":       "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nAction: fai",
	} {
		if b, err := ParseReport(strings.NewReader(msg)); err == nil && b.Kind != "" {
			t.Errorf("%s: %+v accepted", name, b)
		}
	}
}

func FuzzParseReport(f *testing.F) {
	for _, name := range []string{"dsn_hard.eml", "dsn_delayed.eml", "arf_abuse.eml", "plain_bounce.eml"} {
		f.Add(sample(f, name, "a@example.org", "m@x"))
	}
	f.Fuzz(func(t *testing.T, msg string) {
		b, err := ParseReport(strings.NewReader(msg))
		if err == nil && b.Kind != "" && b.Kind != KindHardBounce && b.Kind != KindSoftBounce && b.Kind != KindComplaint {
			t.Fatalf("kind %q", b.Kind)
		}
	})
}
