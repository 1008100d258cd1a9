package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/suggest"
)

// maxBody bounds every request body: the largest valid one is far smaller.
const maxBody = 64 << 10

// decode reads r's body as exactly one JSON object of dst's shape. It refuses
// what encoding/json would let through: duplicate names (which a proxy and
// pointd might read differently), invalid UTF-8 (which it would silently
// replace), trailing data, and unknown names. Errors name the field.
func decode(r *http.Request, dst any, allowEmpty bool) *ledger.Error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &ledger.Error{Code: codeUnsupportedMedia, Message: "send the body as JSON with Content-Type: application/json (curl -d sends a form type unless told otherwise)"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &ledger.Error{Code: codeBodyTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", maxBody)}
		}
		return &ledger.Error{Code: codeMalformedJSON, Message: "the body could not be read"}
	}
	return decodeBytes(body, dst, allowEmpty)
}

func decodeBytes(body []byte, dst any, allowEmpty bool) *ledger.Error {
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return &ledger.Error{Code: codeMalformedJSON, Message: "the body must be a JSON object"}
	}
	if !utf8.Valid(body) {
		return &ledger.Error{Code: codeMalformedJSON, Message: "the body is not valid UTF-8"}
	}
	if err := checkShape(body, dst); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	return nil
}

// checkShape walks the tokens once: one object at the top whose names are
// exactly (not case-insensitively, as encoding/json would match them) the
// names of dst, each once, each with a plain value, and nothing after it. No
// request body of this API nests objects or arrays, so refusing them at
// once also bounds the work a hostile body can cause.
func checkShape(body []byte, dst any) *ledger.Error {
	allowed := fieldNames(dst)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &ledger.Error{Code: codeMalformedJSON, Message: "the body must be a JSON object"}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		name, _ := tok.(string)
		if !allowed[name] {
			return unknownField(name, allowed)
		}
		if seen[name] {
			return &ledger.Error{Code: ledger.CodeValidation, Field: name, Message: "appears more than once"}
		}
		seen[name] = true
		v, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		if _, ok := v.(json.Delim); ok {
			return &ledger.Error{Code: ledger.CodeValidation, Field: name, Message: "must be a plain value, not an object or array"}
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &ledger.Error{Code: codeMalformedJSON, Message: "the body has data after the JSON object"}
	}
	return nil
}

// unknownField refuses a name the request does not have, with the known
// name it most likely is a typo of: a POS integrator reads the answer, not
// the OpenAPI document, when a request is refused.
func unknownField(name string, allowed map[string]bool) *ledger.Error {
	known := make([]string, 0, len(allowed))
	for n := range allowed {
		known = append(known, n)
	}
	msg := fmt.Sprintf("unknown field %q (names are case-sensitive)", name)
	if near := suggest.Nearest(name, known); near != "" {
		msg = fmt.Sprintf("unknown field %q: did you mean %s?", name, near)
	}
	return &ledger.Error{Code: ledger.CodeValidation, Field: name, Message: msg}
}

var fieldCache sync.Map // reflect.Type → map[string]bool

// fieldNames lists the JSON names of the struct dst points to.
func fieldNames(dst any) map[string]bool {
	t := reflect.TypeOf(dst).Elem()
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]bool)
	}
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = true
	}
	fieldCache.Store(t, m)
	return m
}

func jsonError(err error) *ledger.Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return &ledger.Error{Code: ledger.CodeValidation, Field: field,
			Message: fmt.Sprintf("must be %s, got %s", jsonKind(te.Type.Kind().String()), te.Value)}
	case errors.As(err, &se):
		return &ledger.Error{Code: codeMalformedJSON, Message: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &ledger.Error{Code: codeMalformedJSON, Message: "the JSON ends too early"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ledger.Error{Code: ledger.CodeValidation, Field: name, Message: fmt.Sprintf("unknown field %q", name)}
	}
	return &ledger.Error{Code: codeMalformedJSON, Message: err.Error()}
}

func jsonKind(k string) string {
	switch k {
	case "int64", "int", "int32":
		return "an integer in range"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	}
	return k
}
