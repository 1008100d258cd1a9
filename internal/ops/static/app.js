// pointd operations dashboard. Vanilla JS, no dependencies: loads the last
// hour from /ops/history, then follows /ops/stream (server-sent events, one
// sample a second) and redraws numbers and canvas charts.
"use strict";

(function () {
  const MAX = 3600;           // samples kept: an hour at one a second
  const MIN_SPAN = 120e3;     // charts span at least two minutes...
  const MAX_SPAN = 3600e3;    // ...and at most an hour
  const STALE_MS = 5000;      // no sample for this long: the stream is down

  let samples = [];
  let alerts = [];
  let meta = { budget_ms: 100, cores: 1, title: "" };
  let lastSeq = 0;
  let drawPending = false;

  const $ = (id) => document.getElementById(id);
  const css = getComputedStyle(document.documentElement);
  const color = (v) => css.getPropertyValue(v).trim();
  const C = {
    line: color("--line"), line2: color("--line2"), ok: color("--ok"),
    warn: color("--warn"), crit: color("--crit"), dim: color("--dim"), edge: color("--edge"),
  };

  // ------------------------------------------------------------ formatting

  const isNum = (v) => typeof v === "number" && isFinite(v);

  function fmt(v, digits) {
    if (!isNum(v)) return "–";
    const a = Math.abs(v);
    if (digits === undefined) digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    if (a >= 10000) return Math.round(v).toLocaleString("en-US");
    return v.toFixed(digits);
  }

  function fmtRate(v) {
    if (!isNum(v)) return "–";
    if (v >= 100) return Math.round(v).toLocaleString("en-US");
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(v === 0 ? 0 : 2);
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  function since(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t)) return "";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function level(el, lvl) {
    el.classList.toggle("warn", lvl === 1);
    el.classList.toggle("crit", lvl === 2);
  }

  const lvlOver = (v, warn, crit) => (!isNum(v) ? 0 : v >= crit ? 2 : v >= warn ? 1 : 0);

  // ---------------------------------------------------------------- charts

  // series: [{key | get, name, color, width, dash, fill}]; opts: {min, max, fixedMax}
  function chart(id, series, opts) {
    const cv = $(id);
    const w = cv.clientWidth, h = cv.clientHeight;
    if (w < 10 || h < 10) return;
    const dpr = window.devicePixelRatio || 1;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    const g = cv.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const n = samples.length;
    const now = n ? samples[n - 1].t : Date.now();
    const first = n ? samples[0].t : now;
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, now - first));
    const t0 = now - span;
    const getters = series.map((s) => s.get || ((x) => x[s.key]));

    let top = opts && opts.fixedMax ? opts.fixedMax : 0;
    if (!(opts && opts.fixedMax)) {
      for (let i = 0; i < n; i++) {
        if (samples[i].t < t0) continue;
        for (const get of getters) {
          const v = get(samples[i]);
          if (isNum(v) && v > top) top = v;
        }
      }
      if (opts && isNum(opts.floorMax)) top = Math.max(top, opts.floorMax);
      top = niceCeil(top > 0 ? top * 1.1 : 1);
    }
    const fs = Math.max(11, Math.min(18, Math.round(h / 14)));
    const padB = fs + 4, padT = 2;
    const ch = h - padB - padT;
    const x = (t) => ((t - t0) / span) * w;
    const y = (v) => padT + ch - (Math.min(v, top) / top) * ch;

    // grid: baseline and half line
    g.strokeStyle = C.edge;
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, y(0) + 0.5); g.lineTo(w, y(0) + 0.5);
    g.moveTo(0, y(top / 2) + 0.5); g.lineTo(w, y(top / 2) + 0.5);
    g.stroke();

    if (opts && isNum(opts.limit) && opts.limit <= top) {
      g.save();
      g.setLineDash([6, 5]);
      g.strokeStyle = opts.limitColor || C.crit;
      g.lineWidth = 2;
      g.beginPath();
      g.moveTo(0, y(opts.limit)); g.lineTo(w, y(opts.limit));
      g.stroke();
      g.restore();
    }

    series.forEach((s, k) => {
      const get = getters[k];
      // The line is drawn in runs: a missing value or a hole in time (the
      // stream was down) ends a run, and nothing is drawn across it.
      const runs = [];
      let run = null, prevT = 0;
      // with more samples than pixels, draw one point per pixel column (its max)
      const step = Math.max(1, Math.floor(n / (w * 1.5)));
      for (let i = 0; i < n; i += step) {
        const sm = samples[i];
        if (sm.t < t0) continue;
        let v = get(sm);
        for (let j = 1; j < step && i + j < n; j++) {
          const u = get(samples[i + j]);
          if (isNum(u) && (!isNum(v) || u > v)) v = u;
        }
        if (!isNum(v)) { run = null; continue; }
        if (run && sm.t - prevT > 5000) run = null;
        if (!run) { run = []; runs.push(run); }
        run.push([x(sm.t), y(v)]);
        prevT = sm.t;
      }
      if (k === 0 && s.fill !== false) {
        // soft area under the first series: each run down to the baseline
        // below its own ends, never to the chart's corners
        g.globalAlpha = 0.12;
        g.fillStyle = s.color || C.line;
        for (const r of runs) {
          if (r.length < 2) continue;
          g.beginPath();
          g.moveTo(r[0][0], y(0));
          for (const [px, py] of r) g.lineTo(px, py);
          g.lineTo(r[r.length - 1][0], y(0));
          g.closePath();
          g.fill();
        }
        g.globalAlpha = 1;
      }
      g.strokeStyle = s.color || C.line;
      g.fillStyle = s.color || C.line;
      g.lineWidth = s.width || 2.5;
      g.lineJoin = "round";
      if (s.dash) g.setLineDash(s.dash); else g.setLineDash([]);
      for (const r of runs) {
        if (r.length === 1) { // a lone value: a dot, as wide as the line
          const d = g.lineWidth;
          g.fillRect(r[0][0] - d / 2, r[0][1] - d / 2, d, d);
          continue;
        }
        g.beginPath();
        g.moveTo(r[0][0], r[0][1]);
        for (let i = 1; i < r.length; i++) g.lineTo(r[i][0], r[i][1]);
        g.stroke();
      }
    });
    legend(cv, series);
    g.setLineDash([]);

    g.fillStyle = C.dim;
    g.font = fs + "px " + css.getPropertyValue("--font");
    g.textBaseline = "top";
    g.textAlign = "left";
    g.fillText("−" + Math.round(span / 60000) + " min", 2, h - fs - 1);
    g.textAlign = "right";
    g.fillText("max " + fmt(top), w - 2, h - fs - 1);
  }

  // legend names the lines of a chart that has more than one, in their
  // colours and dashes, above the chart.
  function legend(cv, series) {
    if (series.length < 2) return;
    const tile = cv.parentElement;
    let box = tile.querySelector(".legend");
    if (!box) {
      box = document.createElement("div");
      box.className = "legend";
      tile.insertBefore(box, cv);
      for (const s of series) {
        const item = document.createElement("span");
        item.className = "item";
        const sw = document.createElement("span");
        sw.className = "swatch" + (s.dash ? " dashed" : "");
        sw.style.borderTopColor = s.color || C.line;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = s.name;
        item.append(sw, name);
        box.appendChild(item);
      }
    }
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // ---------------------------------------------------------------- render

  function render() {
    drawPending = false;
    const s = samples.length ? samples[samples.length - 1] : null;
    renderAlerts();
    if (!s) return;

    $("v-earns").textContent = fmtRate(s.earns);
    $("s-earns").textContent = isNum(s.rps) ? "all requests " + fmtRate(s.rps) + " / s" : "\u00a0";
    $("v-redeems").textContent = fmtRate(s.redeems);

    $("v-p99").textContent = fmt(s.p99_ms);
    $("s-latency").textContent = "p50 " + fmt(s.p50_ms) + " ms · budget " + fmt(meta.budget_ms, 0) + " ms";
    level($("t-latency"), isNum(s.p99_ms) ? (s.p99_ms > 2.5 * meta.budget_ms ? 2 : s.p99_ms > meta.budget_ms ? 1 : 0) : 0);

    $("v-errors").textContent = fmt(s.err_pct, 2);
    $("s-errors").textContent = "of " + fmtRate(s.rps) + " requests / s";
    level($("t-errors"), lvlOver(s.err_pct, 0.1, 1));
    $("v-refusals").textContent = fmt(s.ref_pct, 2);
    level($("t-refusals"), lvlOver(s.ref_pct, 0.1, 1));

    $("v-queue").textContent = isNum(s.queue) ? Math.round(s.queue).toLocaleString("en-US") : "–";
    $("s-queue").textContent = isNum(s.queue_cap) ? "of " + Math.round(s.queue_cap).toLocaleString("en-US") + " (refused beyond)" : "\u00a0";
    const qf = isNum(s.queue) && isNum(s.queue_cap) && s.queue_cap > 0 ? s.queue / s.queue_cap : NaN;
    level($("t-queue"), lvlOver(qf, 0.5, 0.9));

    $("v-db").textContent = isNum(s.db) ? Math.round(s.db) : "–";
    $("v-dbmax").textContent = isNum(s.db_max) ? "/ " + Math.round(s.db_max) : "";
    const df = isNum(s.db) && isNum(s.db_max) && s.db_max > 0 ? s.db / s.db_max : NaN;
    const bar = $("b-db");
    bar.style.width = isNum(df) ? Math.min(100, df * 100).toFixed(1) + "%" : "0";
    const dl = lvlOver(df, 0.75, 1);
    level(bar, dl);
    level($("t-db"), dl);

    if (!s.has_cache) {
      $("v-cache").textContent = "n/a";
      $("s-cache").textContent = "no cache metrics";
    } else {
      $("v-cache").textContent = fmt(s.cache_pct, 1);
      $("s-cache").textContent = "over the last 10 s";
    }

    $("v-cpu").textContent = fmt(s.cpu_pct, 0);
    $("s-cpu").textContent = "of " + meta.cores + (meta.cores === 1 ? " core" : " cores");
    level($("t-cpu"), lvlOver(s.cpu_pct, 70, 90));

    $("v-mem").textContent = fmt(s.rss_mb, 0);
    $("s-mem").textContent = "resident · Go heap " + fmt(s.heap_mb, 0) + " MB";

    chart("c-earns", [{ key: "earns", color: C.line }]);
    chart("c-redeems", [{ key: "redeems", color: C.line2 }]);
    chart("c-latency", [{ key: "p99_ms", name: "p99", color: C.warn }, { key: "p50_ms", name: "p50", color: C.line, width: 2 }],
      { limit: meta.budget_ms, floorMax: meta.budget_ms * 0.5 });
    chart("c-errors", [{ key: "err_pct", color: C.line }], { limit: 1, floorMax: 1.2 });
    chart("c-refusals", [{ key: "ref_pct", color: C.line }], { limit: 1, floorMax: 1.2 });
    chart("c-queue", [{ key: "queue", color: C.line }]);
    chart("c-db", [{ key: "db", name: "in use", color: C.ok }, { key: "db_max", name: "bound", color: C.crit, width: 2, dash: [6, 5], fill: false }],
      { floorMax: isNum(s.db_max) ? s.db_max : 1 });
    chart("c-cache", [{ key: "cache_pct", color: C.ok }], { fixedMax: 100 });
    chart("c-cpu", [{ key: "cpu_pct", color: C.line }], { floorMax: 10 });
    chart("c-mem", [{ key: "rss_mb", name: "resident", color: C.line2 }, { key: "heap_mb", name: "Go heap", color: C.line, width: 2, fill: false }]);
  }

  function renderAlerts() {
    const box = $("alerts");
    const firing = alerts.filter((a) => a.state === "firing");
    const pending = alerts.filter((a) => a.state !== "firing");
    box.classList.toggle("firing", firing.length > 0);
    box.classList.toggle("pending", firing.length === 0 && pending.length > 0);
    box.classList.toggle("clear", alerts.length === 0);
    box.replaceChildren();
    if (alerts.length === 0) {
      const d = document.createElement("div");
      d.className = "allclear";
      d.textContent = "No alerts firing";
      box.appendChild(d);
      return;
    }
    const shown = alerts.slice(0, 5);
    for (const a of shown) {
      const row = document.createElement("div");
      row.className = "alert " + (a.state === "firing" ? "firing" : "pending") + " " + a.severity;
      row.dataset.name = a.name;
      const sev = document.createElement("span");
      sev.className = "sev";
      sev.textContent = a.state === "firing" ? a.severity : "pending";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = a.name;
      const sum = document.createElement("span");
      sum.className = "summary";
      sum.textContent = a.summary;
      row.title = a.name + ": " + a.summary; // the whole text, also on hover
      const when = document.createElement("span");
      when.className = "since";
      when.textContent = a.state === "firing" ? "firing for " + since(a.fired_at) : "pending " + since(a.active_at);
      row.append(sev, name, sum, when);
      box.appendChild(row);
    }
    if (alerts.length > shown.length) {
      const more = document.createElement("div");
      more.className = "more";
      more.textContent = "+ " + (alerts.length - shown.length) + " more";
      box.appendChild(more);
    }
  }

  function schedule() {
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(render);
    }
  }

  function push(s) {
    if (!s || s.seq <= lastSeq) return;
    lastSeq = s.seq;
    samples.push(s);
    if (samples.length > MAX) samples.splice(0, samples.length - MAX);
  }

  // ---------------------------------------------------------------- wiring

  let lastMsg = 0;
  function setConn(cls, text) {
    const c = $("conn");
    c.className = "conn " + cls;
    c.textContent = text;
  }

  async function loadHistory() {
    const r = await fetch("/ops/history", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { location.reload(); return false; }
    if (!r.ok) throw new Error("history: " + r.status);
    const h = await r.json();
    meta = h;
    $("title").textContent = (h.title || "") + (h.access === "read-only" ? " · read-only" : "");
    // a viewer's key: the page offers no action (elements marked admin-only)
    document.body.classList.toggle("read-only", h.access === "read-only");
    samples = [];
    lastSeq = 0;
    (h.samples || []).forEach(push);
    alerts = h.alerts || [];
    if (samples.length) lastMsg = Date.now();
    schedule();
    return true;
  }

  function connect() {
    const es = new EventSource("/ops/stream");
    es.onopen = () => setConn("live", "live");
    es.onmessage = (e) => {
      const m = JSON.parse(e.data);
      push(m.s);
      alerts = m.alerts || [];
      lastMsg = Date.now();
      setConn("live", "live");
      schedule();
    };
    es.onerror = () => {
      setConn("wait", "reconnecting");
      if (es.readyState === EventSource.CLOSED) {
        // refused (logged out, or the server restarted): check and retry
        setTimeout(async () => {
          try { if (await loadHistory()) connect(); } catch (err) { setConn("down", "offline"); setTimeout(connect, 3000); }
        }, 2000);
      }
    };
  }

  setInterval(() => {
    $("clock").textContent = fmtTime(Date.now());
    if (lastMsg && Date.now() - lastMsg > STALE_MS) setConn("down", "no data " + Math.round((Date.now() - lastMsg) / 1000) + " s");
    if (alerts.length) renderAlerts(); // keep "firing for" current
  }, 1000);
  $("clock").textContent = fmtTime(Date.now());
  window.addEventListener("resize", schedule);

  loadHistory().then((ok) => { if (ok) connect(); })
    .catch(() => { setConn("down", "offline"); setTimeout(() => location.reload(), 5000); });
})();
