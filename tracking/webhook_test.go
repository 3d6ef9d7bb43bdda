package tracking

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"herald/consent"
)

// fbRequest sends a request and returns the status and body.
func fbRequest(tb testing.TB, method, url string, body []byte, hdr map[string]string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		tb.Errorf("%s %s: %d with Content-Type %q, want problem+json", method, url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, buf.String()
}

func TestWebhookSettingsAPI(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws := b.workspace(t)
	h := &WebhookHandler{DB: b.pool, Keys: b.svc.Keys, Feedback: b.fb, BaseURL: "https://herald.example", SNS: &SNSVerifier{}}
	srv := b.hookServer(t, h, ws)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	good := fmt.Sprintf(`{"sendgrid_public_key":%q,"postmark_user":"pm","postmark_password":"a-long-random-secret-1","ses_topic_arns":["arn:aws:sns:eu-west-1:123456789012:ses-bounces"]}`,
		base64.StdEncoding.EncodeToString(der))
	code, body := fbRequest(t, "PUT", srv.URL+"/v1/feedback/settings", []byte(good), map[string]string{"Content-Type": "application/json"})
	if code != 200 || strings.Contains(body, "a-long-random-secret-1") || !strings.Contains(body, `"postmark_password_set":true`) ||
		!strings.Contains(body, "https://herald.example/hooks/ses/"+WebhookKey(b.svc.Keys, ws)) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	// Omitting the password keeps it.
	code, body = fbRequest(t, "PUT", srv.URL+"/v1/feedback/settings", []byte(`{"postmark_user":"pm"}`), map[string]string{"Content-Type": "application/json"})
	if code != 200 || !strings.Contains(body, `"postmark_password_set":true`) || !strings.Contains(body, `"ses_topic_arns":[]`) {
		t.Fatalf("PUT without password: %d %s", code, body)
	}
	var audits int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM audit_log WHERE workspace_id = $1 AND action = 'feedback_settings.put'
		AND detail::text NOT LIKE '%secret%'`, ws).Scan(&audits); err != nil || audits != 2 {
		t.Fatalf("%d audit rows (%v), want 2 without the secret", audits, err)
	}
	for name, body := range map[string]string{
		"rsa key":        fmt.Sprintf(`{"sendgrid_public_key":%q}`, base64.StdEncoding.EncodeToString(rsaDER)),
		"garbage key":    `{"sendgrid_public_key":"<script>alert(1)</script>"}`,
		"short password": `{"postmark_user":"pm","postmark_password":"short"}`,
		"user with crlf": `{"postmark_user":"pm\r\nX: y","postmark_password":"a-long-random-secret-1"}`,
		"bad arn":        `{"ses_topic_arns":["arn:aws:sns:eu-west-1:1:x; DROP TABLE"]}`,
		"unknown field":  `{"sendgrid_key":"x"}`,
	} {
		code, resp := fbRequest(t, "PUT", srv.URL+"/v1/feedback/settings", []byte(body), map[string]string{"Content-Type": "application/json"})
		if code < 400 || code >= 500 {
			t.Errorf("%s: %d %s, want 4xx", name, code, resp)
		}
	}
	code, body = fbRequest(t, "GET", srv.URL+"/v1/feedback/settings", nil, nil)
	if code != 200 || strings.Contains(body, "secret") {
		t.Fatalf("GET: %d %s", code, body)
	}
}

func TestSendGridWebhook(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws, other := b.workspace(t), b.workspace(t)
	h := &WebhookHandler{DB: b.pool, Keys: b.svc.Keys, Feedback: b.fb, BaseURL: "https://herald.example", SNS: &SNSVerifier{}}
	srv := b.hookServer(t, h, ws)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if _, err := b.pool.Exec(b.ctx, `INSERT INTO feedback_webhooks (workspace_id, sendgrid_public_key) VALUES ($1, $2)`,
		ws, base64.StdEncoding.EncodeToString(der)); err != nil {
		t.Fatal(err)
	}
	_, hard := b.contact(t, ws, "news")
	_, blocked := b.contact(t, ws)
	_, spam := b.contact(t, ws, "news")
	_, dropped := b.contact(t, ws)
	// Events as SendGrid's Event Webhook reference shows them.
	payload := fmt.Sprintf(`[
 {"email":%q,"timestamp":1764000000,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"bounce","category":"cat facts",
  "sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
  "reason":"500 unknown recipient","status":"5.0.0","type":"bounce"},
 {"email":%q,"timestamp":1764000000,"event":"bounce","sg_event_id":"blk-1","reason":"550 blocked","status":"5.7.1","type":"blocked"},
 {"email":%q,"timestamp":1764000000,"event":"spamreport","sg_event_id":"spam-1","sg_message_id":"x"},
 {"email":%q,"timestamp":1764000000,"event":"dropped","sg_event_id":"drop-1","reason":"Bounced Address","status":"5.0.0"},
 {"email":%q,"timestamp":1764000000,"event":"deferred","sg_event_id":"def-1","response":"400 try again later","attempt":"5"},
 {"email":%q,"timestamp":1764000000,"event":"delivered","sg_event_id":"del-1","response":"250 OK"}
]`, hard, blocked, spam, dropped, hard, hard)
	sign := func(ts, body string) string {
		d := sha256.Sum256([]byte(ts + body))
		sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(sig)
	}
	url := srv.URL + "/hooks/sendgrid/" + WebhookKey(b.svc.Keys, ws)
	hdr := func(ts, sig string) map[string]string {
		return map[string]string{sendGridTSHeader: ts, sendGridSigHeader: sig, "Content-Type": "application/json"}
	}
	sig := sign("1764000000", payload)
	for _, tc := range []struct {
		name string
		url  string
		body string
		hdr  map[string]string
		want int
	}{
		{"no signature", url, payload, hdr("", ""), 401},
		{"other timestamp", url, payload, hdr("1764000001", sig), 401},
		{"tampered body", url, strings.Replace(payload, "spamreport", "delivered", 1), hdr("1764000000", sig), 401},
		{"signature not base64", url, payload, hdr("1764000000", "!!!"), 401},
		{"other workspace's url", srv.URL + "/hooks/sendgrid/" + WebhookKey(b.svc.Keys, other), payload, hdr("1764000000", sig), 403},
		{"forged key", url[:len(url)-2] + "aa", payload, hdr("1764000000", sig), 404},
		{"malformed", url, `{"not":"an array"}`, hdr("1", sign("1", `{"not":"an array"}`)), 400},
		{"oversized", url, "[" + strings.Repeat(" ", maxWebhookBody) + "]", hdr("1", "x"), 413},
	} {
		if code, body := fbRequest(t, "POST", tc.url, []byte(tc.body), tc.hdr); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if n := b.feedbackRows(t, ws, KindHardBounce); n != 0 {
		t.Fatal("a refused request was recorded")
	}
	for range 2 { // SendGrid retries a batch it got no 2xx for: the second counts nothing
		code, body := fbRequest(t, "POST", url, []byte(payload), hdr("1764000000", sig))
		if code != 200 {
			t.Fatalf("valid POST: %d %s", code, body)
		}
	}
	if h, s, c := b.feedbackRows(t, ws, KindHardBounce), b.feedbackRows(t, ws, KindSoftBounce), b.feedbackRows(t, ws, KindComplaint); h != 2 || s != 1 || c != 1 {
		t.Fatalf("rows hard %d soft %d complaint %d, want 2 1 1", h, s, c)
	}
	for addr, want := range map[string]string{hard: consent.ReasonHardBounce, dropped: consent.ReasonHardBounce, spam: consent.ReasonComplaint, blocked: ""} {
		if got := b.suppression(t, ws, addr); got != want {
			t.Errorf("%s: suppression %q, want %q", addr, got, want)
		}
	}
}

func TestPostmarkWebhook(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws := b.workspace(t)
	h := &WebhookHandler{DB: b.pool, Keys: b.svc.Keys, Feedback: b.fb, SNS: &SNSVerifier{}}
	srv := b.hookServer(t, h, ws)
	pw := sha256.Sum256([]byte("a-long-random-secret-1"))
	if _, err := b.pool.Exec(b.ctx, `INSERT INTO feedback_webhooks (workspace_id, postmark_user, postmark_password_hash) VALUES ($1, 'pm', $2)`,
		ws, pw[:]); err != nil {
		t.Fatal(err)
	}
	_, hard := b.contact(t, ws, "news")
	_, spam := b.contact(t, ws, "news")
	// As Postmark's bounce webhook documentation shows it.
	bounce := fmt.Sprintf(`{"RecordType":"Bounce","MessageStream":"outbound","ID":4323372036854775807,"Type":"HardBounce","TypeCode":1,
		"Name":"Hard bounce","Tag":"Test","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","ServerID":23,
		"Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).",
		"Details":"Test bounce details","Email":%q,"From":"sender@example.com","BouncedAt":"2026-11-24T06:28:10.2735393-04:00",
		"DumpAvailable":true,"Inactive":true,"CanActivate":true,"Subject":"Test subject","Content":"<Full dump of bounce>"}`, hard)
	complaint := fmt.Sprintf(`{"RecordType":"SpamComplaint","MessageStream":"outbound","ID":42,"Type":"SpamComplaint","TypeCode":512,
		"Name":"Spam complaint","MessageID":"00000000-0000-0000-0000-000000000000","Email":%q,"From":"sender@example.com",
		"BouncedAt":"2026-11-24T11:00:00Z","Subject":"Test subject"}`, spam)
	url := srv.URL + "/hooks/postmark/" + WebhookKey(b.svc.Keys, ws)
	auth := func(u, p string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}
	}
	for _, tc := range []struct {
		name string
		body string
		hdr  map[string]string
		want int
	}{
		{"no auth", bounce, nil, 401},
		{"wrong password", bounce, auth("pm", "a-long-random-secret-2"), 403},
		{"wrong user", bounce, auth("pm2", "a-long-random-secret-1"), 403},
		{"malformed", `{"RecordType":`, auth("pm", "a-long-random-secret-1"), 400},
		{"bad time", `{"RecordType":"Bounce","BouncedAt":"yesterday"}`, auth("pm", "a-long-random-secret-1"), 400},
		{"bounce", bounce, auth("pm", "a-long-random-secret-1"), 200},
		{"bounce again", bounce, auth("pm", "a-long-random-secret-1"), 200},
		{"complaint", complaint, auth("pm", "a-long-random-secret-1"), 200},
		{"ignored type", `{"RecordType":"Bounce","ID":7,"Type":"AutoResponder","Email":"a@b.example"}`, auth("pm", "a-long-random-secret-1"), 200},
	} {
		if code, body := fbRequest(t, "POST", url, []byte(tc.body), tc.hdr); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if b.suppression(t, ws, hard) != consent.ReasonHardBounce || b.suppression(t, ws, spam) != consent.ReasonComplaint {
		t.Fatal("Postmark reports not acted on")
	}
	if n := b.feedbackRows(t, ws, KindHardBounce); n != 1 {
		t.Fatalf("%d hard rows after a retried bounce, want 1", n)
	}
	if n, err := consent.Verify(b.ctx, b.pool, ws); err != nil || n == 0 {
		t.Fatalf("verify: %d %v", n, err)
	}
}

// snsFixture is a CA of the test's own, a signing certificate for sns.amazonaws.com, and an
// https server answering for sns.*.amazonaws.com with the certificate and subscription URLs.
type snsFixture struct {
	key       *rsa.PrivateKey
	certURL   string
	verifier  *SNSVerifier
	confirmed atomic.Int32
}

func newSNSFixture(tb testing.TB) *snsFixture {
	tb.Helper()
	caKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	caTpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(names ...string) (*rsa.PrivateKey, []byte) {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &k.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		return k, der
	}
	f := &snsFixture{}
	var signDER []byte
	f.key, signDER = issue(snsCertName)
	srvKey, srvDER := issue("sns.eu-west-1.amazonaws.com", "sns.us-east-1.amazonaws.com")
	signPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signDER})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/SimpleNotificationService-test.pem":
			_, _ = w.Write(signPEM)
		case r.URL.Query().Get("Action") == "ConfirmSubscription":
			f.confirmed.Add(1)
			_, _ = w.Write([]byte("<ConfirmSubscriptionResponse/>"))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	addr := srv.Listener.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr) // every host is the test server
		}}}
	f.verifier = &SNSVerifier{Client: client, Roots: roots}
	f.certURL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
	return f
}

// message builds a signed SNS message.
func (f *snsFixture) message(tb testing.TB, m snsMessage) []byte {
	tb.Helper()
	if m.SigningCertURL == "" {
		m.SigningCertURL = f.certURL
	}
	text, err := m.stringToSign()
	if err != nil {
		tb.Fatal(err)
	}
	var sig []byte
	if m.SignatureVersion == "1" {
		d := sha1Sum([]byte(text))
		sig, err = rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA1, d)
	} else {
		d := sha256.Sum256([]byte(text))
		sig, err = rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA256, d[:])
	}
	if err != nil {
		tb.Fatal(err)
	}
	m.Signature = base64.StdEncoding.EncodeToString(sig)
	out, _ := json.Marshal(m)
	return out
}

func TestSESWebhook(t *testing.T) {
	t.Parallel()
	b := fbSetup(t)
	ws := b.workspace(t)
	f := newSNSFixture(t)
	h := &WebhookHandler{DB: b.pool, Keys: b.svc.Keys, Feedback: b.fb, SNS: f.verifier}
	srv := b.hookServer(t, h, ws)
	const topic = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
	if _, err := b.pool.Exec(b.ctx, `INSERT INTO feedback_webhooks (workspace_id, ses_topic_arns) VALUES ($1, $2)`, ws, []string{topic}); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/hooks/ses/" + WebhookKey(b.svc.Keys, ws)
	cid, hard := b.contact(t, ws, "news")
	_, _, mid := b.message(t, ws, cid, hard)
	_, soft := b.contact(t, ws)
	_, spam := b.contact(t, ws, "news", "offers")

	// The SES bounce notification of the SES documentation, addressed to our message.
	bounceMsg := fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
		"bouncedRecipients":[{"emailAddress":"not-the-row@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],
		"timestamp":"2026-11-24T11:05:06.477Z","feedbackId":"0102015fd91a6479-ae22395c-1f7d-4423-a9e5-e0715bffc731-000000",
		"remoteMtaIp":"192.0.2.1","reportingMTA":"dsn; a4-8.smtp-out.eu-west-1.amazonses.com"},
		"mail":{"timestamp":"2026-11-24T11:05:04.000Z","source":"app@acme.example","messageId":"0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000",
		"destination":["not-the-row@example.org"],"headersTruncated":false,"headers":[{"name":"Message-ID","value":"<%s>"}],
		"commonHeaders":{"from":["app@acme.example"],"messageId":"0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000"}}}`, mid)
	transientMsg := fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull",
		"bouncedRecipients":[{"emailAddress":%q,"status":"4.2.2"}],"timestamp":"2026-11-24T11:05:06Z","feedbackId":"t-1"},"mail":{"messageId":"x"}}`, soft)
	complaintMsg := fmt.Sprintf(`{"notificationType":"Complaint","complaint":{"userAgent":"ExampleCorp Feedback Loop (V0.01)",
		"complainedRecipients":[{"emailAddress":%q}],"complaintFeedbackType":"abuse","arrivalDate":"2026-11-24T11:00:00Z",
		"timestamp":"2026-11-24T11:01:00Z","feedbackId":"c-1"},"mail":{"messageId":"y"}}`, spam)
	note := func(version, msg string) snsMessage {
		return snsMessage{Type: "Notification", MessageID: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", TopicArn: topic,
			Message: msg, Timestamp: "2026-11-24T11:05:07.000Z", SignatureVersion: version}
	}
	signed := f.message(t, note("2", bounceMsg))
	tampered := bytes.Replace(signed, []byte("Permanent"), []byte("Transient"), 1)
	otherTopic := note("2", bounceMsg)
	otherTopic.TopicArn = "arn:aws:sns:eu-west-1:123456789012:someone-else"
	badHost := note("2", bounceMsg)
	badHost.SigningCertURL = "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem"
	httpCert := note("2", bounceMsg)
	httpCert.SigningCertURL = "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
	sub := snsMessage{Type: "SubscriptionConfirmation", MessageID: "165545c9", Token: "2336412f37", TopicArn: topic,
		Message:      "You have chosen to subscribe to the topic " + topic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
		SubscribeURL: "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + topic + "&Token=2336412f37",
		Timestamp:    "2026-11-24T11:00:00.000Z", SignatureVersion: "1"}
	evilSub := sub
	evilSub.SubscribeURL = "https://evil.example/?Action=ConfirmSubscription"
	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"tampered", tampered, 403},
		{"other topic", f.message(t, otherTopic), 403},
		{"cert host", f.message(t, badHost), 403},
		{"cert over http", f.message(t, httpCert), 403},
		{"malformed", []byte(`{"Type":`), 400},
		{"not sns", []byte(`{"hello":"world"}`), 400},
		{"subscribe elsewhere", f.message(t, evilSub), 502},
		{"subscription", f.message(t, sub), 200},
		{"bounce v2", signed, 200},
		{"bounce retried", signed, 200},
		{"transient v1", f.message(t, note("1", transientMsg)), 200},
		{"complaint", f.message(t, note("2", complaintMsg)), 200},
	} {
		if code, body := fbRequest(t, "POST", url, tc.body, map[string]string{"Content-Type": "text/plain; charset=UTF-8"}); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if got := f.confirmed.Load(); got != 1 {
		t.Fatalf("%d subscription confirmations, want 1", got)
	}
	if b.suppression(t, ws, hard) != consent.ReasonHardBounce || b.suppression(t, ws, "not-the-row@example.org") != "" {
		t.Fatal("SES bounce not matched to the message by its Message-ID")
	}
	if b.suppression(t, ws, soft) != "" || b.feedbackRows(t, ws, KindSoftBounce) != 1 {
		t.Fatal("transient bounce: want one soft row and no suppression")
	}
	if b.suppression(t, ws, spam) != consent.ReasonComplaint || b.feedbackRows(t, ws, KindHardBounce) != 1 {
		t.Fatal("SES complaint not acted on, or the retried bounce counted twice")
	}
}

func sha1Sum(b []byte) []byte {
	h := crypto.SHA1.New()
	h.Write(b)
	return h.Sum(nil)
}
