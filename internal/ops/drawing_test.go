package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ops"
)

// TestDashboardDrawing shows the page an hour with holes in it and a long
// alert, in Chromium, and reads back what it drew: nothing is painted where
// a line has no values (no fill down to the chart's corners), two-line
// charts name their lines, and the long alert is read whole.
func TestDashboardDrawing(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard test drives Debian's Chromium at %s, and it is missing (%v): "+
			"install it with `apt-get install -y chromium` (scripts/test does)", chromium, err)
	}
	secret, _ := auth.NewSecret(auth.ModeLive)
	dash := ops.New(ops.Config{Title: "drawing", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		CheckKey: func(_ context.Context, h []byte) ops.Access {
			if bytes.Equal(h, auth.HashSecret(secret)) {
				return ops.Admin
			}
			return ops.NoAccess
		}})

	// 300 seconds: no values, values, no values, values (the second hole
	// is where the first chart drew a false triangle).
	const n = 300
	now := time.Now()
	samples := make([]map[string]any, n)
	for i := range n {
		s := map[string]any{"seq": i + 1, "t": now.Add(time.Duration(i-n+1) * time.Second).UnixMilli(), "has_cache": true}
		switch {
		case i >= 60 && i < 120:
			s["p99_ms"], s["p50_ms"], s["cache_pct"] = 50, 20, 60
		case i >= 180:
			s["p99_ms"], s["p50_ms"], s["cache_pct"] = 80, 30, 90
		}
		for _, k := range []string{"earns", "redeems", "rps", "err_pct", "ref_pct", "queue", "queue_cap", "db", "db_max", "cpu_pct", "rss_mb", "heap_mb"} {
			s[k] = 1
		}
		samples[i] = s
	}
	long := "The p99 latency of POST /v1/earns has been over its budget of 100 ms for five minutes while " +
		"the write queue stayed near its bound; look at the database's commit latency and at the batch " +
		"sizes before raising anything, and read the runbook's section on overload for what to do next."
	history, _ := json.Marshal(map[string]any{"title": "drawing", "interval_ms": 1000, "budget_ms": 100, "cores": 2,
		"access": "admin", "samples": samples, "alerts": []map[string]any{{"name": "LongAlert", "severity": "critical",
			"state": "firing", "summary": long, "active_at": now.Add(-time.Minute), "fired_at": now.Add(-time.Minute)}}})

	root := http.NewServeMux()
	root.HandleFunc("GET /ops/history", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(history)
	})
	root.Handle("/ops", dash.Handler())
	root.Handle("/ops/", dash.Handler())
	hs := httptest.NewServer(root)
	defer hs.Close()
	defer hs.CloseClientConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tab := chromiumTab(t, ctx)
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open /ops", chromedp.Navigate(hs.URL+"/ops"), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), secret))
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	do("the charts drawn", chromedp.Poll[chromedp.Void](`document.getElementById("v-p99").textContent === "80.0"`,
		chromedp.WithPollingTimeout(10*time.Second)))

	// Pixels of a line's own colour (stroke or its fill), counted in
	// stripes of the chart given as fractions of its width.
	paint, err := chromedp.Run(tab, chromedp.Evaluate[map[string]map[string]int](`(() => {
	  const out = {};
	  const stripes = {lead: [0.03, 0.17], run1: [0.25, 0.35], gap: [0.43, 0.57], run2: [0.7, 0.9]};
	  for (const [id, hex] of [["c-latency", "#ffb020"], ["c-cache", "#3ddc84"]]) {
	    const cv = document.getElementById(id), g = cv.getContext("2d");
	    const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
	    out[id] = {};
	    for (const [name, [a, b]] of Object.entries(stripes)) {
	      const x0 = Math.round(a * cv.width), x1 = Math.round(b * cv.width);
	      const d = g.getImageData(x0, 0, x1 - x0, cv.height).data;
	      let k = 0;
	      for (let i = 0; i < d.length; i += 4)
	        if (d[i + 3] > 0 && Math.abs(d[i] - c[0]) < 48 && Math.abs(d[i + 1] - c[1]) < 48 && Math.abs(d[i + 2] - c[2]) < 48) k++;
	      out[id][name] = k;
	    }
	  }
	  return out;
	})()`))
	if err != nil {
		t.Fatalf("read the charts: %v", err)
	}
	for id, p := range paint {
		if p["run1"] == 0 || p["run2"] == 0 {
			t.Errorf("%s: nothing drawn where the line has values: %v", id, p)
		}
		if p["lead"] != 0 || p["gap"] != 0 {
			t.Errorf("%s: painted where the line has no values (before it %d px, in its hole %d px): the fill spans the gap", id, p["lead"], p["gap"])
		}
	}

	legends, err := chromedp.Run(tab, chromedp.Evaluate[map[string]string](`(() => {
	  const out = {};
	  for (const id of ["t-latency", "t-db", "t-mem"]) {
	    const l = document.querySelector("#" + id + " .legend");
	    out[id] = l && l.getBoundingClientRect().height > 0 ? Array.from(l.querySelectorAll(".name")).map((e) => e.textContent).join("|") : "";
	  }
	  return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"t-latency": "p99|p50", "t-db": "in use|bound", "t-mem": "resident|Go heap"} {
		if legends[id] != want {
			t.Errorf("the legend of %s names %q, want %q", id, legends[id], want)
		}
	}

	type alertView struct {
		Text             string `json:"text"`
		Title            string `json:"title"`
		ScrollW, ClientW int
		Visible          bool `json:"visible"`
	}
	av, err := chromedp.Run(tab, chromedp.Evaluate[alertView](`(() => {
	  const row = document.querySelector('.alert[data-name="LongAlert"]'), el = row.querySelector(".summary");
	  const box = document.getElementById("alerts").getBoundingClientRect(), r = el.getBoundingClientRect();
	  return {text: el.textContent, title: row.title, ScrollW: el.scrollWidth, ClientW: el.clientWidth,
	    visible: r.bottom <= box.bottom + 1 && r.right <= box.right + 1};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if av.Text != long || av.ScrollW > av.ClientW || !av.Visible {
		t.Errorf("the long alert is cut: text whole %v, %d px of text in %d px, inside its box %v", av.Text == long, av.ScrollW, av.ClientW, av.Visible)
	}
	if !strings.Contains(av.Title, long) {
		t.Errorf("the long alert's title is %q", av.Title)
	}
	fits, err := chromedp.Run(tab, chromedp.Evaluate[bool](
		`document.documentElement.scrollHeight <= innerHeight && document.documentElement.scrollWidth <= innerWidth`))
	if err != nil || !fits {
		t.Errorf("the page with a long alert does not fit 1920×1080 (%v)", err)
	}
}

// chromiumTab starts Debian's Chromium, headless at 1920×1080, for the
// length of ctx and the test.
func chromiumTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "pointd-ops-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium), chromedp.Flag("headless", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1920, 1080))
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		for range 50 { // Chromium's children may still write for a moment
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return tab
}
