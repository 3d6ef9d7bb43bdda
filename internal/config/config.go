// Package config holds Herald's one configuration struct, filled from HERALD_* environment
// variables (and DATABASE_URL), with defaults and validation in one place. A secret may also be
// given as NAME_FILE, the path of a file that holds it.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// TLSPolicy says how the SMTP relay connection is encrypted.
type TLSPolicy string

// TLS policies accepted in HERALD_SMTP_URL's tls parameter.
const (
	TLSMandatory     TLSPolicy = "mandatory"
	TLSOpportunistic TLSPolicy = "opportunistic"
	TLSNone          TLSPolicy = "none"
)

// SMTP is the parsed relay configuration from HERALD_SMTP_URL.
type SMTP struct {
	Host     string
	Port     int
	Username string
	Password string
	TLS      TLSPolicy
	// ImplicitTLS is true for smtps:// URLs (TLS from the first byte, usually port 465).
	ImplicitTLS bool
}

// Config is every setting Herald reads. See README.md for the environment variables.
type Config struct {
	DatabaseURL      string        // DATABASE_URL
	Addr             string        // HERALD_ADDR: HTTP listen address
	BaseURL          string        // HERALD_BASE_URL: public URL used in links
	SMTPURL          string        // HERALD_SMTP_URL: smtp[s]://user:pass@host:port?tls=..., comma-separated for several relays
	SMTP             SMTP          // the first (preferred) relay of SMTPURL
	Relays           []SMTP        // every relay of SMTPURL, in priority order (Relays[0] == SMTP)
	SMTPPoolSize     int           // HERALD_SMTP_POOL: pooled relay connections
	SMTPTimeout      time.Duration // HERALD_SMTP_TIMEOUT: per dial and per command
	HELO             string        // HERALD_HELO: name announced to the relay
	MessageIDDomain  string        // HERALD_MESSAGE_ID_DOMAIN: right-hand side of Message-IDs
	Workers          int           // HERALD_WORKERS: concurrent send jobs per process
	FetchCooldown    time.Duration // HERALD_FETCH_COOLDOWN: River's minimum pause between fetches
	MaxAttempts      int           // HERALD_SEND_MAX_ATTEMPTS: deliveries tried before a message fails
	RetryBase        time.Duration // HERALD_RETRY_BASE: first retry delay, doubled each attempt
	RetryMax         time.Duration // HERALD_RETRY_MAX: retry delay cap
	ShutdownTimeout  time.Duration // HERALD_SHUTDOWN_TIMEOUT: how long SIGTERM waits for in-flight work
	DevSMTPAddr      string        // HERALD_DEV_SMTP_ADDR: capture SMTP server of `herald dev`
	LogLevel         string        // HERALD_LOG_LEVEL: debug, info, warn, error
	LogFormat        string        // HERALD_LOG_FORMAT: text or json
	MaxBodyBytes     int64         // HERALD_MAX_BODY_BYTES: JSON request body limit
	MaxImportBytes   int64         // HERALD_MAX_IMPORT_BYTES: contact import body limit
	KeyCacheTTL      time.Duration // HERALD_KEY_CACHE_TTL: how long a checked API key is trusted
	DBPool           int           // HERALD_DB_POOL: database connections per process
	MarketingWorkers int           // HERALD_MARKETING_WORKERS: concurrent marketing send jobs per process
	HashKey          string        // HERALD_HASH_KEY: key of the suppression list's address hashes (never rotate)
	TokenKeys        string        // HERALD_TOKEN_KEYS: unsubscribe token keys "id:secret,..." (first signs)
	InboundAddr      string        // HERALD_INBOUND_ADDR: the inbound SMTP listener, for mailto unsubscribes and bounce reports (empty: off)
	InboundDomain    string        // HERALD_INBOUND_DOMAIN: domain of the mailto unsubscribe addresses
	BounceAddr       string        // HERALD_BOUNCE_ADDR: a second listen address of the same inbound SMTP receiver (empty: none)
	BounceDomain     string        // HERALD_BOUNCE_DOMAIN: domain of the VERP bounce addresses (default: the inbound domain)
	DKIMKeys         string        // HERALD_DKIM_KEYS: "domain:selector:/path/key.pem,..." signing keys per sender domain
	SubscribeTTL     time.Duration // HERALD_SUBSCRIBE_TTL: how long a double opt-in confirmation link stays valid

	// Campaign sending (package campaigns).
	CampaignWorkers  int           // HERALD_CAMPAIGN_WORKERS: concurrent campaign jobs (send batches, fan-outs) per work process
	CampaignBatch    int           // HERALD_CAMPAIGN_BATCH: recipients per send batch job
	CampaignLease    time.Duration // HERALD_CAMPAIGN_LEASE: how long a batch's claim holds its recipients (renewed while it sends)
	CampaignParallel int           // HERALD_CAMPAIGN_PARALLEL: hand-offs of one batch at once, on connections from the relay pool
	CampaignSweep    time.Duration // HERALD_CAMPAIGN_SWEEP: interval of the campaign sweeper (stalled fan-outs, expired claims)

	// Retention (consent/retention*.go): the policy of workspaces without their own, in days, and
	// how often and in what batches the retention job runs. The days are checked against the
	// privacy policy's bounds when the process starts (consent.RetentionPolicy.Validate).
	RetentionOptedOutDays      int           // HERALD_RETENTION_OPTED_OUT_DAYS: marketing data kept after an opt-out of all marketing (1-30)
	RetentionTrackingDays      int           // HERALD_RETENTION_TRACKING_DAYS: tracking events kept (1-395)
	RetentionBodyDays          int           // HERALD_RETENTION_BODY_DAYS: rendered message bodies kept (1-30)
	RetentionDeletionGraceDays int           // HERALD_RETENTION_DELETION_GRACE_DAYS: a deleted workspace's grace period (1-30)
	RetentionInterval          time.Duration // HERALD_RETENTION_INTERVAL: how often the retention job runs
	RetentionBatch             int           // HERALD_RETENTION_BATCH: rows per retention statement (short transactions)

	PprofAddr string // HERALD_PPROF_ADDR: debug listener of net/http/pprof (empty: off; never expose it publicly)
}

