package api

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// openapiJSON is the OpenAPI 3.1 description of every endpoint. It is
// written by hand; openapi_test.go keeps it true: the routes it names are
// the routes the server registers (both ways), its examples are sent to the
// real handlers and their answers must match the documented schemas.
//
//go:embed openapi.json
var openapiJSON []byte

// openapiETag lets clients and caches revalidate the document cheaply.
var openapiETag = func() string {
	sum := sha256.Sum256(openapiJSON)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// openapi serves the embedded document byte for byte, with no
// authentication: the description of the API is not a secret.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", openapiETag)
	http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(openapiJSON))
}
