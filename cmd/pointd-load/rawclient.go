package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// rawClient sends the overload mode's earns as plain HTTP/1.1 over kept-alive
// connections, one request at a time per connection, dialling a new one
// whenever none is idle — so that, as in a crowd of terminals, no request
// waits for another's connection.
//
// Why not net/http's client: on a machine shared with the server, the
// generator's CPU is taken from the server. net/http's client spends two
// goroutines per connection, a context, a timer and a few dozen allocations
// per request; at three times capacity that was as much CPU as the server's
// own HTTP work, and the generator lagged its schedule by over 100 ms
// (bench/README.md). This client writes one prebuilt request and parses the
// status line, Content-Length or chunks, and nothing else.
type rawClient struct {
	addr    string // host:port
	head    []byte // request line and fixed headers, up to the per-request ones
	timeout time.Duration
	dialer  net.Dialer

	mu   sync.Mutex
	idle []*rawConn // LIFO: a warm connection first

	// slots bounds the connections, as a crowd of terminals is a fixed
	// number of them: a request due while all are busy waits for one (the
	// caller counts that wait as lag). Unbounded, a server that fell behind
	// made the generator dial a connection per due request — up to 20,000,
	// a fifth of its CPU in connect() — and the server accept them: the
	// slower it answered, the more each request cost, and it never caught up.
	slots chan struct{}
}

type rawConn struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte // the request being written
}

// newRawClient makes a client for POST requests to target+path with the
// given Authorization, over at most maxConns connections; target must be
// http://host:port.
func newRawClient(target, path, authorization string, timeout time.Duration, maxConns int) (*rawClient, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("the raw client needs an http://host:port target, got %q", target)
	}
	addr := u.Host
	if u.Port() == "" {
		addr += ":80"
	}
	head := "POST " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nAuthorization: " + authorization +
		"\r\nContent-Type: application/json\r\n"
	return &rawClient{addr: addr, head: []byte(head), timeout: timeout,
		dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		slots:  make(chan struct{}, max(1, maxConns))}, nil
}

// acquire waits for a connection of the crowd to be free; release gives it
// back. post is called between the two.
func (rc *rawClient) acquire() { rc.slots <- struct{}{} }
func (rc *rawClient) release() { <-rc.slots }

// post sends body with an Idempotency-Key and returns the status and the
// response body. An error means no answer was read: the outcome is open.
func (rc *rawClient) post(idem string, body []byte) (int, []byte, error) {
	c, err := rc.conn()
	if err != nil {
		return 0, nil, err
	}
	status, resp, keep, err := c.roundTrip(rc, idem, body)
	if err != nil || !keep {
		c.c.Close()
		return status, resp, err
	}
	rc.mu.Lock()
	rc.idle = append(rc.idle, c)
	rc.mu.Unlock()
	return status, resp, nil
}

func (rc *rawClient) conn() (*rawConn, error) {
	rc.mu.Lock()
	if n := len(rc.idle); n > 0 {
		c := rc.idle[n-1]
		rc.idle = rc.idle[:n-1]
		rc.mu.Unlock()
		return c, nil
	}
	rc.mu.Unlock()
	nc, err := rc.dialer.Dial("tcp", rc.addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: nc, br: bufio.NewReaderSize(nc, 4096)}, nil
}

// closeIdle closes the idle connections.
func (rc *rawClient) closeIdle() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, c := range rc.idle {
		c.c.Close()
	}
	rc.idle = nil
}

var errMalformed = errors.New("malformed HTTP response")

func (c *rawConn) roundTrip(rc *rawClient, idem string, body []byte) (status int, resp []byte, keep bool, err error) {
	b := append(c.buf[:0], rc.head...)
	b = append(b, "Idempotency-Key: "...)
	b = append(b, idem...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	if err := c.c.SetDeadline(time.Now().Add(rc.timeout)); err != nil {
		return 0, nil, false, err
	}
	if _, err := c.c.Write(b); err != nil {
		return 0, nil, false, err
	}
	line, err := c.line()
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 201 Created"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, false, errMalformed
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, errMalformed
	}
	length, chunked, keep := -1, false, line[7] == '1'
	for {
		h, err := c.line()
		if err != nil {
			return status, nil, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return status, nil, false, errMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return status, nil, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case chunked:
		resp, err = c.chunks()
	case length >= 0:
		resp = make([]byte, length)
		_, err = io.ReadFull(c.br, resp)
	default: // the body ends with the connection
		resp, err = io.ReadAll(c.br)
		keep = false
	}
	if err != nil {
		return status, nil, false, err
	}
	return status, resp, keep, nil
}

// line reads one header line without its CRLF; it is valid until the next read.
func (c *rawConn) line() ([]byte, error) {
	l, err := c.br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

func (c *rawConn) chunks() ([]byte, error) {
	var out []byte
	for {
		l, err := c.line()
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(l, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 32)
		if err != nil || n < 0 {
			return nil, errMalformed
		}
		if n == 0 {
			for { // trailers, up to the empty line
				l, err := c.line()
				if err != nil {
					return nil, err
				}
				if len(l) == 0 {
					return out, nil
				}
			}
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, out[start:]); err != nil {
			return nil, err
		}
		if l, err := c.line(); err != nil || len(l) != 0 {
			return nil, errMalformed
		}
	}
}
