// Draws the feed from /events. No libraries: DOM, SVG and EventSource only.
"use strict";

const CHART_WINDOW_MS = 120000;
const TIMELINE_WINDOW_MS = 300000;
const STATE_COLORS = {
  closed: "#1a7f37", open: "#cf222e", half_open: "#bf8700", forced_open: "#82071e",
  disabled: "#6e7781", metrics_only: "#0969da",
};
const SVG_NS = "http://www.w3.org/2000/svg";

const cards = new Map();
let lastEventAt = 0;

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return Number(v).toFixed(digits);
}
function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 10) return v.toFixed(1) + " ms";
  if (v < 10000) return Math.round(v) + " ms";
  return (v / 1000).toFixed(1) + " s";
}
function duration(msValue) {
  if (msValue === null || msValue === undefined) return "";
  const s = msValue / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return (s / 3600).toFixed(1) + " h";
}
function clock(t) {
  return new Date(t).toLocaleTimeString([], { hour12: false });
}
function stateLabel(state) {
  return String(state).replace("_", "-");
}
function field(obj, ...names) {
  for (const n of names) if (obj && obj[n] !== undefined && obj[n] !== null) return obj[n];
  return undefined;
}

function setFeed(state, text) {
  const feed = document.getElementById("feed");
  if (feed.dataset.feedState !== state) feed.dataset.feedState = state;
  document.getElementById("feed-text").textContent = text;
}

function card(service) {
  let el = cards.get(service.name);
  if (el) return el;
  el = document.createElement("section");
  el.className = "card";
  el.dataset.service = service.name;
  el.innerHTML = `
    <div class="card-head">
      <h2>${esc(service.name)}</h2><span class="url">${esc(service.url)}</span>
      <span class="badge" data-role="up"></span><span class="badge" data-role="ready"></span>
    </div>
    <p class="down-note" data-role="down-note" hidden></p>
    <ul class="checks" data-role="checks"></ul>
    <div class="traffic">
      <figure data-chart="rate">
        <figcaption><span class="key-rate">requests/s <b data-role="rps">–</b></span>
          <span class="key-err">5xx/s <b data-role="err">–</b></span></figcaption>
        <svg class="chart" viewBox="0 0 300 70" preserveAspectRatio="none" data-role="rate-chart"></svg>
      </figure>
      <figure data-chart="latency">
        <figcaption><span class="key-p50">p50 <b data-role="p50">–</b></span>
          <span class="key-p99">p99 <b data-role="p99">–</b></span></figcaption>
        <svg class="chart" viewBox="0 0 300 70" preserveAspectRatio="none" data-role="latency-chart"></svg>
      </figure>
    </div>
    <div data-role="upstreams"></div>`;
  const main = document.getElementById("services");
  const placeholder = document.getElementById("placeholder");
  if (placeholder) placeholder.remove();
  main.appendChild(el);
  cards.set(service.name, el);
  return el;
}

function role(el, name) {
  return el.querySelector(`[data-role="${name}"]`);
}
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
function setBadge(el, text, cls) {
  setText(el, text);
  const want = "badge " + cls;
  if (el.className !== want) el.className = want;
}
function setHTML(el, html) {
  if (el.dataset.html !== html) {
    el.innerHTML = html;
    el.dataset.html = html;
  }
}

