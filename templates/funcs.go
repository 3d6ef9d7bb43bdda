package templates

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// funcs returns the functions templates may call (documented in the package doc). A new map each
// time: template packages copy it, and nothing shared is mutable.
func funcs() map[string]any {
	m := map[string]any{
		"default": defaultFunc,
		"upper":   func(v any) string { return strings.ToUpper(toString(v)) },
		"lower":   func(v any) string { return strings.ToLower(toString(v)) },
		"date":    dateFunc,
	}
	for name, f := range linkFuncs() {
		m[name] = f
	}
	return m
}

// defaultFunc returns v, or fallback when v is empty: nil, "", or an empty list or object.
func defaultFunc(fallback, v any) any {
	if isEmpty(v) {
		return fallback
	}
	return v
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

// dateFunc formats a time.Time, or an RFC 3339 or YYYY-MM-DD string, with a Go layout. The time
// keeps its own offset. Empty values give "".
func dateFunc(layout string, v any) (string, error) {
	var t time.Time
	switch v := v.(type) {
	case nil:
		return "", nil
	case time.Time:
		t = v
	case *time.Time:
		if v == nil {
			return "", nil
		}
		t = *v
	case string, json.Number:
		s := strings.TrimSpace(toString(v))
		if s == "" {
			return "", nil
		}
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			if t, err = time.Parse(time.DateOnly, s); err != nil {
				return "", fmt.Errorf("date: %q is not an RFC 3339 time or a YYYY-MM-DD date", s)
			}
		}
	default:
		return "", fmt.Errorf("date: cannot format a %T; pass a time or an RFC 3339 string", v)
	}
	return t.Format(layout), nil
}
