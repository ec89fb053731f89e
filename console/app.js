// logtail console: one module, no framework, no build step.
//
// Safety rule: log lines are attacker-controlled. Every value reaches the page through `el()`
// (text nodes and textContent) or a canvas; nothing here assigns innerHTML or builds markup from
// data. The server's Content-Security-Policy forbids inline scripts and styles as a second wall.
//
// Views are paths (/, /tail, /status, /agents); a search's query and range live in the URL's
// query string (?q=&range=1h, or &from=&to= for an absolute range).

const API = "/api/v1";
const SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const PAGE = 100; // records per search request
const EXPORT_LIMIT = 10000; // records in one export
const TAIL_ROWS = 2000; // rows the live tail keeps
const TAIL_RENDER_PER_TICK = 50; // rows the live tail adds per 250 ms at most
const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };

const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes, never markup. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// The API, with the bearer token asked for once when the gateway wants one.

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.message)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

let token = localStorage.getItem("logtail-token") || "";
let tokenAsked = null;

function askToken() {
  if (!tokenAsked) {
    tokenAsked = new Promise((resolve) => {
      const dialog = $("token-dialog");
      const form = $("token-form");
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        token = $("token-input").value.trim();
        localStorage.setItem("logtail-token", token);
        dialog.close();
        tokenAsked = null;
        resolve();
      }, { once: true });
      dialog.showModal();
      $("token-input").focus();
    });
  }
  return tokenAsked;
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

