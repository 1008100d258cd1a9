package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pointd/pointd/internal/alert"
	"github.com/pointd/pointd/internal/api"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/ops"
	"github.com/redis/go-redis/v9"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	var d dbFlags
	d.register(fs)
	addr := fs.String("addr", "127.0.0.1:7070", "address to listen on")
	queue := fs.Int("write-queue", 4096, "ledger operations that may wait for the writer; more are refused with 503")
	batch := fs.Int("batch-max", 256, "ledger operations per database transaction at most")
	linger := fs.Duration("batch-linger", 0, "how long the writer waits for a batch to fill (0: takes what is queued)")
	reqTimeout := fs.Duration("request-timeout", 10*time.Second, "deadline of every request")
	expiryEvery := fs.Duration("expiry-interval", time.Minute, "how often due lots and holds are expired")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logRequests := fs.Bool("log-requests", false, "log every request (by default only failures)")
	withMetrics := fs.Bool("metrics", true, "collect Prometheus metrics and serve them at /metrics (false: no metrics work at all)")
	metricsAuth := fs.Bool("metrics-auth", false, "require an admin key for /metrics; without it /metrics answers loopback clients only")
	alertsFile := fs.String("alerts", "", "alert rules and webhooks, TOML (docs/alerts.example.toml); empty: the built-in rules, no webhooks")
	verifyEvery := fs.Duration("verify-interval", 0, "audit the whole ledger this often and alert when it is unsound (0: never; it reads the whole ledger)")
	dropEvery := fs.Int("test-drop-every", 0, "TESTING ONLY: silently lose every Nth ledger write, to prove the audit catches it")
	// Operators: how long a checked API key is trusted.
	keyCacheTTL := fs.Duration("key-cache-ttl", 10*time.Second,
		"how long an instance trusts a checked API key: the bound within which a revocation or suspension made on another instance takes effect here (1s to 5m)")
	var mf memberFlags // members' logins: codes, sessions, limits
	mf.register(fs)
	// The read path: shared caches, notice caching and badge polling.
	noticeMaxAge := fs.Duration("notice-max-age", 30*time.Second, "Cache-Control max-age of notice answers (what nginx or a CDN may serve without asking)")
	pollInterval := fs.Duration("badge-poll", time.Minute, "how often member apps are told they may poll badges")
	var ov overloadFlags // overload.go: admission control, rate limits, Redis
	ov.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := ov.validate(); err != nil {
		return err
	}
	m := auth.Mode(d.mode) // keys of the other mode are refused, and a database of the other mode
	switch {
	case *queue < 1 || *queue > 1_000_000:
		return fs.bad("write-queue", "must be from 1 to 1000000")
	case *batch < 1 || *batch > 10_000:
		return fs.bad("batch-max", "must be from 1 to 10000")
	case *linger < 0 || *linger > time.Second:
		return fs.bad("batch-linger", "must be from 0 (takes what is queued) to 1s")
	case *keyCacheTTL < time.Second || *keyCacheTTL > 5*time.Minute:
		return fs.bad("key-cache-ttl", "must be from 1s to 5m")
	case *reqTimeout < 100*time.Millisecond:
		return fs.bad("request-timeout", "must be at least 100ms, e.g. 10s")
	case *expiryEvery < time.Second:
		return fs.bad("expiry-interval", "must be at least 1s, e.g. 1m")
	case *verifyEvery != 0 && *verifyEvery < time.Second:
		return fs.bad("verify-interval", "must be 0 (never) or at least 1s, e.g. 1h")
	case *dropEvery < 0:
		return fs.bad("test-drop-every", "must be 0 (off) or a positive N")
	case *noticeMaxAge < 0:
		return fs.bad("notice-max-age", "must not be negative (0: not cached)")
	case *pollInterval < time.Second:
		return fs.bad("badge-poll", "must be at least 1s, e.g. 1m")
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fs.bad("addr", "must be HOST:PORT, e.g. 127.0.0.1:7070 or :7070")
	}
	if err := mf.validate(); err != nil {
		return err
	}
	if err := d.validate(); err != nil {
		return err
	}
	// The alert rules are read before anything opens: a mistake in them
	// is a mistake in the configuration.
	var af alert.File
	if *alertsFile != "" {
		var err error
		if af, err = alert.LoadFile(*alertsFile); err != nil {
			return fs.bad("alerts", "%v", err)
		}
	}
	if d.db != "" && d.dataKey == "" {
		return fmt.Errorf("--data-key (or POINTD_DATA_KEY) is required with PostgreSQL: every instance must seal and find phone numbers with the same key; make one with: openssl rand -base64 32")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil || strings.ContainsAny(*logLevel, "+-") {
		return fs.bad("log-level", "must be debug, info, warn or error")
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	db, err := d.open(ctx, create)
	if err != nil {
		return err
	}
	defer db.Close()
	if r := d.rekeyed; r != nil {
		log.Info("phone numbers re-keyed to E.164", "region", d.numbers.plan.Region(), "read", r.Read, "rewritten", r.Changed,
			"not_valid_kept", len(r.Unparsed), "duplicates", len(r.Duplicates))
		if len(r.Duplicates) > 0 {
			log.Warn("members share a phone number with an older member; nothing was merged: list them with pointd members duplicates",
				"members", len(r.Duplicates))
		}
	}

	if *dropEvery > 0 {
		log.Warn("TESTING ONLY: this server loses every Nth ledger write", "n", *dropEvery)
	}
	var mt *metrics.Metrics // nil: metrics off, every hook a no-op
	wcfg := ledger.WriterConfig{QueueSize: *queue, MaxBatch: *batch, Linger: *linger,
		Logger: log, DropEvery: *dropEvery}
	if *withMetrics {
		mt = metrics.New()
	}
	if mt != nil { // a nil *Metrics in the interface would not be a nil Observer
		wcfg.Observer = mt
	}
	w := ledger.NewWriter(db, wcfg)
	if mt != nil {
		capacity := *queue
		mt.WatchWriteQueue(w.QueueDepth, func() int { return capacity })
		mt.WatchDB(func() (int, int) { return poolStats(db) })
		if pw, ok := db.(interface{ PoolWaits() (int, int64) }); ok {
			mt.WatchDBWaits(pw.PoolWaits)
		}
	}
	ready := func(ctx context.Context) error {
		_, err := db.Balance(ctx, "readiness-probe")
		if ledger.ErrorCode(err) == ledger.CodeMemberNotFound {
			return nil
		}
		return err
	}
	stats := func() api.DBStats {
		u, mx := poolStats(db)
		return api.DBStats{InUse: u, Max: mx}
	}
	jobs, stopJobs := context.WithCancel(context.Background())
	defer stopJobs()
	// One Redis client for the shared caches and the shared rate limits.
	var shared *cache.Shared
	var rdb *redis.Client
	if ov.redisURL != "" {
		if rdb, err = openRedis(ctx, ov.redisURL, log); err != nil {
			w.Close()
			return err
		}
		defer rdb.Close()
		shared = cache.NewShared(rdb, ov.redisPrefix, log)
		if err := shared.Start(jobs); err != nil {
			log.Warn("shared caches: no invalidations from other instances until Redis answers", "err", err)
		}
	}
	mt.Caches(api.CacheNames...)
	apicfg := api.Config{Mode: m, Phones: d.numbers.plan, RequestTimeout: *reqTimeout, LogRequests: *logRequests, DBStats: stats,
		Metrics: mt, MetricsAuth: *metricsAuth, KeyCacheTTL: *keyCacheTTL,
		Shared: shared, NoticeMaxAge: *noticeMaxAge, BadgePoll: *pollInterval}
	if d.phones != nil { // cursors every instance sharing the data key accepts
		apicfg.Tokens = d.phones.Tokens()
	}
	ov.apply(&apicfg, *queue, *batch, w.PerOp, rdb, mt, log, stdout)
	srv := api.New(apicfg, db, db, w, log, ready)
	mcfg := mf.config(m, d.db != "", d.phones, log)
	mcfg.Numbers = d.numbers.plan
	srv.UseMembers(member.NewService(mcfg, db, db), db)
	switch mcfg.Sender.(type) {
	case nil:
		log.Warn("member login codes are written to this log (no --otp-webhook): fine for trying pointd, not for real members")
	case noSender:
		log.Warn("member login codes are sent nowhere: this live server on PostgreSQL has no --otp-webhook (and no --otp-log-codes)")
	}
	acfg := alert.Config{File: af, Logger: log}
	ocfg := ops.Config{CheckKey: ops.Keys(db, m), Title: string(m), Logger: log}
	if mt != nil { // a nil *Registry must not hide inside the interfaces
		acfg.Gatherer, acfg.Registerer = mt.Registry(), mt.Registry()
		ocfg.Gatherer = mt.Registry()
	}
	engine, err := alert.New(acfg)
	if err != nil {
		w.Close()
		return fmt.Errorf("alerts: %w", err)
	}
	ocfg.Alerts = engine
	dash := ops.New(ocfg)
	// The dashboard sits beside the API, not inside its middleware: its
	// event stream outlives the API's request deadline and must not count
	// in the API's latency.
	root := http.NewServeMux()
	root.Handle("/ops", dash.Handler())
	root.Handle("/ops/", dash.Handler())
	root.Handle("/", srv.Handler())
	hs := &http.Server{
		Handler:           api.CloseFramedTwice(root),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       *reqTimeout + 5*time.Second,
		WriteTimeout:      *reqTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		w.Close()
		return fs.bad("addr", "cannot listen: %v", err)
	}
	dbArg := "--data " + d.data
	if d.db != "" {
		dbArg = "--db '" + redactURL(d.db) + "'"
	}
	fmt.Fprintf(stdout, "pointd %s mode, listening on http://%s\n", m, ln.Addr())
	fmt.Fprintf(stdout, "database: %s\n", d.describe())
	fmt.Fprintf(stdout, "create an admin key:  pointd keys create --role admin --mode %s %s\n", m, dbArg)
	switch {
	case mt == nil:
		fmt.Fprintf(stdout, "metrics: off (--metrics=false)\n")
	case *metricsAuth:
		fmt.Fprintf(stdout, "metrics: http://%s/metrics (admin key required)\n", ln.Addr())
	default:
		fmt.Fprintf(stdout, "metrics: http://%s/metrics (loopback clients only; --metrics-auth to open it to admin keys)\n", ln.Addr())
	}

	fmt.Fprintf(stdout, "operations dashboard: http://%s/ops (admin key)\n", ln.Addr())

	var bg sync.WaitGroup
	bg.Go(func() { srv.RunReadPath(jobs, 30*time.Second) })
	bg.Go(func() { engine.Run(jobs) })
	bg.Go(func() { dash.Run(jobs) })
	bg.Go(func() { watchOverdueHolds(jobs, db, engine, *expiryEvery) })
	if *verifyEvery > 0 {
		bg.Go(func() { verifyPeriodically(jobs, db, engine, *verifyEvery, log) })
	}
	expiryDone := make(chan struct{})
	go func() {
		defer close(expiryDone)
		ledger.RunExpiry(jobs, db, w, *expiryEvery, time.Now, func(st ledger.ExpiryStats, err error) {
			mt.Expiry(st, err)
			if err != nil {
				log.Warn("expiry pass", "err", err, "lots", st.LotMembers, "holds", st.Holds)
			} else if st.LotMembers+st.Holds > 0 {
				log.Info("expiry pass", "lots", st.LotMembers, "holds", st.Holds)
			}
		})
	}()

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// Drain: stop accepting, let handlers finish (their batches commit and
	// are answered), then stop the writer after the last queued batch.
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopJobs() // also ends the dashboard's event streams, which Shutdown would wait for
	shutErr := hs.Shutdown(sctx)
	if err := srv.FlushKeyUsage(sctx); err != nil { // the keys' last-used times collected since the last flush
		log.Warn("key last-used times not written", "err", err)
	}
	<-expiryDone
	bg.Wait()
	srv.FlushSeen(sctx) // the seen times of requests answered during the drain
	w.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if shutErr != nil {
		return fmt.Errorf("shutdown: %w", shutErr)
	}
	log.Info("stopped")
	return nil
}
