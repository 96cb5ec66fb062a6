// edgewatch live page: plain JS, inline SVG, server-sent events. No build step, no CDN.
// The server sends only the picked stream, at most ~10 frames a second; we redraw at most
// once per animation frame and only when something changed.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
const OK = "#2e9e44", OVER = "#d62728";
const $ = (id) => document.getElementById(id);

const state = {
  meta: null, stream: null, source: null, streams: [], connected: false,
  span: 60, log: false, dirty: false, threshold: null,
  t: [], q: [], v: [], w: { t: [], q: [], s: [], o: [], a: [] }, episodes: [],
  frames: 0, lastFrame: 0,
};
window.edgewatch = state; // for the curious (and for the browser test)

function wanted() {
  return new URLSearchParams(location.search).get("stream");
}

function connect(stream) {
  if (state.source) state.source.close();
  resetData();
  const url = "/events" + (stream ? "?stream=" + encodeURIComponent(stream) : "");
  const es = new EventSource(url);
  state.source = es;
  es.addEventListener("open", () => { state.connected = true; status(); });
  es.addEventListener("error", () => { state.connected = false; status(); });
  es.addEventListener("meta", (e) => {
    state.meta = JSON.parse(e.data);
    state.threshold = state.meta.threshold;
    $("title").textContent = state.meta.title || "edgewatch";
    const m = state.meta.model || {};
    $("model").textContent = m.family ? `model ${m.family} · window ${m.window} · stride ${m.stride} · ` +
      `sensitivity ${m.sensitivity} · sha256 ${m.sha256}` : "";
  });
  es.addEventListener("select", (e) => {
    const s = JSON.parse(e.data).stream;
    if (s !== state.stream) resetData();
    state.stream = s;
    picker();
  });
  es.addEventListener("streams", (e) => { state.streams = JSON.parse(e.data).streams; picker(); status(); });
  es.addEventListener("frame", (e) => { addFrame(JSON.parse(e.data)); });
}

function resetData() {
  state.t = []; state.q = []; state.v = []; state.w = { t: [], q: [], s: [], o: [], a: [] }; state.episodes = [];
  schedule();
}

function addFrame(f) {
  if (f.stream !== state.stream) return;
  state.threshold = f.threshold;
  push(state.t, f.t); push(state.q, f.q);
  f.v.forEach((col, i) => { if (!state.v[i]) state.v[i] = []; push(state.v[i], col); });
  for (const k of ["t", "q", "s", "o", "a"]) push(state.w[k], f.w[k]);
  if (f.episodes) state.episodes = f.episodes;
  trim();
  state.frames++; state.lastFrame = performance.now();
  schedule();
}

function schedule() {
  // one redraw per animation frame at most, however many frames arrived
  if (state.dirty) return;
  state.dirty = true;
  requestAnimationFrame(render);
}

function push(a, b) { for (let i = 0; i < b.length; i++) a.push(b[i]); }

function trim() {
  // keep what the longest span can show, plus a little
  const latest = Math.max(last(state.t, -Infinity), last(state.w.t, -Infinity));
  const keepFrom = latest - 130;
  let i = 0; while (i < state.t.length && state.t[i] < keepFrom) i++;
  if (i > 0) { state.t.splice(0, i); state.q.splice(0, i); state.v.forEach((c) => c.splice(0, i)); }
  let j = 0; while (j < state.w.t.length && state.w.t[j] < keepFrom) j++;
  if (j > 0) for (const k of ["t", "q", "s", "o", "a"]) state.w[k].splice(0, j);
}

function last(a, dflt) { return a.length ? a[a.length - 1] : dflt; }

function picker() {
  const sel = $("stream");
  const filter = $("filter");
  filter.hidden = state.streams.length <= 8;
  const needle = filter.hidden ? "" : filter.value.trim().toLowerCase();
  const names = state.streams.filter((s) => !needle || s.name.toLowerCase().includes(needle) || s.name === state.stream);
  const html = names.map((s) => {
    const mark = s.alert ? " ● alert" : "";
    const sel = s.name === state.stream ? " selected" : "";
    return `<option value="${esc(s.name)}"${sel} data-alert="${s.alert ? 1 : 0}">${esc(s.name)}${mark}</option>`;
  }).join("");
  if (sel.dataset.html !== html) { sel.innerHTML = html; sel.dataset.html = html; }
}

