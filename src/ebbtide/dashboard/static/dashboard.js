// The ebbtide dashboard: polls the feed once a second and draws it with uPlot.
// The first request takes the whole history (?since=0); later ones only the new samples.
"use strict";

(function () {
  const FEED = "/api/v1/feed";
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000;
  const COLORS = {
    offered: "#8250df", served: "#1a7f37", failed: "#cf222e",
    p50: "#0969da", p99: "#bc4c00", objective: "#cf222e",
    desired: "#1d2330", ready: "#1a7f37", starting: "#0969da", draining: "#9a6700", failing: "#cf222e",
    metric: "#8250df", target: "#cf222e",
  };

  const state = {
    sequence: 0,
    window: 600,
    endpoints: new Map(), // "ns/name" -> view
    updates: 0,
    lastSuccess: null,
    connected: null,
  };
  // For scripts and tests: what the page holds now.
  window.ebbtideDashboard = state;

  const fmtTime = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  function chartWidth(container) {
    return Math.max(320, Math.floor(container.getBoundingClientRect().width) || 430);
  }

  function makeChart(container, title, series, yLabel, extra) {
    const box = el("div", "chart");
    box.dataset.chart = title.key;
    box.append(el("h3", null, title.text));
    container.append(box);
    const opts = Object.assign({
      width: chartWidth(box), height: 180,
      scales: { x: { time: true } },
      axes: [{ space: 100, values: (u, splits) => splits.map(fmtTime) }, { label: yLabel, size: 56 }],
      legend: { live: false },
      series: [{}].concat(series),
    }, extra || {});
    const chart = new uPlot(opts, [[], ...series.map(() => [])], box);
    return chart;
  }

  const line = (label, color, more) => Object.assign({ label, stroke: color, width: 2, spanGaps: false }, more || {});
  const step = (label, color) => line(label, color, { paths: uPlot.paths.stepped({ align: 1 }) });
  const dashed = (label, color) => line(label, color, { dash: [6, 4], width: 1.5 });

  function createView(entry) {
    const key = `${entry.namespace}/${entry.name}`;
    const root = el("section", "endpoint");
    root.dataset.endpoint = key;
    const head = el("div", "endpoint-head");
    const title = el("h2", null, entry.name);
    const model = el("span", "model");
    const badge = el("span", "badge");
    badge.dataset.role = "state";
    const bounds = el("span", "bounds");
    head.append(title, model, badge, bounds);
    const facts = el("div", "facts");
    const explanation = el("div", "explanation");
    explanation.dataset.role = "explanation";
    const charts = el("div", "charts");
    const logs = el("div", "logs");
    const trail = el("div", "log");
    trail.dataset.role = "trail";
    const events = el("div", "log");
    events.dataset.role = "events";
    logs.append(trail, events);
    root.append(head, facts, explanation, charts, logs);
    document.getElementById("endpoints").append(root);

    const view = {
      key, root, model, badge, bounds, facts, explanation, trail, events, charts,
      columns: null, metricCharts: new Map(), metricNames: [],
    };
    view.traffic = makeChart(charts, { key: "traffic", text: "requests/s: offered and served" },
      [line("offered", COLORS.offered, { width: 4, stroke: "rgba(130,80,223,.45)" }), line("served", COLORS.served), line("failed (5xx)", COLORS.failed)], "req/s");
    view.latency = makeChart(charts, { key: "latency", text: "latency (ms): p50, p99 and the objective" },
      [line("p50", COLORS.p50), line("p99", COLORS.p99), dashed("objective", COLORS.objective)], "ms");
    // Desired last, dashed, so it shows over "ready" where the two agree.
    view.replicas = makeChart(charts, { key: "replicas", text: "replicas: ready, starting, draining against desired" },
      [step("ready", COLORS.ready), step("starting", COLORS.starting), step("draining", COLORS.draining),
       step("failing", COLORS.failing), Object.assign(step("desired", COLORS.desired), { dash: [5, 4], width: 1.5 })], "replicas",
      { scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max) + 1] } } });
    return view;
  }

  function emptyColumns() {
    return { time: [], offered: [], served: [], failed: [], p50: [], p99: [], queued: [],
             desired: [], ready: [], starting: [], draining: [], failing: [], metrics: {} };
  }

  function appendSeries(view, series, windowSeconds) {
    const cols = view.columns || (view.columns = emptyColumns());
    const before = cols.time.length;
    for (const name of Object.keys(cols)) {
      if (name === "metrics") continue;
      cols[name].push(...(series[name] || []));
    }
    const added = series.time.length;
    for (const [name, metric] of Object.entries(series.metrics || {})) {
      let mine = cols.metrics[name];
      if (!mine) {
        mine = cols.metrics[name] = { unit: metric.unit, value: new Array(before).fill(null), target: new Array(before).fill(null) };
      }
      mine.value.push(...metric.value);
      mine.target.push(...metric.target);
    }
    for (const mine of Object.values(cols.metrics)) {
      while (mine.value.length < cols.time.length) { mine.value.push(null); mine.target.push(null); }
    }
    // Keep the window the server keeps.
    const newest = cols.time.length ? cols.time[cols.time.length - 1] : 0;
    let drop = 0;
    while (drop < cols.time.length && cols.time[drop] < newest - windowSeconds) drop++;
    if (drop) {
      for (const name of Object.keys(cols)) {
        if (name !== "metrics") cols[name].splice(0, drop);
      }
      for (const mine of Object.values(cols.metrics)) { mine.value.splice(0, drop); mine.target.splice(0, drop); }
    }
    return added;
  }

  const ms = (values) => values.map((v) => (v == null ? null : v * 1000));

  function drawCharts(view, entry) {
    const c = view.columns;
    view.traffic.setData([c.time, c.offered, c.served, c.failed]);
    const objective = entry.latencyObjective ? entry.latencyObjective.seconds * 1000 : null;
    view.latency.setData([c.time, ms(c.p50), ms(c.p99), c.time.map(() => objective)]);
    view.replicas.setData([c.time, c.ready, c.starting, c.draining, c.failing, c.desired]);
    for (const [name, metric] of Object.entries(c.metrics)) {
      let chart = view.metricCharts.get(name);
      if (!chart) {
        chart = makeChart(view.charts, { key: `metric-${name}`, text: `${name} (${metric.unit}) against its target` },
          [line(name, COLORS.metric), dashed("target", COLORS.target)], metric.unit,
          { scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max, 1) * 1.15] } } });
        view.metricCharts.set(name, chart);
      }
      chart.setData([c.time, metric.value, metric.target]);
    }
  }

  function formatMetric(m) {
    if (m.value == null) return `${m.name} <unknown> / ${m.target}${m.unit === "%" ? "%" : " " + m.unit}`;
    const value = m.unit === "%" ? `${Math.round(m.value)}%` : `${Number(m.value).toPrecision(3)} ${m.unit}`;
    const target = m.unit === "%" ? `${m.target}%` : `${m.target} ${m.unit}`;
    return `${m.name} ${value} / target ${target}`;
  }

  function fact(label, value, role) {
    const span = el("span");
    if (role) span.dataset.role = role;
    span.append(`${label} `, el("b", null, value));
    return span;
  }

  function renderText(view, entry) {
    const r = entry.replicas;
    view.model.textContent = `${entry.model.name}:${entry.model.version} · ${entry.namespace}`;
    view.badge.textContent = entry.state.phase;
    view.badge.className = `badge ${entry.state.phase}`;
    view.bounds.textContent = `min ${entry.minReplicas} · max ${entry.maxReplicas}`;
    const message = el("span", `state-message ${entry.state.phase}`, entry.state.message);
    message.dataset.role = "state-message";
    view.facts.replaceChildren(
      fact("replicas ready/desired", `${r.ready}/${r.desired}`, "replicas"),
      fact("starting", String(r.starting)),
      fact("draining", String(r.draining)),
      ...(r.failing ? [fact("failing", String(r.failing))] : []),
      fact("queued", String(entry.queued)),
      ...entry.metrics.map((m) => fact("metric", formatMetric(m), "metric")),
      message,
    );
    view.explanation.textContent = entry.explanation || "no decision yet";

    const trailTable = el("table");
    trailTable.append(row("th", ["time", "replicas", "reason"]));
    for (const rescale of entry.trail.slice().reverse()) {
      const tr = row("td", [fmtTime(rescale.time), `${rescale.from} → ${rescale.to}`, rescale.reason], ["time", "size", "reason"]);
      tr.title = rescale.explanation;
      tr.dataset.role = "rescale";
      trailTable.append(tr);
    }
    view.trail.replaceChildren(el("h3", null, "decision trail: rescales"),
      entry.trail.length ? scroll(trailTable) : el("div", "none", "no rescale yet"));

    const eventTable = el("table");
    eventTable.append(row("th", ["last seen", "type", "reason", "message"]));
    for (const event of entry.events.slice().reverse()) {
      const seen = fmtTime(Date.parse(event.lastTimestamp) / 1000);
      const tr = row("td", [seen, event.type, event.reason, event.count > 1 ? `${event.message} (×${event.count})` : event.message], ["time"]);
      tr.className = event.type;
      eventTable.append(tr);
    }
    view.events.replaceChildren(el("h3", null, "events"),
      entry.events.length ? scroll(eventTable) : el("div", "none", "no events"));
  }

  function scroll(node) {
    const box = el("div", "log-scroll");
    box.append(node);
    return box;
  }

  function row(cellTag, cells, classes) {
    const tr = el("tr");
    cells.forEach((text, i) => tr.append(el(cellTag, classes && classes[i] ? classes[i] : null, text)));
    return tr;
  }

  function setConnection(connected, detail) {
    const badge = document.getElementById("connection");
    badge.className = `connection ${connected ? "live" : "disconnected"}`;
    badge.dataset.state = connected ? "live" : "disconnected";
    badge.textContent = detail;
    document.body.classList.toggle("disconnected", !connected);
    state.connected = connected;
  }

  function apply(feed) {
    state.window = feed.window;
    const seen = new Set();
    for (const entry of feed.endpoints) {
      const key = `${entry.namespace}/${entry.name}`;
      seen.add(key);
      let view = state.endpoints.get(key);
      if (!view) {
        view = createView(entry);
        state.endpoints.set(key, view);
      }
      appendSeries(view, entry.series, feed.window);
      renderText(view, entry);
      drawCharts(view, entry);
    }
    for (const [key, view] of state.endpoints) {
      if (!seen.has(key)) {
        view.root.remove();
        state.endpoints.delete(key);
      }
    }
    document.getElementById("empty").hidden = feed.endpoints.length > 0;
    state.sequence = feed.sequence;
    state.updates += 1;
  }

  function resetAll() {
    for (const view of state.endpoints.values()) view.root.remove();
    state.endpoints.clear();
    state.sequence = 0;
  }

  async function poll() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(`${FEED}?since=${state.sequence}`, { signal: controller.signal, cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const feed = await response.json();
      if (feed.sequence < state.sequence) {
        // A restarted control plane numbers its samples from 1 again: take its history whole.
        resetAll();
        return;
      }
      apply(feed);
      state.lastSuccess = Date.now();
      setConnection(true, `live · ${fmtTime(feed.generatedAt)}`);
    } catch (error) {
      const since = state.lastSuccess ? fmtTime(state.lastSuccess / 1000) : "the start";
      setConnection(false, `disconnected: no answer from the control plane since ${since}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async function loop() {
    for (;;) {
      const started = Date.now();
      await poll();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, POLL_MS - (Date.now() - started))));
    }
  }

  window.addEventListener("resize", () => {
    for (const view of state.endpoints.values()) {
      for (const chart of [view.traffic, view.latency, view.replicas, ...view.metricCharts.values()]) {
        chart.setSize({ width: chartWidth(chart.root.parentElement), height: 180 });
      }
    }
  });

  loop();
})();