function renderService(service, now) {
  const el = card(service);
  el.dataset.up = String(service.up);
  el.dataset.ready = String(service.ready);
  el.dataset.status = service.status;
  el.classList.toggle("stale", !!service.stale);
  setBadge(role(el, "up"), service.up ? "up" : "down", service.up ? "good" : "bad");
  const readyText = service.up ? (service.ready ? "ready" : "not ready") : "not ready";
  setBadge(role(el, "ready"), readyText, service.ready ? "good" : (service.up ? "warn" : "bad"));

  const note = role(el, "down-note");
  if (!service.up) {
    const seen = service.last_seen_ms ? ` · last seen ${clock(service.last_seen_ms)} (${duration(now - service.last_seen_ms)} ago)` : "";
    setText(note, `Not answering: ${service.error || "no response"}${seen}`);
    note.hidden = false;
  } else {
    note.hidden = true;
  }

  const checks = (service.checks || []).map((c) =>
    `<li data-check="${esc(c.name)}" data-status="${esc(c.status)}">${esc(c.name)}: ${esc(c.status)}` +
    (c.observed ? ` <span class="muted">(${esc(c.observed)})</span>` : "") + "</li>").join("");
  setHTML(role(el, "checks"), checks);

  const history = service.history || [];
  const last = history.length ? history[history.length - 1] : null;
  const fresh = last && service.up && now - last.t_ms < 5000;
  setText(role(el, "rps"), fresh ? num(last.rps, 1) : "–");
  setText(role(el, "err"), fresh ? num(last.error_rps, 1) : "–");
  setText(role(el, "p50"), fresh ? ms(last.p50_ms) : "–");
  setText(role(el, "p99"), fresh ? ms(last.p99_ms) : "–");
  drawChart(role(el, "rate-chart"), history, now, [["rps", "s-rate"], ["error_rps", "s-err"]], (v) => num(v, v < 10 ? 1 : 0) + "/s");
  drawChart(role(el, "latency-chart"), history, now, [["p50_ms", "s-p50"], ["p99_ms", "s-p99"]], ms);

  renderUpstreams(role(el, "upstreams"), service, now);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// Lines break where a value is missing or the service was not polled for a while.
function drawChart(svg, history, now, series, fmt) {
  const W = 300, H = 70, top = 10;
  const start = now - CHART_WINDOW_MS;
  const points = history.filter((p) => p.t_ms >= start);
  let max = 0;
  for (const p of points) for (const [key] of series) if (p[key] > max) max = p[key];
  max = niceMax(max);
  const x = (t) => ((t - start) / CHART_WINDOW_MS * W).toFixed(1);
  const y = (v) => (H - (v / max) * (H - top)).toFixed(1);
  let out = `<line class="grid" x1="0" x2="${W}" y1="${top}" y2="${top}"/><text x="3" y="${top - 2}">${esc(fmt(max))}</text>`;
  for (const [key, cls] of series) {
    let run = [];
    let prevT = null;
    const flush = () => {
      if (run.length === 1) run.push(run[0].replace(/^([\d.]+)/, (m) => (Number(m) + 1.5).toFixed(1)));
      if (run.length) out += `<polyline class="${cls}" points="${run.join(" ")}"/>`;
      run = [];
    };
    for (const p of points) {
      const v = p[key];
      if (v === null || v === undefined || (prevT !== null && p.t_ms - prevT > 3500)) flush();
      if (v !== null && v !== undefined) run.push(`${x(p.t_ms)},${y(v)}`);
      prevT = p.t_ms;
    }
    flush();
  }
  if (!points.length) out += `<text x="${W / 2}" y="${H / 2 + 3}" text-anchor="middle">no traffic data</text>`;
  setSvg(svg, out);
}
function setSvg(svg, markup) {
  if (svg.dataset.markup === markup) return;
  svg.dataset.markup = markup;
  const doc = new DOMParser().parseFromString(`<svg xmlns="${SVG_NS}">${markup}</svg>`, "image/svg+xml");
  svg.replaceChildren(...Array.from(doc.documentElement.childNodes).map((n) => document.importNode(n, true)));
}

function stat(label, value, key) {
  return `<div data-stat="${esc(key)}"><dt>${esc(label)}</dt><dd>${esc(value)}</dd></div>`;
}

// Breakers are per instance (`user-service@127.0.0.1:5001`); retries and bulkheads per upstream.
function upstreamOf(name) {
  return String(name).split("@")[0];
}

// Keeps one child element per key so timelines and charts do not flicker.
function keyed(container, selector, attr, keys, create) {
  const existing = new Map(Array.from(container.querySelectorAll(`:scope > ${selector}`)).map((e) => [e.getAttribute(attr), e]));
  const out = [];
  for (const key of keys) {
    let el = existing.get(key);
    if (!el) { el = create(key); el.setAttribute(attr, key); }
    container.appendChild(el); // keeps the order of `keys`
    existing.delete(key);
    out.push(el);
  }
  for (const el of existing.values()) el.remove();
  return out;
}

function renderUpstreams(container, service, now) {
  const breakers = service.breakers || [];
  const retries = service.retries || [];
  const bulkheads = service.bulkheads || [];
  const names = [];
  for (const x of [...breakers, ...retries, ...bulkheads]) {
    if (x.name && !names.includes(upstreamOf(x.name))) names.push(upstreamOf(x.name));
  }
  if (!names.length) {
    if (!container.querySelector(".none") || !service.up) {
      container.innerHTML = service.up ? `<p class="none">No upstream circuits: this service calls nothing.</p>` : "";
    }
    return;
  }
  container.querySelector(":scope > .none")?.remove();
  const els = keyed(container, ".upstream", "data-upstream", names, (name) => {
    const el = document.createElement("div");
    el.className = "upstream";
    el.innerHTML = `<div class="up-head"><h3>→ ${esc(name)}</h3><span class="since" data-role="summary"></span></div>
      <div data-role="breakers"></div><div class="groups" data-role="shared"></div>`;
    return el;
  });
  names.forEach((name, i) => {
    const el = els[i];
    const mine = breakers.filter((b) => upstreamOf(b.name) === name);
    const retry = retries.find((r) => upstreamOf(r.name) === name);
    const bulkhead = bulkheads.find((b) => upstreamOf(b.name) === name);
    const open = mine.filter((b) => b.state !== "closed").length;
    setText(role(el, "summary"), mine.length > 1 ? `${mine.length} instances, ${open} not closed` : "");
    const rows = keyed(role(el, "breakers"), ".breaker", "data-breaker", mine.map((b) => b.name), () => {
      const b = document.createElement("div");
      b.className = "breaker";
      b.innerHTML = `
        <div class="br-head"><span class="instance" data-role="instance"></span><span class="badge" data-role="circuit"></span><span class="since" data-role="since"></span></div>
        <div class="groups" data-role="stats"></div>
        <svg class="timeline" viewBox="0 0 300 16" preserveAspectRatio="none" data-role="timeline"></svg>
        <div class="timeline-axis"><span data-role="axis-start">−1 min</span><span>now</span></div>
        <ol class="transitions" data-role="transitions"></ol>`;
      return b;
    });
    mine.forEach((b, j) => renderBreaker(rows[j], b, service, now));
    setHTML(role(el, "shared"), retryGroup(retry) + bulkheadGroup(bulkhead));
  });
}

function group(name, body) {
  return body ? `<div class="group" data-group="${name}"><span class="group-name">${name}</span><dl class="stats">${body}</dl></div>` : "";
}

function retryGroup(retry) {
  if (!retry) return "";
  const reqs = field(retry, "requests_total");
  const tries = field(retry, "retries_total");
  let out = stat("calls", reqs ?? "–", "retry_requests");
  out += stat("retries", tries ?? "–", "retries");
  out += stat("retry ratio", reqs ? num(100 * (tries || 0) / reqs, 1) + " %" : "–", "retry_ratio");
  out += stat("budget left", field(retry, "budget_available") ?? "–", "budget_available");
  out += stat("budget exhausted", field(retry, "budget_exhausted_total") ?? "–", "budget_exhausted");
  return group("retries", out);
}

function bulkheadGroup(bulkhead) {
  if (!bulkhead) return "";
  let out = stat("in use", `${field(bulkhead, "in_use") ?? "–"} / ${field(bulkhead, "max_concurrent") ?? "–"}`, "bulkhead_in_use");
  out += stat("waiting", field(bulkhead, "waiting") ?? "–", "bulkhead_waiting");
  out += stat("rejected", field(bulkhead, "rejected_total") ?? "–", "bulkhead_rejected");
  return group("bulkhead", out);
}

function renderBreaker(el, breaker, service, now) {
  const state = breaker.state;
  if (el.dataset.circuitState !== state) el.dataset.circuitState = state;
  const snap = breaker.snapshot || {};
  const at = breaker.name.includes("@") ? breaker.name.slice(breaker.name.indexOf("@") + 1) : breaker.name;
  setText(role(el, "instance"), "breaker " + at);
  setBadge(role(el, "circuit"), stateLabel(state), "state-" + state);
  let since = "";
  const t = field(snap, "time_in_state_ms");
  if (t !== undefined) since = `for ${duration(t)}`;
  const retryAfter = field(snap, "retry_after_ms");
  if (retryAfter !== undefined && state === "open") since += ` · probe in ${duration(retryAfter)}`;
  if (service.stale) since += " · last known (service down)";
  setText(role(el, "since"), since);

  const rate = field(snap, "failure_rate");
  let circuit = stat("calls", field(snap, "calls") ?? "–", "calls");
  circuit += stat("failures", field(snap, "failures") ?? "–", "failures");
  circuit += stat("failure rate", rate === undefined || rate < 0 ? "–" : num(rate, 0) + " %", "failure_rate");
  circuit += stat("slow calls", field(snap, "slow_calls") ?? "–", "slow_calls");
  circuit += stat("rejected", field(snap, "rejected_total") ?? "–", "rejected");
  circuit += stat("transitions", field(snap, "transitions_total") ?? "–", "transitions");
  setHTML(role(el, "stats"), group("circuit", circuit));

  const timeline = breaker.timeline || [];
  drawTimeline(role(el, "timeline"), timeline, now);
  setText(role(el, "axis-start"), `−${timelineWindow(timeline, now) / 60000} min`);
  // Consecutive identical entries (a probe failing every few seconds) collapse into one line.
  const groups = [];
  for (const tr of timeline) {
    const last = groups[groups.length - 1];
    if (last && last.tr.from === tr.from && last.tr.to === tr.to && last.tr.missed === tr.missed && tr.from) {
      last.count += 1;
      last.tr = tr;
    } else {
      groups.push({ tr, count: 1 });
    }
  }
  const items = groups.slice(-5).reverse().map(({ tr, count }) => {
    const to = `<span class="to st-${esc(tr.to)}">${esc(stateLabel(tr.to))}</span>`;
    let text;
    if (!tr.from) {
      text = `first seen ${to}`;
    } else if (tr.from === tr.to) {
      const via = tr.to === "open" && tr.missed === 2 ? "half-open" : "…";
      const why = tr.to === "open" ? "probe failed" : `${tr.missed} transitions between polls`;
      text = `<span class="st-${esc(tr.from)}">${esc(stateLabel(tr.from))}</span> → ${via} → ${to} <span class="muted">(${why})</span>`;
    } else if (tr.from === "open" && tr.to === "closed" && tr.missed === 1) {
      text = `<span class="st-open">open</span> → half-open → ${to} <span class="muted">(probe passed)</span>`;
    } else {
      const missed = tr.missed ? ` <span class="muted">(+${tr.missed} between polls)</span>` : "";
      text = `<span class="st-${esc(tr.from)}">${esc(stateLabel(tr.from))}</span> → ${to}${missed}`;
    }
    const times = count > 1 ? ` <span class="muted">×${count}</span>` : "";
    return `<li data-to="${esc(tr.to)}">${esc(clock(tr.t_ms))} ${text}${times}</li>`;
  }).join("");
  setHTML(role(el, "transitions"), items);
}

// The window grows with what the page has seen, one minute at a time, up to five minutes.
function timelineWindow(timeline, now) {
  const seen = timeline.length ? now - timeline[0].t_ms : 0;
  return Math.min(TIMELINE_WINDOW_MS, Math.max(60000, Math.ceil(seen / 60000) * 60000));
}

function drawTimeline(svg, timeline, now) {
  const W = 300, H = 16;
  const span = timelineWindow(timeline, now);
  const start = now - span;
  const x = (t) => Math.max(0, Math.min(W, (t - start) / span * W));
  let out = "";
  timeline.forEach((t, i) => {
    const end = i + 1 < timeline.length ? timeline[i + 1].t_ms : now;
    if (end < start) return;
    const x0 = x(t.t_ms), x1 = Math.max(x(end), x0 + 1);
    out += `<rect x="${x0.toFixed(1)}" y="0" width="${(x1 - x0).toFixed(1)}" height="${H}" fill="${STATE_COLORS[t.to] || "#6e7781"}"><title>${esc(clock(t.t_ms))} ${esc(stateLabel(t.to))}</title></rect>`;
    if (t.from && t.t_ms >= start) out += `<line x1="${x0.toFixed(1)}" x2="${x0.toFixed(1)}" y1="0" y2="${H}" stroke="#fff" stroke-width="0.8"/>`;
  });
  setSvg(svg, out);
}

function render(snapshot) {
  const now = snapshot.t_ms || Date.now();
  for (const service of snapshot.services || []) renderService(service, now);
  document.body.dataset.seq = String(snapshot.seq || 0);
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (e) => {
    lastEventAt = Date.now();
    let snapshot;
    try { snapshot = JSON.parse(e.data); } catch (_) { return; }
    if (!snapshot.seq) { setFeed("connecting", "waiting for the first poll…"); return; }
    render(snapshot);
    setFeed("live", "live · updated " + clock(snapshot.t_ms));
  });
  source.onerror = () => setFeed("reconnecting", "dashboard server unreachable, reconnecting…");
}

setInterval(() => {
  if (lastEventAt && Date.now() - lastEventAt > 5000 && document.getElementById("feed").dataset.feedState === "live") {
    setFeed("stale", "no update for " + duration(Date.now() - lastEventAt));
  }
}, 1000);

connect();
