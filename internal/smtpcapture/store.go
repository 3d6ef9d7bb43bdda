package smtpcapture

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrClosed is returned by WaitFor when the server is closed before enough messages arrived.
var ErrClosed = errors.New("smtpcapture: server closed")

// store keeps accepted messages in a ring buffer and wakes waiters when one arrives.
type store struct {
	mu     sync.Mutex
	keep   int       // capacity of buf; negative keeps nothing
	buf    []Message // ring: buf[start] is the oldest once full
	start  int
	count  int64         // accepted in the server's lifetime; also the last ID
	since  int           // accepted since the last reset, what WaitFor counts
	notify chan struct{} // closed and replaced on every accept
}

func newStore(keep int) *store {
	return &store{keep: keep, notify: make(chan struct{})}
}

// add stores m (unless nothing is kept), assigns its ID and wakes waiters.
func (st *store) add(m *Message) int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.count++
	st.since++
	m.ID = st.count
	switch {
	case st.keep < 0:
	case len(st.buf) < st.keep:
		st.buf = append(st.buf, *m)
	default:
		st.buf[st.start] = *m
		st.start = (st.start + 1) % st.keep
	}
	close(st.notify)
	st.notify = make(chan struct{})
	return m.ID
}

// snapshotLocked copies the kept messages, oldest first. st.mu must be held.
func (st *store) snapshotLocked() []Message {
	out := make([]Message, 0, len(st.buf))
	out = append(out, st.buf[st.start:]...)
	return append(out, st.buf[:st.start]...)
}

func (st *store) messages() []Message {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.snapshotLocked()
}

func (st *store) total() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.count
}

// get returns the kept message with the given ID. IDs in the ring are consecutive.
func (st *store) get(id int64) (Message, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.buf) == 0 {
		return Message{}, false
	}
	i := id - st.buf[st.start].ID
	if i < 0 || i >= int64(len(st.buf)) {
		return Message{}, false
	}
	m := st.buf[(st.start+int(i))%len(st.buf)]
	return m, m.ID == id
}

func (st *store) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.buf, st.start, st.since = nil, 0, 0
}

// waitFor blocks until n messages were accepted since the last reset, ctx ends or closed is
// closed. It returns the kept messages in every case.
func (st *store) waitFor(ctx context.Context, closed <-chan struct{}, n int) ([]Message, error) {
	for {
		st.mu.Lock()
		got, ch := st.since, st.notify
		if got >= n {
			defer st.mu.Unlock()
			return st.snapshotLocked(), nil
		}
		st.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return st.messages(), fmt.Errorf("smtpcapture: waiting for %d messages, got %d: %w", n, got, ctx.Err())
		case <-closed:
			return st.messages(), fmt.Errorf("waiting for %d messages, got %d: %w", n, got, ErrClosed)
		}
	}
}