// Default returns the configuration used when nothing is set: a local development setup.
func Default() Config {
	return Config{
		Addr:             "127.0.0.1:8080",
		BaseURL:          "http://127.0.0.1:8080",
		SMTPURL:          "smtp://127.0.0.1:1025?tls=none",
		SMTPPoolSize:     32,
		SMTPTimeout:      30 * time.Second,
		Workers:          64,
		FetchCooldown:    20 * time.Millisecond,
		MaxAttempts:      12,
		RetryBase:        30 * time.Second,
		RetryMax:         2 * time.Hour,
		ShutdownTimeout:  30 * time.Second,
		DevSMTPAddr:      "127.0.0.1:1025",
		LogLevel:         "info",
		LogFormat:        "text",
		MaxBodyBytes:     1 << 20,
		MaxImportBytes:   512 << 20,
		KeyCacheTTL:      5 * time.Second,
		DBPool:           20,
		MarketingWorkers: 6,
		SubscribeTTL:     72 * time.Hour,
		CampaignWorkers:  8,
		CampaignBatch:    500,
		CampaignLease:    time.Minute,
		CampaignParallel: 16,
		CampaignSweep:    30 * time.Second,

		RetentionOptedOutDays:      30,
		RetentionTrackingDays:      395,
		RetentionBodyDays:          30,
		RetentionDeletionGraceDays: 7,
		RetentionInterval:          time.Hour,
		RetentionBatch:             5000,
	}
}