function status() {
  const el = $("status");
  const cur = state.streams.find((s) => s.name === state.stream);
  const alerting = state.streams.filter((s) => s.alert).length;
  if (!state.connected) { el.className = "status offline"; el.textContent = "disconnected, retrying…"; return; }
  el.className = "status " + (cur && cur.alert ? "alert" : "live");
  el.textContent = `live · ${state.streams.length} stream(s)` + (alerting ? ` · ${alerting} alerting` : "") +
    (cur ? ` · ${cur.messages} msgs` : "");
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function size(svg) {
  const r = svg.getBoundingClientRect();
  const w = Math.max(200, Math.round(r.width)), h = Math.max(80, Math.round(r.height));
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  return { w, h, l: 46, r: 10, t: 8, b: 20 };
}

function clock(ts) {
  if (ts < 1e8) return ts.toFixed(1) + " s";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

function fmt(y) {
  const a = Math.abs(y);
  if (a === 0) return "0";
  if (a >= 100 || a < 0.01) return y.toExponential(1);
  return y.toFixed(a >= 10 ? 1 : a >= 1 ? 2 : 3);
}

function xAxis(g, x0, x1, X, h, b) {
  let out = "";
  const step = niceStep((x1 - x0) / 6);
  for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) {
    const px = X(t);
    out += `<line class="grid" x1="${px}" x2="${px}" y1="${g.t}" y2="${h - b}"/>`;
    out += `<text x="${px}" y="${h - 5}" text-anchor="middle">${clock(t)}</text>`;
  }
  return out;
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function episodesSvg(x0, x1, X, top, bottom) {
  let out = "";
  for (const e of state.episodes) {
    const s = e.start, en = e.end == null ? x1 : e.end;
    if (en < x0 || s > x1) continue;
    const a = X(Math.max(s, x0)), b = X(Math.min(en, x1));
    out += `<rect class="episode" x="${a}" y="${top}" width="${Math.max(2, b - a)}" height="${bottom - top}"` +
      ` data-start="${s}" data-end="${e.end == null ? "" : e.end}"/>`;
  }
  return out;
}

function render() {
  state.dirty = false;
  const latest = Math.max(last(state.t, -Infinity), last(state.w.t, -Infinity));
  if (!isFinite(latest)) { empty($("signals")); empty($("scores")); return; }
  const x1 = latest, x0 = latest - state.span;
  renderSignals(x0, x1);
  renderScores(x0, x1);
  renderEpisodes();
  const info = $("scoreinfo");
  const a = last(state.w.a, null), s = last(state.w.s, null);
  info.textContent = `1 = score ${fmt(state.threshold)}` +
    (a == null ? "" : ` · last anomaly_score ${fmt(a)} (score ${fmt(s)})`);
}

function empty(svg) {
  const g = size(svg);
  svg.innerHTML = `<text class="empty" x="${g.w / 2}" y="${g.h / 2}" text-anchor="middle">waiting for data…</text>`;
}

// Each feature in its own lane, scaled so that its training range (from the model card) fills the same
// band: a value outside the shaded band is outside anything the model was trained on.
function renderSignals(x0, x1) {
  const svg = $("signals");
  const n = Math.max(1, state.v.length || ((state.meta && state.meta.features) || []).length);
  svg.style.height = Math.max(240, 12 + 46 * n) + "px";
  const g = size(svg);
  const { w, h } = g;
  const X = (t) => (g.l + (t - x0) / (x1 - x0) * (w - g.l - g.r)).toFixed(1);
  let i0 = 0; while (i0 < state.t.length && state.t[i0] < x0) i0++;
  const ranges = (state.meta && state.meta.ranges) || [];
  const names = (state.meta && state.meta.features) || [];
  const laneH = (h - g.b - g.t) / n;
  let out = episodesSvg(x0, x1, X, g.t, h - g.b) + xAxis(g, x0, x1, X, h, g.b);
  for (let k = 0; k < n; k++) {
    const col = state.v[k] || [];
    const r = ranges[k];
    let lo = r ? r[0] : Infinity, hi = r ? r[1] : -Infinity;
    for (let i = i0; i < col.length; i++) { if (col[i] < lo) lo = col[i]; if (col[i] > hi) hi = col[i]; }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.05 || 0.5;
    lo -= pad; hi += pad;
    const top = g.t + k * laneH, bottom = top + laneH - 4;
    const Y = (y) => (bottom - (y - lo) / (hi - lo) * (bottom - top)).toFixed(1);
    out += `<g class="lane" data-feature="${k}" data-lo="${lo}" data-hi="${hi}">`;
    if (r) out += `<rect class="range" x="${g.l}" y="${Y(r[1])}" width="${w - g.l - g.r}"` +
      ` height="${Math.max(0.5, Y(r[0]) - Y(r[1])).toFixed(1)}" data-low="${r[0]}" data-high="${r[1]}"/>`;
    out += `<line class="grid" x1="${g.l}" x2="${w - g.r}" y1="${bottom.toFixed(1)}" y2="${bottom.toFixed(1)}"/>`;
    const tick = r ? [r[0], r[1]] : [lo + pad, hi - pad];
    for (const y of tick) out += `<text x="${g.l - 4}" y="${Y(y)}" dy="4" text-anchor="end">${fmt(y)}</text>`;
    const color = COLORS[k % COLORS.length];
    const v = col.length ? col[col.length - 1] : null;
    out += `<text class="lane-name" x="${g.l + 6}" y="${(top + 11).toFixed(1)}" style="fill:${color}">` +
      `${esc(names[k] || "f" + k)}${v == null ? "" : " " + fmt(v)}</text>`;
    let pts = "";
    for (let i = i0; i < col.length; i++) pts += X(state.t[i]) + "," + Y(col[i]) + " ";
    out += `<polyline class="signal" data-feature="${k}" stroke="${color}" points="${pts}"/></g>`;
  }
  svg.innerHTML = out;
}

// "log" is a symmetric log, sign(y) * log10(1 + |y|): close to linear between normal data (0) and the
// threshold (1), logarithmic far above, so a fault a thousand times over does not flatten the rest.
function symlog(y) { return Math.sign(y) * Math.log10(1 + Math.abs(y)); }

function renderScores(x0, x1) {
  const svg = $("scores");
  const g = size(svg);
  const { w, h } = g;
  const X = (t) => g.l + (t - x0) / (x1 - x0) * (w - g.l - g.r);
  const wt = state.w.t, wa = state.w.a, wo = state.w.o;
  let i0 = 0; while (i0 < wt.length && wt[i0] < x0) i0++;
  const f = state.log ? symlog : (y) => y;
  let lo = 0, hi = 1.5;
  for (let i = i0; i < wa.length; i++) {
    if (wa[i] == null) continue;
    if (wa[i] > hi) hi = wa[i];
    if (wa[i] < lo) lo = wa[i];
  }
  const f0 = f(lo), f1 = f(hi) + (f(hi) - f0) * 0.05;
  const bottom = h - g.b;
  const Y = (y) => bottom - (f(y) - f0) / (f1 - f0 || 1) * (bottom - g.t);
  let out = episodesSvg(x0, x1, X, g.t, bottom);
  const ticks = [0, 1];
  if (hi > 2) ticks.push(state.log ? Math.pow(10, Math.floor(Math.log10(hi))) : hi);
  if (lo < -0.5) ticks.push(lo);
  for (const y of ticks) out += `<line class="grid" x1="${g.l}" x2="${w - g.r}" y1="${Y(y)}" y2="${Y(y)}"/>` +
    `<text x="${g.l - 4}" y="${Y(y)}" dy="4" text-anchor="end">${fmt(y)}</text>`;
  out += xAxis(g, x0, x1, X, h, g.b);
  // bar width: the typical gap between scored windows, so bars touch at most
  let gap = wt.length > 1 ? (wt[wt.length - 1] - wt[Math.max(i0, 0)]) / Math.max(1, wt.length - 1 - i0) : 1;
  const bw = Math.max(1, Math.min(24, 0.8 * gap / (x1 - x0) * (w - g.l - g.r)));
  const base = Y(0);
  for (let i = i0; i < wt.length; i++) {
    const a = wa[i] == null ? 0 : wa[i];
    const x = X(wt[i]) - bw / 2, y = Y(a);
    const over = wo[i] === 1;
    out += `<rect class="bar ${over ? "over" : "ok"}" x="${x.toFixed(1)}" y="${Math.min(y, base).toFixed(1)}"` +
      ` width="${bw.toFixed(1)}" height="${Math.max(0.5, Math.abs(base - y)).toFixed(1)}" fill="${over ? OVER : OK}"` +
      ` data-ts="${wt[i]}" data-seq="${state.w.q[i]}" data-anomaly="${wa[i]}" data-score="${state.w.s[i]}"` +
      ` data-over="${over ? 1 : 0}"/>`;
  }
  out += `<line class="threshold" x1="${g.l}" x2="${w - g.r}" y1="${Y(1)}" y2="${Y(1)}" data-threshold="1"` +
    ` data-score="${state.threshold}"/>`;
  svg.innerHTML = out;
}

function featuresText(list) {
  return (list || []).map((f) => `${f.feature} ${f.share == null ? "" : Math.round(100 * f.share) + "%"}`).join(" · ");
}

function renderEpisodes() {
  const rows = state.episodes.slice().reverse().map((e) => {
    const open = e.end == null;
    const dur = open ? "" : (e.end - e.start).toFixed(1) + " s";
    return `<tr><td>${clock(e.start)}</td><td class="${open ? "open" : ""}">${open ? "ongoing" : clock(e.end)}</td>` +
      `<td>${dur}</td><td>${e.anomaly == null ? "" : fmt(e.anomaly)}</td>` +
      `<td class="features">${esc(featuresText(e.features))}</td></tr>`;
  }).join("");
  const body = document.querySelector("#episodes tbody");
  const html = rows || `<tr><td colspan="5">none in the kept history</td></tr>`;
  if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
}

$("stream").addEventListener("change", (e) => {
  const s = e.target.value;
  const u = new URL(location.href); u.searchParams.set("stream", s); history.replaceState(null, "", u);
  state.stream = s;
  connect(s);
});
$("filter").addEventListener("input", picker);
$("span").addEventListener("change", (e) => { state.span = +e.target.value; schedule(); });
$("logscale").addEventListener("change", (e) => { state.log = e.target.checked; schedule(); });
if (new URLSearchParams(location.search).get("log") === "1") { state.log = $("logscale").checked = true; }
window.addEventListener("resize", schedule);
state.span = +$("span").value;
state.stream = wanted();
connect(state.stream);
