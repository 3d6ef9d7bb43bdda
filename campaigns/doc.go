// Package campaigns owns marketing campaigns: audiences (static lists and dynamic segments),
// sender identities, campaigns and their scheduling, the fan-out of a campaign into per-recipient
// rows and send jobs, and the batch send worker.
//
// # Audiences
//
// A list is a static set of contacts (membership by API and CSV/NDJSON import). A segment is a
// filter over contact fields and attributes in a small language compiled to parameterised SQL
// (never concatenated values). A campaign's Audience includes lists and segments and excludes
// others; an address in several of them gets one email (the contact with the lowest id stands
// for the address). AudiencePage walks an audience by keyset on the contact id.
//
// # Campaign states
//
//	draft ──schedule──▶ scheduled ──(time)──▶ sending ──(all recipients final)──▶ sent
//	                       │                   │  ▲
//	                       │                 pause resume
//	                       │                   ▼  │
//	                       └──cancel──▶ cancelled ◀── paused
//
// Content (template version, sender, purpose, audience) is frozen from scheduling on. Pause,
// resume and cancel are rows: the send worker reads the campaign's state at most a second old
// and stops between two messages.
//
// # Fan-out
//
// At the campaign's time a FanOutJob pages through the audience by keyset (contact id), drops
// already-suppressed addresses (they are recorded as suppressed recipients, not sent), and for
// each page inserts campaign_recipients rows (UNIQUE (campaign_id, contact_id)) and the page's
// batch send jobs in ONE transaction, together with the fan-out's resume point. A crash resumes
// from the last committed page; the unique key makes a repeated page a no-op.
//
// # Sending: a batch per job, the consent lock per group, the outcome per message
//
// A SendBatchJob names a range of a campaign's recipients (HERALD_CAMPAIGN_BATCH, 500 by default).
// The worker claims the range's unsent recipients in one statement, then takes them a consent
// group (ConsentGroup, 100) at a time: it opens a transaction that takes the consent locks of the
// group's contacts in shared mode and decides them (consent.DecideBatch), and keeps it open while
// it renders and hands each message of the group to SMTP, so a withdrawal committed before a
// hand-off is seen, and one committed later waits for the group, never for the whole batch (as
// for single marketing sends, see mailer). The next group is decided when its turn comes. A
// larger batch only saves per-job work (River, the claim, the finish check). Each message's outcome
// is committed on its own, outside that transaction, right after the relay's answer (grouped
// with the outcomes of the other workers' messages of the same moment): after a crash only the
// messages whose outcome was not yet committed, that is whose DATA was in flight, are sent
// again, with the same Message-ID.
package campaigns