// FromEnv reads the configuration from environment variables (via getenv, so tests can pass a
// map), over the defaults, and validates it.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Default()
	var errs []error
	str := func(name string, dst *string) {
		if v, err := secret(getenv, name); err != nil {
			errs = append(errs, err)
		} else if v != "" {
			*dst = v
		}
	}
	integer := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive integer", name, v))
				return
			}
			*dst = n
		}
	}
	bytes := func(name string, dst *int64) {
		var n int
		integer(name, &n)
		if n > 0 {
			*dst = int64(n)
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive duration such as 30s", name, v))
				return
			}
			*dst = d
		}
	}
	str("DATABASE_URL", &c.DatabaseURL)
	str("HERALD_ADDR", &c.Addr)
	str("HERALD_BASE_URL", &c.BaseURL)
	str("HERALD_SMTP_URL", &c.SMTPURL)
	integer("HERALD_SMTP_POOL", &c.SMTPPoolSize)
	dur("HERALD_SMTP_TIMEOUT", &c.SMTPTimeout)
	str("HERALD_HELO", &c.HELO)
	str("HERALD_MESSAGE_ID_DOMAIN", &c.MessageIDDomain)
	integer("HERALD_WORKERS", &c.Workers)
	dur("HERALD_FETCH_COOLDOWN", &c.FetchCooldown)
	integer("HERALD_SEND_MAX_ATTEMPTS", &c.MaxAttempts)
	dur("HERALD_RETRY_BASE", &c.RetryBase)
	dur("HERALD_RETRY_MAX", &c.RetryMax)
	dur("HERALD_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	str("HERALD_DEV_SMTP_ADDR", &c.DevSMTPAddr)
	str("HERALD_LOG_LEVEL", &c.LogLevel)
	str("HERALD_LOG_FORMAT", &c.LogFormat)
	bytes("HERALD_MAX_BODY_BYTES", &c.MaxBodyBytes)
	bytes("HERALD_MAX_IMPORT_BYTES", &c.MaxImportBytes)
	dur("HERALD_KEY_CACHE_TTL", &c.KeyCacheTTL)
	integer("HERALD_DB_POOL", &c.DBPool)
	integer("HERALD_MARKETING_WORKERS", &c.MarketingWorkers)
	str("HERALD_HASH_KEY", &c.HashKey)
	str("HERALD_TOKEN_KEYS", &c.TokenKeys)
	str("HERALD_INBOUND_ADDR", &c.InboundAddr)
	str("HERALD_INBOUND_DOMAIN", &c.InboundDomain)
	str("HERALD_BOUNCE_ADDR", &c.BounceAddr)
	str("HERALD_BOUNCE_DOMAIN", &c.BounceDomain)
	str("HERALD_DKIM_KEYS", &c.DKIMKeys)
	dur("HERALD_SUBSCRIBE_TTL", &c.SubscribeTTL)
	integer("HERALD_CAMPAIGN_WORKERS", &c.CampaignWorkers)
	integer("HERALD_CAMPAIGN_BATCH", &c.CampaignBatch)
	dur("HERALD_CAMPAIGN_LEASE", &c.CampaignLease)
	integer("HERALD_CAMPAIGN_PARALLEL", &c.CampaignParallel)
	dur("HERALD_CAMPAIGN_SWEEP", &c.CampaignSweep)
	integer("HERALD_RETENTION_OPTED_OUT_DAYS", &c.RetentionOptedOutDays)
	integer("HERALD_RETENTION_TRACKING_DAYS", &c.RetentionTrackingDays)
	integer("HERALD_RETENTION_BODY_DAYS", &c.RetentionBodyDays)
	integer("HERALD_RETENTION_DELETION_GRACE_DAYS", &c.RetentionDeletionGraceDays)
	dur("HERALD_RETENTION_INTERVAL", &c.RetentionInterval)
	integer("HERALD_RETENTION_BATCH", &c.RetentionBatch)
	str("HERALD_PPROF_ADDR", &c.PprofAddr)
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// Validate checks the settings and fills derived fields (SMTP, MessageIDDomain, HELO).
func (c *Config) Validate() error {
	if c.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (e.g. postgres://user@localhost/herald)")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("HERALD_BASE_URL: %q is not an http(s) URL", c.BaseURL)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	relays, err := ParseSMTPURLs(c.SMTPURL)
	if err != nil {
		return fmt.Errorf("HERALD_SMTP_URL: %w", err)
	}
	c.Relays, c.SMTP = relays, relays[0]
	if c.MessageIDDomain == "" {
		c.MessageIDDomain = u.Hostname()
	}
	if c.HELO == "" {
		c.HELO = u.Hostname()
	}
	if c.InboundDomain == "" {
		// An IP literal cannot be the domain of a mailto address or a List-Id; a dev server on
		// 127.0.0.1 gets "localhost".
		c.InboundDomain = u.Hostname()
		if net.ParseIP(c.InboundDomain) != nil {
			c.InboundDomain = "localhost"
		}
	}
	if c.BounceDomain == "" {
		c.BounceDomain = c.InboundDomain
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("HERALD_LOG_LEVEL: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("HERALD_LOG_FORMAT: %q is not text or json", c.LogFormat)
	}
	// A marketing send holds a database connection from its consent decision to the recorded
	// hand-off; the rest of the pool must stay free for transactional sends, River and the API.
	if c.MarketingWorkers > c.DBPool-4 {
		return fmt.Errorf("HERALD_MARKETING_WORKERS (%d) must be at most HERALD_DB_POOL - 4 (%d): each marketing send holds a database connection through its SMTP hand-off",
			c.MarketingWorkers, c.DBPool-4)
	}
	// A campaign batch holds a connection for its consent transaction from its decision to its
	// last outcome, like a marketing send.
	if c.MarketingWorkers+c.CampaignWorkers > c.DBPool-4 {
		return fmt.Errorf("HERALD_MARKETING_WORKERS + HERALD_CAMPAIGN_WORKERS (%d) must be at most HERALD_DB_POOL - 4 (%d): each holds a database connection through its SMTP hand-offs",
			c.MarketingWorkers+c.CampaignWorkers, c.DBPool-4)
	}
	if c.CampaignBatch > 1000 {
		return fmt.Errorf("HERALD_CAMPAIGN_BATCH: %d recipients per batch; at most 1000 (a batch claims them all at once)", c.CampaignBatch)
	}
	if c.CampaignParallel > 16 {
		return fmt.Errorf("HERALD_CAMPAIGN_PARALLEL: %d; at most 16 hand-offs of one batch at once", c.CampaignParallel)
	}
	if c.RetentionBatch > 50000 {
		return fmt.Errorf("HERALD_RETENTION_BATCH: %d rows per statement; at most 50000 (each statement is one transaction, kept short)", c.RetentionBatch)
	}
	if c.RetryMax < c.RetryBase {
		return errors.New("HERALD_RETRY_MAX must not be below HERALD_RETRY_BASE")
	}
	return nil
}

// ParseSMTPURLs parses a comma-separated list of relay URLs in priority order, the first
// preferred. A comma inside a password must be written %2C. Errors name the entry by its
// position, never by its text, which may hold a password.
func ParseSMTPURLs(raw string) ([]SMTP, error) {
	parts := strings.Split(raw, ",")
	// Check every scheme before parsing any entry: a password cut in two by an unescaped comma
	// would otherwise fail as a bad port and echo part of the password.
	for i, p := range parts {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			return nil, fmt.Errorf("relay %d of %d is empty", i+1, len(parts))
		}
		if !strings.HasPrefix(p, "smtp://") && !strings.HasPrefix(p, "smtps://") {
			return nil, fmt.Errorf("relay %d of %d does not start with smtp:// or smtps:// (write a comma inside a password as %%2C)", i+1, len(parts))
		}
	}
	relays := make([]SMTP, 0, len(parts))
	seen := make(map[string]int, len(parts))
	for i, p := range parts {
		s, err := ParseSMTPURL(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("relay %d of %d: %w", i+1, len(parts), err)
		}
		// host:port names a relay in logs and metrics, so it must be unique.
		hp := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
		if j, dup := seen[hp]; dup {
			return nil, fmt.Errorf("relay %d of %d: %s repeats relay %d", i+1, len(parts), hp, j+1)
		}
		seen[hp] = i
		relays = append(relays, s)
	}
	return relays, nil
}

// ParseSMTPURL parses smtp://user:pass@host:port?tls=mandatory|opportunistic|none (or smtps://).
func ParseSMTPURL(raw string) (SMTP, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, password included; keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return SMTP{}, fmt.Errorf("not a URL: %w", err)
	}
	s := SMTP{Host: u.Hostname(), TLS: TLSMandatory}
	switch u.Scheme {
	case "smtp":
		s.Port = 587
	case "smtps":
		s.Port, s.ImplicitTLS = 465, true
	default:
		return SMTP{}, fmt.Errorf("scheme %q: want smtp or smtps", u.Scheme)
	}
	if s.Host == "" {
		return SMTP{}, errors.New("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return SMTP{}, fmt.Errorf("port %q is not valid", p)
		}
		s.Port = n
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	for k := range u.Query() {
		if k != "tls" {
			return SMTP{}, fmt.Errorf("unknown parameter %q (only tls)", k)
		}
	}
	if t := u.Query().Get("tls"); t != "" {
		switch TLSPolicy(t) {
		case TLSMandatory, TLSOpportunistic, TLSNone:
			s.TLS = TLSPolicy(t)
		default:
			return SMTP{}, fmt.Errorf("tls=%q: want mandatory, opportunistic or none", t)
		}
	}
	if s.ImplicitTLS && s.TLS == TLSNone {
		return SMTP{}, errors.New("smtps:// cannot have tls=none")
	}
	return s, nil
}

// secret reads NAME, or the file named by NAME_FILE.
func secret(getenv func(string) string, name string) (string, error) {
	if path := getenv(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return getenv(name), nil
}
