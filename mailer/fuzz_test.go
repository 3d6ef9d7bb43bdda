package mailer_test

import (
	"strings"
	"testing"
)

// FuzzSendRequest posts arbitrary bodies and Idempotency-Keys to POST /v1/messages: the API must
// answer 202 or a 4xx problem, never a 5xx, whatever it is sent.
func FuzzSendRequest(f *testing.F) {
	for _, seed := range []string{
		`{"from":"a@acme.example","to":"x@example.com","subject":"s","text":"t"}`,
		`{"from":"a@acme.example","to":"x@example.com\r\nBcc: y@example.com","subject":"s","text":"t"}`,
		`{"from":"a@acme.example","to":"x@example.com","subject":"s","html":"<script>alert(1)</script><img src=x onerror=alert(1)>"}`,
		`{"from":"a@acme.example","to":"x@example.com","subject":"s","text":"t","headers":{"X-A\r\nB":"c"}}`,
		`{"from":"a@acme.example","to":"x@example.com","template":"t","data":{"a":[1,2,{"b":null}]}}`,
		`{"from":"\u0000@x","to":"@","subject":"\ud800","text":"t"}`,
		`{"to":1e999}`, `[]`, `null`, `{"from":{}}`, `{"headers":[]}`, `{"data":"x"}`, ``,
	} {
		f.Add(seed, "k")
	}
	f.Add(`{}`, "")
	b := setup(f, setupOpts{noWorkers: true})
	f.Fuzz(func(t *testing.T, body, idem string) {
		if strings.IndexFunc(idem, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			t.Skip("not sendable as a header by a conforming client")
		}
		res := b.do(t, "POST", "/v1/messages", b.keyA, strings.ToValidUTF8(idem, "?"), body)
		if res.Status >= 500 {
			t.Fatalf("status %d for %q: %s", res.Status, body, res.Raw)
		}
		if res.Status != 202 && res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("status %d without problem+json: %s", res.Status, res.Raw)
		}
	})
}
