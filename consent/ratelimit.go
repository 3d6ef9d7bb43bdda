package consent

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Rate is a token bucket: PerMinute tokens refill each minute, up to Burst.
type Rate struct {
	PerMinute float64
	Burst     int
}

// The default limits of the public subscribe endpoint: a person filling in a form needs a
// handful of requests, a website's form as a whole far more.
const (
	defaultIPPerMinute, defaultIPBurst     = 10, 20
	defaultFormPerMinute, defaultFormBurst = 300, 300
)

// maxBuckets bounds each bucket map: past it, buckets that have refilled (and so carry no
// state worth keeping) are dropped, so a flood of distinct IPs cannot grow memory without end.
const maxBuckets = 100_000

// Limits throttles the public subscribe endpoint with in-memory token buckets, per client IP and
// per form key. They are per process: behind N replicas the effective limits are N times these,
// which is acceptable for abuse control (the mail-bomb cap, in the database, is exact). The zero
// value uses the defaults.
type Limits struct {
	PerIP      Rate // zero: 10 a minute, burst 20
	PerFormKey Rate // zero: 300 a minute, burst 300
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	once sync.Once
	mu   sync.Mutex
	ip   map[string]*bucket
	form map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func (l *Limits) init() {
	l.once.Do(func() {
		if l.PerIP.PerMinute <= 0 || l.PerIP.Burst <= 0 {
			l.PerIP = Rate{PerMinute: defaultIPPerMinute, Burst: defaultIPBurst}
		}
		if l.PerFormKey.PerMinute <= 0 || l.PerFormKey.Burst <= 0 {
			l.PerFormKey = Rate{PerMinute: defaultFormPerMinute, Burst: defaultFormBurst}
		}
		l.ip, l.form = map[string]*bucket{}, map[string]*bucket{}
	})
}

func (l *Limits) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// AllowIP takes a token for the client address (an IP, optionally with a port); when none is
// left it reports how long until one is.
func (l *Limits) AllowIP(remoteAddr string) (bool, time.Duration) {
	l.init()
	return l.take(l.ip, clientKey(remoteAddr), l.PerIP)
}

// AllowFormKey takes a token for a form (by its workspace's form key).
func (l *Limits) AllowFormKey(formKey string) (bool, time.Duration) {
	l.init()
	return l.take(l.form, formKey, l.PerFormKey)
}

func (l *Limits) take(m map[string]*bucket, key string, rate Rate) (bool, time.Duration) {
	now := l.now()
	perSec := rate.PerMinute / 60
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := m[key]
	if !ok {
		if len(m) >= maxBuckets {
			prune(m, now, rate)
		}
		b = &bucket{tokens: float64(rate.Burst), at: now}
		m[key] = b
	}
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = math.Min(float64(rate.Burst), b.tokens+elapsed*perSec)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / perSec * float64(time.Second))
	return false, wait
}

// prune drops the buckets that would be full by now; if that frees nothing (a flood of fresh
// keys), it drops them all: forgetting limits under attack is better than running out of memory.
func prune(m map[string]*bucket, now time.Time, rate Rate) {
	for k, b := range m {
		if b.tokens+now.Sub(b.at).Seconds()*rate.PerMinute/60 >= float64(rate.Burst) {
			delete(m, k)
		}
	}
	if len(m) >= maxBuckets {
		clear(m)
	}
}

// clientKey is the bucket of a client address: the IP itself for IPv4, its /64 for IPv6 (one
// host usually holds a whole /64, so a per-address limit would be no limit at all).
func clientKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	addr := ap.Addr()
	if err != nil {
		if addr, err = netip.ParseAddr(remoteAddr); err != nil {
			return remoteAddr
		}
	}
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// retryAfterSeconds is the Retry-After value for a wait: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
