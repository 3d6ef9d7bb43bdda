package tracking

import (
	"net/netip"
	"strings"
	"time"
)

// Why an event is flagged machine (tracking_events.machine_reason). Human and machine events are
// both stored; reports count them apart.
const (
	ReasonProxy      = "image_proxy"   // an open by a mail provider's image proxy (its user agent)
	ReasonAppleMPP   = "apple_mpp"     // an open by Apple Mail Privacy Protection (its user agent or network)
	ReasonScanner    = "scanner"       // a known link scanner, preview fetcher or bot user agent
	ReasonNoAgent    = "no_user_agent" // no user agent at all: browsers and mail clients always send one
	ReasonHEAD       = "head_request"  // a HEAD request: browsers follow links and load images with GET
	ReasonEarly      = "early"         // within MachineRules.Early of the hand-off to SMTP
	ReasonClickBurst = "click_burst"   // several distinct links of one message clicked within MachineRules.BurstWindow
)

// imageProxyAgents are substrings of the user agents of mail providers' image proxies, which
// fetch every image of a message, often before or without the recipient reading it:
//   - GoogleImageProxy: Gmail serves every image through its proxy since December 2013; the
//     user agent ends "(via ggpht.com GoogleImageProxy)".
//   - YahooMailProxy: Yahoo Mail's proxy, "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html".
var imageProxyAgents = [...]string{"GoogleImageProxy", "YahooMailProxy"}

// appleMPPAgent is the whole user agent of Apple Mail Privacy Protection's fetches (iOS 15,
// macOS 12 and later), which preload every image of every message through Apple's proxies on
// arrival (see SocketLabs, "Identifying Apple MPP opens"; Suped, "What methods do ESPs use to
// identify Apple MPP"). A real browser never sends so short a user agent.
const appleMPPAgent = "Mozilla/5.0"

// appleNetwork is Apple's own address block (ARIN NET-17-0-0-0-1), from which some of its
// proxies fetch.
var appleNetwork = netip.MustParsePrefix("17.0.0.0/8")

// scannerAgents are lower-case substrings of the user agents of link scanners of mail security
// gateways (Barracuda, Mimecast, Proofpoint URL Defense, Microsoft Defender for Office 365 Safe
// Links and Office's link checks), link-preview fetchers and generic HTTP clients and crawlers.
// Scanners that pose as a desktop browser are caught, if at all, by ReasonClickBurst, ReasonHEAD
// or ReasonEarly instead.
var scannerAgents = [...]string{
	"barracuda", "mimecast", "proofpoint", "safelinks", "safe links", "existence discovery",
	"protocol discovery", "bingpreview", "skypeuripreview", "bot/", "bot;", "bot)", "bot ", "crawler",
	"spider", "slurp", "facebookexternalhit", "python-requests", "python-urllib", "go-http-client",
	"curl/", "wget/", "libwww", "okhttp", "java/", "headlesschrome", "phantomjs", "urlscan", "scanner",
}

// MachineRules are the time windows of machine detection.
type MachineRules struct {
	// Early flags events within this long of the hand-off (default 2 s): no person opens a
	// message, let alone clicks in it, seconds after it left; proxies and scanners do.
	Early time.Duration
	// BurstLinks distinct links of one message clicked within BurstWindow (defaults 2 and 2 s)
	// flag all those clicks: a scanner follows every link at once, a reader one at a time.
	BurstLinks  int
	BurstWindow time.Duration
}

// Defaults of MachineRules.
const (
	DefaultEarly       = 2 * time.Second
	DefaultBurstLinks  = 2
	DefaultBurstWindow = 2 * time.Second
)

func (m MachineRules) withDefaults() MachineRules {
	if m.Early <= 0 {
		m.Early = DefaultEarly
	}
	if m.BurstLinks < 2 {
		m.BurstLinks = DefaultBurstLinks
	}
	if m.BurstWindow <= 0 {
		m.BurstWindow = DefaultBurstWindow
	}
	return m
}

// classifyRequest flags what one request shows by itself: its method, user agent and address.
// The time-based signals (ReasonEarly, ReasonClickBurst) are added by the event writer.
func classifyRequest(kind string, head bool, userAgent string, ip netip.Addr) string {
	if head {
		return ReasonHEAD
	}
	ua := strings.TrimSpace(userAgent)
	if ua == "" {
		return ReasonNoAgent
	}
	if kind == KindOpen {
		for _, p := range imageProxyAgents {
			if strings.Contains(ua, p) {
				return ReasonProxy
			}
		}
		if ua == appleMPPAgent || (ip.IsValid() && appleNetwork.Contains(ip.Unmap())) {
			return ReasonAppleMPP
		}
	}
	lower := strings.ToLower(ua)
	for _, s := range scannerAgents {
		if strings.Contains(lower, s) {
			return ReasonScanner
		}
	}
	return ""
}

// burstDetector keeps the recent clicks of each recipient (per process: the clicks of one message
// that reach another process are not seen) and flags bursts. It belongs to the event writer's
// goroutine and is not safe for concurrent use.
type burstDetector struct {
	rules  MachineRules
	recent map[int64][]*Event // recipient id -> its held clicks, oldest first
}

// add records a click and, when it completes a burst, flags every click of the burst that is
// still held (all of them: clicks are held for the burst window before they are written).
func (d *burstDetector) add(ev *Event) {
	cs := d.recent[ev.RecipientID]
	// Forget this recipient's clicks that left the window.
	k := 0
	for k < len(cs) && ev.At.Sub(cs[k].At) > d.rules.BurstWindow {
		k++
	}
	cs = append(cs[k:], ev)
	d.recent[ev.RecipientID] = cs
	distinct := make(map[int64]struct{}, len(cs))
	for _, c := range cs {
		distinct[c.LinkID] = struct{}{}
	}
	if len(distinct) < d.rules.BurstLinks {
		return
	}
	for _, c := range cs {
		if !c.Machine {
			c.Machine, c.Reason = true, ReasonClickBurst
		}
	}
}

// forget drops a click leaving the hold (it is being written).
func (d *burstDetector) forget(ev *Event) {
	cs := d.recent[ev.RecipientID]
	for i, c := range cs {
		if c == ev {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(d.recent, ev.RecipientID)
	} else {
		d.recent[ev.RecipientID] = cs
	}
}
