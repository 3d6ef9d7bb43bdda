package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// DecodeData decodes a JSON object of template data, keeping numbers exactly as written
// (json.Number), so that an order number 12345678 prints as such. Empty input or null gives an
// empty map.
func DecodeData(raw []byte) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return nil, errors.New("must be a JSON object")
		}
		return nil, fmt.Errorf("is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("must be a single JSON object")
	}
	if data == nil {
		data = map[string]any{}
	}
	return data, nil
}

// normalizeMap copies data for rendering: nil becomes "" (text/template would print
// "<no value>") and float64 becomes a json.Number written without an exponent (fmt would print
// 1234567 as 1.234567e+06). Callers' maps are not modified.
func normalizeMap(data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		out[k] = normalize(v)
	}
	return out
}

func normalize(v any) any {
	switch v := v.(type) {
	case nil:
		return ""
	case float64:
		return json.Number(strconv.FormatFloat(v, 'f', -1, 64))
	case float32:
		return json.Number(strconv.FormatFloat(float64(v), 'f', -1, 32))
	case map[string]any:
		return normalizeMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}
