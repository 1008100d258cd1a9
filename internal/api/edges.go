package api

import (
	"net/http"
	"net/url"
	"os"
	"strings"
)

// closeFramedTwice closes the connection after answering a request whose body
// came with a Transfer-Encoding. RFC 9112 §6.3 asks a server that receives
// both Content-Length and Transfer-Encoding to close the connection after its
// answer: a proxy in front may have framed the body by the length and read
// the rest as the next request (request smuggling). Go's server frames such a
// body by the encoding and deletes Content-Length before a handler sees it,
// so the two cannot be told apart here: every request with a
// Transfer-Encoding gets its answer and then a closed connection. Clients
// that send Content-Length (nearly all do) keep their connections.
func closeFramedTwice(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) > 0 {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// CloseFramedTwice is closeFramedTwice for handlers served beside the API
// (the dashboard).
func CloseFramedTwice(next http.Handler) http.Handler { return closeFramedTwice(next) }

// cmdline is /debug/pprof/cmdline without secrets: the passwords of URLs
// (--db, --redis), key=value passwords of connection strings, and the values
// of flags that carry keys are replaced by "***".
func cmdline(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strings.Join(RedactArgs(os.Args), "\x00")))
}

// secretFlags take a secret as their value.
var secretFlags = map[string]bool{"data-key": true, "key": true, "otp-webhook-secret": true}

// RedactArgs is args with every secret replaced by "***".
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	hideNext := false
	for i, a := range args {
		if hideNext {
			out[i], hideNext = "***", false
			continue
		}
		if strings.HasPrefix(a, "-") {
			flag, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			switch {
			case secretFlags[flag] && hasValue:
				out[i] = a[:len(a)-len(value)] + "***"
			case secretFlags[flag]:
				out[i], hideNext = a, true
			case hasValue:
				out[i] = a[:len(a)-len(value)] + redactValue(value)
			default:
				out[i] = a
			}
			continue
		}
		out[i] = redactValue(a)
	}
	return out
}

// redactValue hides what is secret in one value: a URL's password, a
// password= of a connection string or URL query, and anything that looks
// like a pointd key.
func redactValue(v string) string {
	if strings.Contains(v, "pd_live_") || strings.Contains(v, "pd_test_") {
		return "***"
	}
	if u, err := url.Parse(v); err == nil && u.Scheme != "" && u.Host != "" {
		changed := false
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "***")
			changed = true
		}
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") || strings.EqualFold(k, "sslkey") {
				q.Set(k, "***")
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
			return strings.ReplaceAll(u.String(), "%2A%2A%2A", "***")
		}
		return v
	}
	// key=value connection strings ("host=db password=s3cret")
	fields := strings.Fields(v)
	changed := false
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "password") {
			fields[i], changed = k+"=***", true
		}
	}
	if changed {
		return strings.Join(fields, " ")
	}
	return v
}
