// Package httpx holds Herald's HTTP conventions shared by every domain package: RFC 9457
// problem+json errors with a client-safe message, strict JSON request decoding with a size limit,
// and JSON responses. Internal error text is logged, never sent to the client.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Problem is an RFC 9457 problem details object. It is also an error, so storage and domain code
// can return one and the handler writes it as is.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// Errors lists further per-item problems (e.g. per import row).
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError is one invalid field.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string {
	if p.Field != "" {
		return fmt.Sprintf("%d %s: %s: %s", p.Status, p.Title, p.Field, p.Detail)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
}

// NewProblem returns a problem with the standard title for status.
func NewProblem(status int, detail string) *Problem {
	return &Problem{Title: http.StatusText(status), Status: status, Detail: detail}
}

// Invalid returns a 422 problem naming the field at fault.
func Invalid(field, detail string) *Problem {
	return &Problem{Title: "Invalid request", Status: http.StatusUnprocessableEntity, Field: field,
		Detail: fmt.Sprintf("%s: %s", field, detail)}
}

// BadRequest returns a 400 problem.
func BadRequest(detail string) *Problem { return NewProblem(http.StatusBadRequest, detail) }

// NotFound returns a 404 problem.
func NotFound(detail string) *Problem { return NewProblem(http.StatusNotFound, detail) }

// WriteError writes err as problem+json. A *Problem (anywhere in the chain) is written as is;
// anything else is logged and answered with a generic 500 that reveals nothing internal.
func WriteError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	var p *Problem
	if !errors.As(err, &p) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			p = NewProblem(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", mbe.Limit))
		} else {
			logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			p = NewProblem(http.StatusInternalServerError, "internal error; it has been logged")
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Handler adapts a handler that returns an error to http.Handler, writing the error with WriteError.
func Handler(logger *slog.Logger, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, logger, err)
		}
	}
}
