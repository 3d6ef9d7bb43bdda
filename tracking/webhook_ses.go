package tracking

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // SNS SignatureVersion 1 is SHA1withRSA; version 2 is preferred
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"herald/internal/httpx"
)

// snsHostRE is the host SNS signing certificates and subscription URLs must come from.
var snsHostRE = regexp.MustCompile(`^sns\.[a-z0-9-]{1,32}\.amazonaws\.com(\.cn)?$`)

// snsCertName is the name an SNS signing certificate is issued to.
const snsCertName = "sns.amazonaws.com"

// Limits of the SNS verifier.
const (
	maxCertBytes  = 64 << 10
	maxCachedCert = 32
	snsFetchLimit = 10 * time.Second
)

// SNSVerifier checks the signatures of Amazon SNS messages (SignatureVersion 1, SHA1withRSA,
// and 2, SHA256withRSA) with the signing certificate named by SigningCertURL, fetched only over
// https from sns.REGION.amazonaws.com, verified against Roots, and cached; and confirms
// subscriptions by a GET of their SubscribeURL under the same host rule.
type SNSVerifier struct {
	// Client fetches certificates and confirms subscriptions (a client with a 10 s timeout when
	// nil). Tests give one that reaches their own server.
	Client *http.Client
	// Roots verify the certificate chain (the system's roots when nil).
	Roots *x509.CertPool

	mu    sync.Mutex
	certs map[string]*x509.Certificate
}

// snsMessage is an SNS HTTP(S) delivery.
type snsMessage struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	Token            string  `json:"Token"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     string  `json:"SubscribeURL"`
}

// errSNSSignature is wrapped by Verify's error for a message whose signature does not verify.
var errSNSSignature = errors.New("SNS signature does not verify")

// snsURL checks that raw is an https URL on an SNS host.
func snsURL(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" || !snsHostRE.MatchString(u.Hostname()) {
		return nil, false
	}
	return u, true
}

// stringToSign builds the canonical text SNS signs: for a notification Message, MessageId,
// Subject (when present), Timestamp, TopicArn, Type; for (un)subscription confirmations Message,
// MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type. Each name and value on its own line.
func (m *snsMessage) stringToSign() (string, error) {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	switch m.Type {
	case "Notification":
		add("Message", m.Message)
		add("MessageId", m.MessageID)
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	case "SubscriptionConfirmation", "UnsubscribeConfirmation":
		add("Message", m.Message)
		add("MessageId", m.MessageID)
		add("SubscribeURL", m.SubscribeURL)
		add("Timestamp", m.Timestamp)
		add("Token", m.Token)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	default:
		return "", fmt.Errorf("unknown SNS message type %q", m.Type)
	}
	return b.String(), nil
}

// Verify checks m's signature.
func (v *SNSVerifier) verify(ctx context.Context, m *snsMessage) error {
	text, err := m.stringToSign()
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("%w: signature is not base64", errSNSSignature)
	}
	cert, err := v.cert(ctx, m.SigningCertURL)
	if err != nil {
		return err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: certificate key is not RSA", errSNSSignature)
	}
	switch m.SignatureVersion {
	case "1":
		d := sha1.Sum([]byte(text)) //nolint:gosec // required by SignatureVersion 1
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA1, d[:], sig)
	case "2":
		d := sha256.Sum256([]byte(text))
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
	default:
		return fmt.Errorf("%w: unknown SignatureVersion %q", errSNSSignature, m.SignatureVersion)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errSNSSignature, err)
	}
	return nil
}

// cert returns the signing certificate at raw, from the cache or fetched and verified.
func (v *SNSVerifier) cert(ctx context.Context, raw string) (*x509.Certificate, error) {
	u, ok := snsURL(raw)
	if !ok {
		return nil, fmt.Errorf("%w: SigningCertURL is not an https URL on sns.REGION.amazonaws.com", errSNSSignature)
	}
	key := u.String()
	v.mu.Lock()
	c := v.certs[key]
	v.mu.Unlock()
	if c != nil {
		return c, nil
	}
	body, err := v.get(ctx, u, maxCertBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch SNS certificate: %w", err)
	}
	blk, rest := pem.Decode(body)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: no PEM certificate at SigningCertURL", errSNSSignature)
	}
	c, err = x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errSNSSignature, err)
	}
	inter := x509.NewCertPool()
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if ic, err := x509.ParseCertificate(b.Bytes); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: v.Roots, Intermediates: inter, DNSName: snsCertName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", errSNSSignature, err)
	}
	v.mu.Lock()
	if v.certs == nil || len(v.certs) >= maxCachedCert {
		v.certs = map[string]*x509.Certificate{}
	}
	v.certs[key] = c
	v.mu.Unlock()
	return c, nil
}

func (v *SNSVerifier) client() *http.Client {
	if v.Client != nil {
		return v.Client
	}
	return &http.Client{Timeout: snsFetchLimit}
}

// get fetches u (already host-checked), following no redirect, reading at most limit bytes.
func (v *SNSVerifier) get(ctx context.Context, u *url.URL, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, snsFetchLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	c := *v.client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u.Host, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

// confirm GETs a subscription's SubscribeURL, which must be https on an SNS host.
func (v *SNSVerifier) confirm(ctx context.Context, raw string) error {
	u, ok := snsURL(raw)
	if !ok {
		return errors.New("SubscribeURL is not an https URL on sns.REGION.amazonaws.com")
	}
	if _, err := v.get(ctx, u, 64<<10); err != nil {
		return fmt.Errorf("confirm SNS subscription: %w", err)
	}
	return nil
}

// sesNotification is the part of an SES bounce or complaint notification Herald reads.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"` // configuration-set event publishing
	Bounce           *struct {
		BounceType        string `json:"bounceType"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
		Timestamp  time.Time `json:"timestamp"`
		FeedbackID string    `json:"feedbackId"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
		ComplaintFeedbackType string    `json:"complaintFeedbackType"`
		Timestamp             time.Time `json:"timestamp"`
		FeedbackID            string    `json:"feedbackId"`
	} `json:"complaint"`
	Mail struct {
		Headers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
		CommonHeaders struct {
			MessageID string `json:"messageId"`
		} `json:"commonHeaders"`
	} `json:"mail"`
}

