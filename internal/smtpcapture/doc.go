// Package smtpcapture is an in-process SMTP server that captures what it receives instead of
// delivering it. It owns two jobs: `herald dev` runs it on 127.0.0.1:1025 and lists the captured
// mail at /dev/outbox (see [Server.OutboxHandler]); Herald's tests start it on a free port, script
// its answers per recipient or per message (accept, 4xx, 5xx, drop the connection) and inspect
// or wait for what arrived.
//
// It is a thin [github.com/emersion/go-smtp] backend, so clients talk to a real SMTP
// implementation (EHLO extensions, enhanced status codes, AUTH PLAIN, optional STARTTLS). Captured
// messages live in memory only, in a bounded ring buffer; benchmarks can keep nothing and count.
package smtpcapture
