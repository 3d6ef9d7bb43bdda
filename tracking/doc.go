// Package tracking owns what Herald learns about its mail after the hand-off: open and click
// tracking, and bounce and complaint feedback.
//
// # Opens and clicks
//
// Tracking is a purpose of its own in the consent ledger (consent.TrackingPurpose), apart from
// marketing consent: each workspace chooses opt-in (the default), opt-out or off, and each contact's
// choice counts. The campaign send worker's consent query answers it for each recipient of a
// group, inside the group's consent transaction (consent.Decision.Track, the rule
// consent.TrackingAllowed also applies), and only for the recipients it allows calls
// Tracker.Instrument; the others' HTML goes out untouched, with no pixel and their original links.
//
// Instrument walks the rendered HTML with golang.org/x/net/html's tokenizer and replaces the href
// of each <a> and <area> holding an absolute http(s) URL with BASE/t/c/TOKEN, and adds the pixel
// <img src="BASE/t/o/TOKEN"> before </body>. Every other byte is kept. Herald's own links are left
// alone: the link placeholders (templates.Placeholder*, replaced after Instrument by the
// recipient's unsubscribe, preference and view-online links) and anything under the base URL.
// The links of a campaign are stored once each in campaign_links; a bounded per-process cache
// (Links) makes a 100,000-recipient campaign cost one round trip per distinct URL, not per message.
//
// Tokens are consent.Keys.SignIDs tokens in domains of their own: an open token names (workspace,
// campaign, recipient row), a click token also the link's id. They carry no personal data, and
// survive key rotation as the unsubscribe tokens do (every key of HERALD_TOKEN_KEYS verifies).
// The click redirect goes to the URL stored for the link id, after checking that the link belongs
// to the token's campaign and workspace, never to a URL read from the token or the query string:
// there is no open redirect. A bad click token gets a 404 page; the pixel is served whatever the
// token.
//
// Requests never wait for the database per event. TrackHandler puts each event into the
// EventWriter's bounded buffer (waiting briefly when it is full, then dropping and counting); one
// goroutine writes batches with COPY every 100 ms or 1,000 events, after checking the whole batch
// at once: the recipient rows, whether each contact still allows tracking (an event of a contact
// who turned it off since the send is not written) and the workspace's settings. IP addresses are
// stored as their /24 (IPv4) or /48 (IPv6) network unless the workspace keeps full addresses; user
// agents are kept (at most 512 bytes). Close, called after the HTTP server has stopped and before
// the pool closes, writes everything buffered, so a SIGTERM loses no event.
//
// Machine opens and clicks are stored and flagged (tracking_events.machine, machine_reason; see
// machine.go for the lists and their sources): image proxies (Gmail, Yahoo), Apple Mail Privacy
// Protection (its "Mozilla/5.0" user agent, Apple's 17.0.0.0/8), link scanners, bots and plain
// HTTP clients by user agent, HEAD requests, events within 2 s of the hand-off, and click bursts:
// two or more distinct links of one message clicked within 2 s. Burst detection keeps a window of
// recent clicks per recipient in the writer, per process (clicks of one message served by two
// processes are judged apart), and holds clicks for that window before writing them so that every
// click of a burst is flagged, not only the later ones.
//
// # Bounces and complaints
//
// Every message has a VERP envelope sender, bounces+TOKEN@HERALD_BOUNCE_DOMAIN (VERP), whose
// token signs (workspace, kind, id): kind 1 a campaign recipient row, kind 2 a messages.seq.
// Campaign Message-IDs are AES-128 of (campaign, row) under a key derived from the hash key
// (campaigns.ParseMessageID), so a provider quoting one is matched without an index on the hot
// recipient table. Every intake (BounceReceiver for DSN and ARF reports over SMTP; WebhookHandler
// for SES via SNS, SendGrid and Postmark) calls Feedback.Process, one transaction per report: the
// address is taken from the row the token or Message-ID names (the report's address only when
// neither finds one), a feedback_events row is written (its address as the keyed hash; a
// provider's event id makes retries count once), and then a hard bounce suppresses the address for
// every stream, a soft bounce does once the workspace's soft_bounce_limit fell within
// soft_bounce_window, and a complaint withdraws the contact's marketing purposes through
// consent.Service.Complaint (one RecordAll, source complaint) and suppresses the address. The
// campaign recipient row is left as it is; campaign stats read feedback_events.
package tracking