// ses handles POST /hooks/ses/{key}: an SNS message whose signature verifies and whose topic
// the workspace accepts. A SubscriptionConfirmation is confirmed; a Notification carrying an
// SES Bounce (Permanent hard, Transient and Undetermined soft) or Complaint is recorded, one
// report per recipient.
func (h *WebhookHandler) ses(w http.ResponseWriter, r *http.Request) error {
	s, err := h.hookWorkspace(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var m snsMessage
	if err := json.Unmarshal(body, &m); err != nil || m.Type == "" {
		return httpx.BadRequest("body is not an SNS message")
	}
	if len(s.SESTopicARNs) == 0 {
		return forbidden("SES webhook is not configured for this workspace")
	}
	if !slices.Contains(s.SESTopicARNs, m.TopicArn) {
		return forbidden("topic is not accepted by this workspace")
	}
	if err := h.SNS.verify(r.Context(), &m); err != nil {
		h.logger().WarnContext(r.Context(), "SES webhook: signature refused", "workspace_id", s.WorkspaceID, "err", err)
		return forbidden("SNS signature does not verify")
	}
	switch m.Type {
	case "SubscriptionConfirmation":
		if err := h.SNS.confirm(r.Context(), m.SubscribeURL); err != nil {
			h.logger().WarnContext(r.Context(), "SES webhook: subscription not confirmed", "workspace_id", s.WorkspaceID, "err", err)
			return httpx.NewProblem(http.StatusBadGateway, "the subscription could not be confirmed")
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"subscription": "confirmed"})
		return nil
	case "UnsubscribeConfirmation":
		writeProcessed(w, 0, 0, 0, 1)
		return nil
	}
	var n sesNotification
	if err := json.Unmarshal([]byte(m.Message), &n); err != nil {
		return httpx.BadRequest("SNS Message is not an SES notification")
	}
	reports, ignored := sesReports(s.WorkspaceID, m.MessageID, &n)
	recorded, dups, unmatched, err := h.processAll(r.Context(), reports)
	if err != nil {
		return err
	}
	writeProcessed(w, recorded, dups, unmatched, ignored)
	return nil
}

func sesReports(workspaceID int64, snsID string, n *sesNotification) (reports []Report, ignored int) {
	mid := n.Mail.CommonHeaders.MessageID
	for _, hd := range n.Mail.Headers {
		if strings.EqualFold(hd.Name, "Message-ID") {
			mid = hd.Value
		}
	}
	typ := n.NotificationType
	if typ == "" {
		typ = n.EventType
	}
	switch {
	case typ == "Bounce" && n.Bounce != nil:
		kind := KindSoftBounce
		if n.Bounce.BounceType == "Permanent" {
			kind = KindHardBounce
		}
		id := n.Bounce.FeedbackID
		if id == "" {
			id = snsID
		}
		for i, rc := range n.Bounce.BouncedRecipients {
			if i >= maxEventsPerPost {
				break
			}
			reports = append(reports, Report{WorkspaceID: workspaceID, Kind: kind, Source: SourceSES, MessageID: mid,
				Address: rc.EmailAddress, Status: rc.Status, Detail: rc.DiagnosticCode, At: n.Bounce.Timestamp,
				ProviderEventID: eventIDPart(id, i)})
		}
	case typ == "Complaint" && n.Complaint != nil:
		id := n.Complaint.FeedbackID
		if id == "" {
			id = snsID
		}
		for i, rc := range n.Complaint.ComplainedRecipients {
			if i >= maxEventsPerPost {
				break
			}
			reports = append(reports, Report{WorkspaceID: workspaceID, Kind: KindComplaint, Source: SourceSES, MessageID: mid,
				Address: rc.EmailAddress, Detail: "feedback-type " + n.Complaint.ComplaintFeedbackType, At: n.Complaint.Timestamp,
				ProviderEventID: eventIDPart(id, i)})
		}
	default:
		ignored = 1 // deliveries, sends, opens, ...
	}
	return reports, ignored
}

// eventIDPart names recipient i of a provider event; empty without an event id.
func eventIDPart(id string, i int) string {
	if id == "" {
		return ""
	}
	return id + "/" + strconv.Itoa(i)
}