/** fetch + JSON, asking for the token on 401; throws ApiError with the JSON error body. */
async function api(path, options = {}) {
  for (;;) {
    const response = await fetch(path, { ...options, headers: headers(options.headers) });
    if (response.status === 401) {
      await askToken();
      continue;
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { body = { error: text }; }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
}

function query(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  return p.toString();
}

// ---------------------------------------------------------------------------------------------
// Records: times, fields, severity.

/** Microseconds since the epoch of an RFC 3339 time (Date keeps only milliseconds). */
function micros(text) {
  if (typeof text === "number") return text;
  if (!text) return null;
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$/.exec(text);
  if (!m) return null;
  const ms = Date.parse(m[1] + (m[3] || "Z"));
  if (Number.isNaN(ms)) return null;
  return ms * 1000 + Number(((m[2] || "") + "000000").slice(0, 6));
}

/** RFC 3339 in UTC with microseconds. */
function iso(us) {
  const ms = Math.floor(us / 1000);
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = String(((us % 1e6) + 1e6) % 1e6).padStart(6, "0");
  return `${base}.${frac}Z`;
}

function recordTime(r) { return r.timestamp || r.received_at || ""; }

/** The time as people read it: local, with milliseconds. */
function showTime(text) {
  const us = micros(text);
  if (us === null) return text || "";
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function severityName(s) {
  if (typeof s === "number" && s >= 0 && s < 8) return SEVERITIES[s];
  if (typeof s === "string" && /^[0-7]$/.test(s)) return SEVERITIES[Number(s)];
  return s === undefined || s === null ? "" : String(s);
}

function severityClass(s) {
  const n = typeof s === "number" ? s : SEVERITIES.indexOf(severityName(s));
  return n >= 0 ? `sev sev-${n}` : "sev";
}

/** Every field of a record as [name, text] pairs; structured data as sd.ID.PARAM. */
function flatten(record) {
  const out = [];
  for (const [k, v] of Object.entries(record)) {
    if (k === "structured_data" && v && typeof v === "object") {
      for (const [id, params] of Object.entries(v)) {
        for (const [p, pv] of Object.entries(params || {})) out.push([`sd.${id}.${p}`, Array.isArray(pv) ? pv.join(", ") : String(pv)]);
      }
    } else if (k === "severity") {
      out.push([k, `${severityName(v)} (${v})`]);
    } else {
      out.push([k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
    }
  }
  return out;
}

function recordRow(r) {
  return el("tr", { class: "record" },
    el("td", { class: "time", title: recordTime(r) }, showTime(recordTime(r))),
    el("td", { class: "host", title: r.host }, r.host ?? ""),
    el("td", { class: "app", title: r.app }, r.app ?? ""),
    el("td", { class: severityClass(r.severity) }, severityName(r.severity)),
    el("td", { class: "message" }, r.message ?? ""));
}

/** A value as a query term: quoted when it has spaces, quotes or operators. */
function term(field, value) {
  const v = String(value);
  const plain = /^[^\s"()\\:]+$/.test(v) && !/^(AND|OR|NOT)$/.test(v);
  return `${field}:${plain ? v : `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`}`;
}

// ---------------------------------------------------------------------------------------------
// Views.

const views = {};
let current = null;

function viewOf(path) {
  return { "/tail": "tail", "/status": "status", "/agents": "agents" }[path] || "search";
}

function show(name) {
  if (current && current !== name && views[current].leave) views[current].leave();
  for (const v of Object.keys(views)) $(`view-${v}`).hidden = v !== name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === name);
  const changed = current !== name;
  current = name;
  if (views[name].enter) views[name].enter(changed);
}

function navigate(path) {
  if (location.pathname + location.search !== path) history.pushState(null, "", path);
  show(viewOf(location.pathname));
}

// ----- Search --------------------------------------------------------------------------------

const search = {
  records: [], // what the results table shows, newest first
  next: null, // the API's cursor of the next page
  range: null, // {fromUs, toUs} of the search on screen
  generation: 0, // a newer search makes older answers moot
};

/** The range the form asks for, in microseconds. */
function formRange() {
  const r = $("range").value;
  if (r === "abs") {
    const from = Date.parse($("from").value);
    const to = $("to").value ? Date.parse($("to").value) : Date.now();
    return { fromUs: Number.isNaN(from) ? null : from * 1000, toUs: Number.isNaN(to) ? Date.now() * 1000 : to * 1000 };
  }
  const now = Date.now();
  return { fromUs: (now - RANGES[r]) * 1000, toUs: now * 1000 };
}

function localInput(us) {
  const d = new Date(us / 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function setAbsolute(fromUs, toUs) {
  $("range").value = "abs";
  $("absolute").hidden = false;
  $("from").value = localInput(fromUs);
  $("to").value = localInput(toUs);
}

/** The form from the URL: what a bookmark or a shared link opens. */
function searchFromUrl() {
  const p = new URLSearchParams(location.search);
  $("q").value = p.get("q") || "";
  const from = micros(p.get("from"));
  if (from !== null) {
    setAbsolute(from, micros(p.get("to")) ?? Date.now() * 1000);
  } else {
    $("range").value = RANGES[p.get("range")] ? p.get("range") : "1h";
    $("absolute").hidden = true;
  }
}

function searchUrl() {
  const params = { q: $("q").value.trim() };
  if ($("range").value === "abs") {
    const { fromUs, toUs } = formRange();
    if (fromUs !== null) params.from = iso(fromUs);
    params.to = iso(toUs);
  } else {
    params.range = $("range").value;
  }
  const qs = query(params);
  return qs ? `/?${qs}` : "/";
}

function showQueryError(e, input, where, box, message) {
  const text = e.body.error || e.message;
  const col = e.body.column ?? e.body.position ?? (/column (\d+)/.exec(text) || [])[1];
  $(message).textContent = text;
  const q = $(input).value;
  if (col !== undefined && col !== null && where) {
    const c = Math.max(1, Math.min(Number(col), q.length + 1));
    $(where).textContent = `${q}\n${" ".repeat(c - 1)}^`;
    $(input).setSelectionRange(c - 1, c);
  } else if (where) {
    $(where).textContent = "";
  }
  $(input).classList.add("invalid");
  $(box).hidden = false;
}

function clearQueryError() {
  $("query-error").hidden = true;
  $("q").classList.remove("invalid");
}

async function runSearch({ push = true } = {}) {
  const url = searchUrl();
  if (push && location.pathname + location.search !== url) history.pushState(null, "", url);
  const generation = ++search.generation;
  const q = $("q").value.trim();
  const range = formRange();
  search.range = range;
  search.records = [];
  search.next = null;
  $("results").tBodies[0].replaceChildren();
  $("results-empty").hidden = true;
  $("load-more").hidden = true;
  $("results-summary").textContent = "searching…";
  clearQueryError();
  const span = { from: range.fromUs === null ? undefined : iso(range.fromUs), to: iso(range.toUs) };
  const fresh = () => generation === search.generation;

  const results = loadPage(q, span, fresh).catch((e) => fail(e, fresh));
  const histogram = api(`${API}/histogram?${query({ q, ...span, buckets: 60 })}`)
    .then((h) => fresh() && drawHistogram(h)).catch((e) => fresh() && histogramError(e));
  const facets = ["host", "app", "severity"].map((field) =>
    api(`${API}/fields?${query({ q, ...span, field })}`)
      .then((f) => fresh() && drawFacet(field, f)).catch(() => fresh() && drawFacet(field, null)));
  await Promise.all([results, histogram, ...facets]);
}

function fail(e, fresh) {
  if (!fresh()) return;
  $("results-summary").textContent = "";
  if (e instanceof ApiError && e.status === 400) {
    showQueryError(e, "q", "query-error-where", "query-error", "query-error-message");
  } else {
    $("query-error-where").textContent = "";
    $("query-error-message").textContent = e.message;
    $("query-error").hidden = false;
  }
}

/** One page of results, newest first; the next page starts at the API's cursor. */
async function loadPage(q, span, fresh) {
  const body = await api(`${API}/search?${query({ q, ...span, limit: PAGE, order: "newest", cursor: search.next })}`);
  if (!fresh()) return;
  const records = body.records || [];
  const tbody = $("results").tBodies[0];
  for (const r of records) {
    search.records.push(r);
    const row = recordRow(r);
    row.addEventListener("click", () => toggleDetail(row, r));
    tbody.append(row);
  }
  search.next = body.next || null;
  $("load-more").hidden = !search.next;
  $("results-empty").hidden = search.records.length > 0;
  const took = body.took_ms !== undefined ? ` in ${body.took_ms} ms` : "";
  const blocks = body.scanned_blocks !== undefined ? ` (${body.scanned_blocks} blocks read, ${body.skipped_blocks ?? 0} skipped)` : "";
  $("results-summary").textContent = `${search.records.length} shown${search.next ? ", more available" : ""}${took}${blocks}`;
}

function toggleDetail(row, record) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("detail")) {
    next.remove();
    row.classList.remove("open");
    return;
  }
  row.classList.add("open");
  const fields = el("dl", { class: "fields" });
  for (const [k, v] of flatten(record)) fields.append(el("dt", {}, k), el("dd", {}, v));
  const context = el("div", { class: "context" });
  const button = el("button", { type: "button", class: "show-context" }, "Show context");
  button.addEventListener("click", (ev) => { ev.stopPropagation(); showContext(record, context, button); });
  const cell = el("td", { colspan: 5 }, fields, el("pre", { class: "raw" }, JSON.stringify(record, null, 2)), button, context);
  const detail = el("tr", { class: "detail" }, cell);
  row.after(detail);
}

/** The same host's lines around a hit: 20 before it and 20 after, in time order. */
async function showContext(record, box, button) {
  const at = micros(recordTime(record));
  if (at === null) return;
  button.disabled = true;
  const q = record.host !== undefined ? term("host", record.host) : "";
  try {
    const [before, after] = await Promise.all([
      api(`${API}/search?${query({ q, to: iso(at + 1), limit: 21, order: "newest" })}`),
      api(`${API}/search?${query({ q, from: iso(at + 1), limit: 20, order: "oldest" })}`),
    ]);
    const rows = [...(before.records || []).reverse(), ...(after.records || [])];
    const hit = JSON.stringify(record);
    const tbody = el("tbody");
    for (const r of rows) {
      const row = recordRow(r);
      if (JSON.stringify(r) === hit) row.classList.add("hit");
      tbody.append(row);
    }
    box.replaceChildren(el("h3", {}, `Context: ${q || "all hosts"}`), el("table", { class: "records" }, tbody));
  } catch (e) {
    box.replaceChildren(el("div", { class: "query-error" }, e.message));
  } finally {
    button.disabled = false;
  }
}

// The histogram: bars on a canvas; hover shows a bucket, a click zooms into it, a drag into
// the dragged span.
const histo = { buckets: [], widthUs: 0, drag: null };

function bucketsOf(h) {
  // Accept [{start, count}], [[start, count]], or {counts, from, width}: the API's shape.
  const width = h.width_us ?? (h.width_ms !== undefined ? h.width_ms * 1000 : undefined) ?? (h.width_s !== undefined ? h.width_s * 1e6 : 0);
  const list = (h.buckets || []).map((b) => Array.isArray(b) ? { start: micros(b[0]), count: b[1] } : { start: micros(b.start ?? b.start_us ?? b.time ?? b.from), count: b.count });
  return { width, list };
}

function drawHistogram(h) {
  const { width, list } = bucketsOf(h);
  histo.buckets = list;
  histo.widthUs = width || (list.length > 1 ? list[1].start - list[0].start : 0);
  const total = h.total ?? list.reduce((s, b) => s + b.count, 0);
  $("histogram-total").textContent = `${total} ${total === 1 ? "match" : "matches"}`;
  $("histogram-total").dataset.count = String(total);
  paintHistogram();
}

function histogramError(e) {
  histo.buckets = [];
  $("histogram-total").textContent = e.status === 400 ? "" : `histogram: ${e.message}`;
  paintHistogram();
}

function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = Number(canvas.getAttribute("height"));
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, w, h };
}

/** Bars of `values` on `canvas`; with `slots`, that many bar places, the values at the right. */
function paintBars(canvas, values, { color = "#4a7bd8", selection = null, slots = 0 } = {}) {
  const { ctx, w, h } = fitCanvas(canvas);
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...values);
  const places = Math.max(1, slots, values.length);
  const offset = places - values.length;
  const bw = w / places;
  ctx.fillStyle = color;
  values.forEach((v, i) => {
    const bh = v === 0 ? 0 : Math.max(2, (v / max) * (h - 14));
    ctx.fillRect((offset + i) * bw + 0.5, h - bh, Math.max(1, bw - 1), bh);
  });
  ctx.fillStyle = "#6b7078";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(formatValue("", max), 2, 10);
  if (selection) {
    ctx.fillStyle = "rgba(36, 88, 198, 0.18)";
    ctx.fillRect(Math.min(selection[0], selection[1]), 0, Math.abs(selection[1] - selection[0]), h);
  }
}

function paintHistogram() {
  paintBars($("histogram"), histo.buckets.map((b) => b.count), { selection: histo.drag && histo.drag.moved ? [histo.drag.x0, histo.drag.x1] : null });
}

function bucketAt(x) {
  const n = histo.buckets.length;
  if (!n) return null;
  const i = Math.min(n - 1, Math.max(0, Math.floor((x / $("histogram").clientWidth) * n)));
  return i;
}

function zoomTo(fromUs, toUs) {
  if (!(toUs > fromUs)) return;
  setAbsolute(fromUs, toUs);
  runSearch();
}

function setupHistogram() {
  const canvas = $("histogram");
  const x = (ev) => ev.clientX - canvas.getBoundingClientRect().left;
  canvas.addEventListener("mousedown", (ev) => { histo.drag = { x0: x(ev), x1: x(ev), moved: false }; });
  canvas.addEventListener("mousemove", (ev) => {
    const i = bucketAt(x(ev));
    if (i !== null) {
      const b = histo.buckets[i];
      $("histogram-hover").textContent = `${showTime(iso(b.start))}: ${b.count}`;
    }
    if (histo.drag) {
      histo.drag.x1 = x(ev);
      histo.drag.moved ||= Math.abs(histo.drag.x1 - histo.drag.x0) > 4;
      paintHistogram();
    }
  });
  canvas.addEventListener("mouseleave", () => { $("histogram-hover").textContent = ""; });
  window.addEventListener("mouseup", () => {
    const drag = histo.drag;
    histo.drag = null;
    if (!drag || !histo.buckets.length) return;
    const a = bucketAt(Math.min(drag.x0, drag.x1));
    const b = bucketAt(Math.max(drag.x0, drag.x1));
    if (a === null) return;
    const width = histo.widthUs || 1;
    zoomTo(histo.buckets[a].start, histo.buckets[drag.moved ? b : a].start + width);
  });
}

function drawFacet(field, body) {
  const ul = document.querySelector(`#facets ul[data-field="${field}"]`);
  ul.replaceChildren();
  if (!body) return;
  const values = body.values || body.top || body.fields || [];
  for (const item of values) {
    const value = Array.isArray(item) ? item[0] : item.value;
    const count = Array.isArray(item) ? item[1] : item.count;
    const label = field === "severity" ? severityName(value) : value;
    const li = el("li", { title: `add ${term(field, label)} to the query` },
      el("span", { class: field === "severity" ? `value ${severityClass(value)}` : "value" }, label),
      el("span", { class: "count" }, count));
    li.addEventListener("click", () => {
      const q = $("q").value.trim();
      $("q").value = q ? `${q} ${term(field, label)}` : term(field, label);
      runSearch();
    });
    ul.append(li);
  }
}

/** Exports the search on screen (up to EXPORT_LIMIT records) as a download. */
async function exportResults(format) {
  const q = $("q").value.trim();
  const r = search.range || formRange();
  const body = await api(`${API}/search?${query({ q, from: r.fromUs === null ? undefined : iso(r.fromUs), to: iso(r.toUs), limit: EXPORT_LIMIT, order: "newest" })}`);
  const records = body.records || [];
  let text;
  if (format === "csv") {
    const cols = ["time", "host", "app", "severity", "facility", "procid", "msgid", "message", "source"];
    const cell = (v) => {
      const s = v === undefined || v === null ? "" : String(v);
      // A leading = + - @ would be a formula in a spreadsheet: quote it as text.
      const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
      return /[",\n\r]/.test(safe) || safe !== s ? `"${safe.replace(/"/g, '""')}"` : safe;
    };
    text = [cols.join(","), ...records.map((rec) => cols.map((c) => cell(c === "time" ? recordTime(rec) : c === "severity" ? severityName(rec.severity) : rec[c])).join(","))].join("\r\n") + "\r\n";
  } else {
    text = records.map((rec) => JSON.stringify(rec)).join("\n") + (records.length ? "\n" : "");
  }
  const blob = new Blob([text], { type: format === "csv" ? "text/csv" : "application/x-ndjson" });
  const a = el("a", { href: URL.createObjectURL(blob), download: `logtail-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.${format === "csv" ? "csv" : "jsonl"}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

views.search = {
  enter(changed) {
    searchFromUrl();
    if (changed || !search.range) runSearch({ push: false });
  },
};

function setupSearch() {
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); runSearch(); });
  $("range").addEventListener("change", () => {
    const abs = $("range").value === "abs";
    $("absolute").hidden = !abs;
    if (abs) {
      const r = search.range || formRange();
      setAbsolute(r.fromUs ?? r.toUs - 3600e6, r.toUs);
    } else {
      runSearch();
    }
  });
  $("q").addEventListener("input", () => $("q").classList.remove("invalid"));
  $("load-more").addEventListener("click", () => {
    const r = search.range;
    const gen = search.generation;
    loadPage($("q").value.trim(), { from: r.fromUs === null ? undefined : iso(r.fromUs), to: iso(r.toUs) }, () => gen === search.generation)
      .catch((e) => fail(e, () => gen === search.generation));
  });
  $("help-button").addEventListener("click", () => {
    const help = $("help");
    help.hidden = !help.hidden;
    $("help-button").setAttribute("aria-expanded", String(!help.hidden));
  });
  document.addEventListener("click", (ev) => {
    if (!$("help").hidden && !ev.target.closest(".qwrap")) $("help").hidden = true;
  });
  $("export-jsonl").addEventListener("click", () => exportResults("jsonl").catch((e) => fail(e, () => true)));
  $("export-csv").addEventListener("click", () => exportResults("csv").catch((e) => fail(e, () => true)));
  setupHistogram();
  window.addEventListener("resize", () => { paintHistogram(); });
}

// ----- Live tail -----------------------------------------------------------------------------

const tail = {
  abort: null,
  paused: false,
  pending: [], // received, not yet shown: a reservoir sample of at most TAIL_RENDER_PER_TICK
  seenThisTick: 0,
  hiddenWhilePaused: 0,
  arrivals: [], // [second, count] of the last 5 seconds
  dropped: 0,
  timer: null,
};

/** Reads Server-Sent Events from a fetch (which, unlike EventSource, can send the token). */
async function readEvents(url, signal, onOpen, onEvent) {
  for (;;) {
    const response = await fetch(url, { headers: headers({ Accept: "text/event-stream" }), signal });
    if (response.status === 401) { await askToken(); continue; }
    if (!response.ok) {
      let body = {};
      try { body = await response.json(); } catch { /* not JSON */ }
      throw new ApiError(response.status, body);
    }
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(buffer.slice(end).match(/^\r?\n\r?\n/)[0].length + end);
        let event = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(event, data.join("\n"));
      }
    }
  }
}

function tailArrived(record) {
  const second = Math.floor(Date.now() / 1000);
  const last = tail.arrivals[tail.arrivals.length - 1];
  if (last && last[0] === second) last[1]++;
  else tail.arrivals.push([second, 1]);
  if (tail.paused) { tail.hiddenWhilePaused++; return; }
  tail.seenThisTick++;
  // Reservoir sampling keeps a fair sample of the tick's lines in bounded memory.
  if (tail.pending.length < TAIL_RENDER_PER_TICK) tail.pending.push(record);
  else {
    const j = Math.floor(Math.random() * tail.seenThisTick);
    if (j < TAIL_RENDER_PER_TICK) tail.pending[j] = record;
  }
}

function tailTick() {
  const now = Math.floor(Date.now() / 1000);
  tail.arrivals = tail.arrivals.filter(([s]) => s > now - 6);
  const lastFive = tail.arrivals.filter(([s]) => s < now && s >= now - 5).reduce((n, [, c]) => n + c, 0);
  $("tail-rate").textContent = `${Math.round(lastFive / 5)} lines/s`;
  const notices = [];
  if (tail.seenThisTick > tail.pending.length) {
    notices.push(`High rate: showing a sample, ${tail.pending.length} of the last ${tail.seenThisTick} lines.`);
  }
  if (tail.dropped) notices.push(`The gateway skipped ${tail.dropped} lines for this page (it could not keep up).`);
  if (notices.length) { $("tail-notice").textContent = notices.join(" "); $("tail-notice").hidden = false; }
  else if (tail.seenThisTick) $("tail-notice").hidden = true;
  if (tail.paused) $("tail-state").textContent = `paused: ${tail.hiddenWhilePaused} lines not shown`;
  if (!tail.pending.length) return;
  const tbody = $("tail-rows").tBodies[0];
  const rows = tail.pending.sort((a, b) => (micros(recordTime(a)) ?? 0) - (micros(recordTime(b)) ?? 0)).map(recordRow);
  tbody.prepend(...rows.reverse());
  while (tbody.rows.length > TAIL_ROWS) tbody.deleteRow(-1);
  tail.pending = [];
  tail.seenThisTick = 0;
}

function startTail() {
  stopTail();
  const controller = new AbortController();
  tail.abort = controller;
  tail.dropped = 0;
  $("tail-error").hidden = true;
  $("tail-q").classList.remove("invalid");
  $("tail-state").textContent = tail.paused ? "paused" : "connecting…";
  const q = $("tail-q").value.trim();
  const opened = () => { if (!tail.paused) $("tail-state").textContent = "live"; };
  readEvents(`${API}/tail?${query({ q })}`, controller.signal, opened, (event, data) => {
    if (event === "dropped") {
      try { const d = JSON.parse(data); tail.dropped += Number(d.count ?? d.dropped ?? d) || 0; } catch { tail.dropped += Number(data) || 0; }
      return;
    }
    if (event !== "message" && event !== "record") return;
    try { tailArrived(JSON.parse(data)); } catch { /* not a record: ignored */ }
  }).then(() => {
    if (tail.abort === controller) $("tail-state").textContent = "the gateway closed the stream";
  }).catch((e) => {
    if (controller.signal.aborted) return;
    const box = $("tail-error");
    box.textContent = e.message;
    box.hidden = false;
    if (e.status === 400) $("tail-q").classList.add("invalid");
    $("tail-state").textContent = "";
  });
  tail.timer = setInterval(tailTick, 250);
}

function stopTail() {
  if (tail.abort) tail.abort.abort();
  tail.abort = null;
  clearInterval(tail.timer);
  tail.timer = null;
  tail.pending = [];
  tail.seenThisTick = 0;
}

views.tail = {
  enter(changed) {
    if (changed) {
      const p = new URLSearchParams(location.search);
      if (p.has("q")) $("tail-q").value = p.get("q");
      startTail();
    }
  },
  leave: stopTail,
};

function setupTail() {
  $("tail-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("tail-q").value.trim();
    history.replaceState(null, "", q ? `/tail?${query({ q })}` : "/tail");
    startTail();
  });
  $("tail-pause").addEventListener("click", () => {
    tail.paused = !tail.paused;
    tail.hiddenWhilePaused = 0;
    tail.pending = [];
    tail.seenThisTick = 0;
    $("tail-pause").textContent = tail.paused ? "Resume" : "Pause";
    $("tail-state").textContent = tail.paused ? "paused" : "live";
  });
}

// ----- Status --------------------------------------------------------------------------------

const status = { timer: null, busy: false };

function formatValue(key, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") {
    if (/bytes/.test(key) && v >= 1024) {
      const units = ["KiB", "MiB", "GiB", "TiB"];
      let x = v / 1024, i = 0;
      while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      return `${x.toFixed(1)} ${units[i]}`;
    }
    return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toFixed(2);
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** A value of the status as HTML elements: a list of objects is a table, an object a list of
 * terms, anything else text. The status's shape is the API's; this follows whatever it says. */
function renderValue(key, v) {
  if (Array.isArray(v)) {
    if (!v.length) return el("p", { class: "muted" }, "none");
    if (v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const cols = [...new Set(v.flatMap((x) => Object.keys(x)))];
      const head = el("tr", {}, ...cols.map((c) => el("th", {}, c)));
      const rows = v.map((x) => el("tr", {}, ...cols.map((c) => el("td", { "data-col": c }, formatValue(c, x[c])))));
      return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
    }
    return el("p", {}, v.map((x) => formatValue(key, x)).join(", "));
  }
  if (v && typeof v === "object") {
    const dl = el("dl");
    for (const [k, x] of Object.entries(v)) {
      if (x && typeof x === "object") dl.append(el("dt", {}, k), el("dd", {}, renderValue(k, x)));
      else dl.append(el("dt", {}, k), el("dd", { "data-key": k }, formatValue(k, x)));
    }
    return dl;
  }
  return el("p", {}, formatValue(key, v));
}

function duration(secs) {
  const d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${secs % 60}s` : `${secs}s`;
}

/** A table of `rows` with `cols` ([key, heading, format?]); cells carry data-col=key. */
function table(rows, cols) {
  if (!rows || !rows.length) return el("p", { class: "muted" }, "none");
  const head = el("tr", {}, ...cols.map(([, h]) => el("th", {}, h)));
  const body = rows.map((r) => el("tr", {}, ...cols.map(([k, , f]) => {
    const v = r[k];
    return el("td", { "data-col": k, title: v && typeof v === "object" ? JSON.stringify(v) : null }, f ? f(v, r) : formatValue(k, v));
  })));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function card(id, title, ...content) {
  return el("div", { class: "card", id: `status-${id}` }, el("h3", {}, title), ...content);
}

const sumErrors = (e) => (e && typeof e === "object" ? Object.values(e).reduce((a, b) => a + (Number(b) || 0), 0) : formatValue("", e));

/** The status answer as cards: known sections laid out for people, any other one as it is. */
function renderStatus(body) {
  const known = new Set(["version", "time", "uptime_secs", "listeners", "sink", "store", "agents", "history", "tail_subscribers"]);
  const gateway = el("dl", {},
    el("dt", {}, "version"), el("dd", {}, body.version ?? "–"),
    el("dt", {}, "up for"), el("dd", {}, body.uptime_secs !== undefined ? duration(body.uptime_secs) : "–"),
    el("dt", {}, "live tails"), el("dd", {}, formatValue("", body.tail_subscribers)));
  const cards = [
    card("listeners", "Listeners", table(body.listeners, [
      ["name", "name"], ["transport", "transport"], ["address", "address"],
      ["received_lines", "lines"], ["received_bytes", "bytes"],
      ["lines_per_sec", "lines/s"], ["connections_open", "open conns"], ["connections_total", "conns"],
      ["errors", "errors", sumErrors],
    ])),
  ];
  const halves = el("div", { class: "status-grid" }, card("gateway", "Gateway", gateway));
  if (body.sink) halves.append(card("sink", `Sink: ${body.sink.type ?? ""}`, renderValue("sink", body.sink)));
  if (body.store) halves.append(card("store", "Store", renderValue("store", body.store)));
  for (const [k, v] of Object.entries(body)) if (!known.has(k)) halves.append(card(k, k.replace(/_/g, " "), renderValue(k, v)));
  cards.push(halves);
  cards.push(card("agents", "Connected agents", table(body.agents, [
    ["host", "host"], ["address", "address"], ["listener", "listener"], ["connected", "connected"],
    ["lines_per_sec", "lines/s"], ["lines", "lines"], ["last_seen", "last seen", (v) => showTime(v)],
  ])));
  return cards;
}

async function refreshStatus() {
  if (status.busy) return;
  status.busy = true;
  try {
    const body = await api(`${API}/status`);
    $("status-body").replaceChildren(...renderStatus(body || {}));
    $("status-error").hidden = true;
    $("status-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    const samples = (body.history && body.history.samples) || [];
    $("throughput-note").textContent = samples.length
      ? `received lines/s, every ${body.history.interval_secs} s; now ${formatValue("", samples[samples.length - 1].received_lines_per_sec)}`
      : "(collecting)";
    paintBars($("throughput"), samples.map((x) => x.received_lines_per_sec), { color: "#3c9d5d", slots: 15 * 60 / ((body.history && body.history.interval_secs) || 10) });
  } catch (e) {
    $("status-error").textContent = `status: ${e.message}`;
    $("status-error").hidden = false;
  } finally {
    status.busy = false;
  }
}

views.status = {
  enter(changed) {
    if (!changed) return;
    refreshStatus();
    status.timer = setInterval(refreshStatus, 2000);
  },
  leave() { clearInterval(status.timer); status.timer = null; },
};

// ----- Agents --------------------------------------------------------------------------------

const agents = { host: null, revision: 0 };

async function loadHosts() {
  try {
    const body = await api(`${API}/agents`);
    if (!body.configured) {
      $("agents-note").textContent = "Set [console] etcd in the gateway's configuration to edit the agents' collect entries.";
      $("agent-hosts").replaceChildren();
      return;
    }
    $("agents-note").textContent = `etcd keys ${body.prefix}<host>/config`;
    $("agent-hosts").replaceChildren(...body.hosts.map((h) => {
      const li = el("li", { "data-host": h.host, title: h.error || h.key },
        el("span", { class: "value" }, h.host),
        h.error ? el("span", { class: "bad" }, "invalid") : el("span", { class: "muted" }, `${h.entries} entr${h.entries === 1 ? "y" : "ies"}`));
      li.classList.toggle("active", h.host === agents.host);
      li.addEventListener("click", () => openHost(h.host));
      return li;
    }));
    $("agents-error").hidden = true;
  } catch (e) {
    $("agents-error").textContent = e.message;
    $("agents-error").hidden = false;
  }
}

function entryForm(entry) {
  const node = $("entry-template").content.firstElementChild.cloneNode(true);
  const set = (name, value) => { node.querySelector(`[name="${name}"]`).value = value ?? ""; };
  set("name", entry.name);
  set("paths", (entry.paths || []).join("\n"));
  set("exclude", (entry.exclude || []).join("\n"));
  set("start_at", entry.start_at || "end");
  set("topic", entry.topic);
  set("app", entry.app);
  set("tags", (entry.tags || []).join(", "));
  set("max_line_bytes", entry.max_line_bytes);
  set("multiline.start_pattern", entry.multiline && entry.multiline.start_pattern);
  set("multiline.flush_timeout_ms", entry.multiline && entry.multiline.flush_timeout_ms);
  node.querySelector(".remove").addEventListener("click", () => { node.remove(); numberEntries(); });
  node.addEventListener("input", (ev) => {
    ev.target.classList.remove("invalid");
    const error = ev.target.closest("label").querySelector(".field-error");
    if (error) error.remove();
  });
  return node;
}

function numberEntries() {
  document.querySelectorAll("#agent-entries .entry").forEach((f, i) => {
    f.dataset.entry = String(i);
    f.querySelector(".entry-number").textContent = String(i + 1);
  });
}

/** The form's entries in the agent's JSON form; empty fields are left out (their defaults). */
function formEntries() {
  const lines = (s) => s.split("\n").map((x) => x.trim()).filter(Boolean);
  return [...document.querySelectorAll("#agent-entries .entry")].map((f) => {
    const v = (name) => f.querySelector(`[name="${name}"]`).value;
    const entry = { name: v("name").trim(), paths: lines(v("paths")) };
    if (lines(v("exclude")).length) entry.exclude = lines(v("exclude"));
    if (v("start_at") !== "end") entry.start_at = v("start_at");
    if (v("topic").trim()) entry.topic = v("topic").trim();
    if (v("app").trim()) entry.app = v("app").trim();
    const tags = v("tags").split(",").map((x) => x.trim()).filter(Boolean);
    if (tags.length) entry.tags = tags;
    if (v("max_line_bytes").trim()) entry.max_line_bytes = Number(v("max_line_bytes"));
    if (v("multiline.start_pattern")) {
      entry.multiline = { start_pattern: v("multiline.start_pattern") };
      if (v("multiline.flush_timeout_ms").trim()) entry.multiline.flush_timeout_ms = Number(v("multiline.flush_timeout_ms"));
    }
    return entry;
  });
}

function agentMessage(kind, text) {
  $("agent-message").replaceChildren(el("div", { class: kind }, text));
}

async function openHost(host) {
  agents.host = host;
  for (const li of document.querySelectorAll("#agent-hosts li")) li.classList.toggle("active", li.dataset.host === host);
  $("agent-message").replaceChildren();
  try {
    const body = await api(`${API}/agents/${encodeURIComponent(host)}`);
    agents.revision = body.revision;
    $("agent-title").textContent = host;
    $("agent-revision").textContent = body.revision ? `${body.key}, revision ${body.revision}` : `${body.key} (new)`;
    $("agent-entries").replaceChildren(...(body.collect || []).map(entryForm));
    numberEntries();
    if (body.error) agentMessage("error", `The stored value is refused by the agent: ${body.error}`);
    $("agent-form").hidden = false;
  } catch (e) {
    $("agents-error").textContent = e.message;
    $("agents-error").hidden = false;
  }
}

/** Puts an error next to the field a path like collect[1].paths[0] names. */
function fieldError(path, message) {
  const m = /^collect\[(\d+)\]\.([a-z_]+)(?:\[\d+\])?(?:\.([a-z_]+))?/.exec(path || "");
  if (!m) return false;
  const entry = document.querySelector(`#agent-entries .entry[data-entry="${m[1]}"]`);
  const name = m[2] === "multiline" ? `multiline.${m[3] || "start_pattern"}` : m[2];
  const input = entry && entry.querySelector(`[name="${name}"]`);
  if (!input) return false;
  input.classList.add("invalid");
  const label = input.closest("label");
  label.querySelector(".field-error")?.remove();
  label.append(el("span", { class: "field-error", "data-field": path }, message));
  input.focus();
  return true;
}

async function saveHost() {
  for (const e of document.querySelectorAll("#agent-entries .field-error")) e.remove();
  for (const e of document.querySelectorAll("#agent-entries .invalid")) e.classList.remove("invalid");
  try {
    const body = await api(`${API}/agents/${encodeURIComponent(agents.host)}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json", "X-Logtail-Console": "1" },
      body: JSON.stringify({ revision: agents.revision, collect: formEntries() }),
    });
    agents.revision = body.revision;
    $("agent-revision").textContent = `revision ${body.revision}`;
    agentMessage("ok", `Saved (revision ${body.revision}); the agent picks it up within a second.`);
    loadHosts();
  } catch (e) {
    if (e.status === 400 && e.body.field && fieldError(e.body.field, e.body.message)) {
      agentMessage("error", `Not saved: ${e.body.field}: ${e.body.message}`);
    } else if (e.status === 409) {
      agentMessage("error", `Not saved: ${e.message}`);
      const reload = el("button", { type: "button" }, "Reload");
      reload.addEventListener("click", () => openHost(agents.host));
      $("agent-message").append(reload);
    } else {
      agentMessage("error", `Not saved: ${e.message}`);
    }
  }
}

views.agents = {
  enter(changed) { if (changed) loadHosts(); },
};

function setupAgents() {
  $("agent-form").addEventListener("submit", (ev) => { ev.preventDefault(); saveHost(); });
  $("agent-add").addEventListener("click", () => {
    $("agent-entries").append(entryForm({}));
    numberEntries();
    $("agent-entries").lastElementChild.querySelector("[name=name]").focus();
  });
  $("agent-new").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const host = $("agent-new-host").value.trim();
    if (host) openHost(host);
  });
}

// ---------------------------------------------------------------------------------------------

function setup() {
  setupSearch();
  setupTail();
  setupAgents();
  for (const a of document.querySelectorAll("a[data-view]")) {
    a.addEventListener("click", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
      ev.preventDefault();
      navigate(a.getAttribute("href"));
    });
  }
  window.addEventListener("popstate", () => {
    const name = viewOf(location.pathname);
    show(name);
    if (name === "search") runSearch({ push: false });
  });
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target.closest && ev.target.closest("input, textarea, select");
    if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      const input = current === "tail" ? $("tail-q") : $("q");
      if (current !== "search" && current !== "tail") navigate("/");
      input.focus();
      input.select();
    } else if (ev.key === "Escape") {
      $("help").hidden = true;
    }
  });
  show(viewOf(location.pathname));
  document.body.dataset.ready = "1";
}

setup();
