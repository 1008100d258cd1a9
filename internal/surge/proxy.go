package surge

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// pgProxy is a TCP proxy surge puts between the server it spawns and
// PostgreSQL; the db-slow fault makes it hold every chunk for a while.
type pgProxy struct {
	ln       net.Listener
	upstream string
	delay    atomic.Int64 // nanoseconds added to every chunk, both ways
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

// startProxy listens on loopback and returns the proxy and dsn rewritten to
// go through it.
func startProxy(dsn string) (*pgProxy, string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("db-slow: cannot parse the database URL: %v", err)
	}
	host := u.Host
	if host == "" {
		return nil, "", fmt.Errorf("db-slow: the database URL names no host:port")
	}
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	p := &pgProxy{ln: ln, upstream: host, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	u.Host = ln.Addr().String()
	return p, u.String(), nil
}

func (p *pgProxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *pgProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() {
			up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			p.track(c, true)
			p.track(up, true)
			var both sync.WaitGroup
			both.Go(func() { p.pump(up, c) })
			both.Go(func() { p.pump(c, up) })
			both.Wait()
			p.track(c, false)
			p.track(up, false)
		})
	}
}

func (p *pgProxy) pump(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.delay.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (p *pgProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
