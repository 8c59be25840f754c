"""The single page of `openk view` (HTML + JS; plotly.js is served from the local package)."""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>openk view</title>
<script src="/static/plotly.min.js"></script>
<style>
 body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
 table { border-collapse: collapse; }
 td, th { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; font-size: 14px; }
 tr.current { background: #eef4ff; }
 .flag { background: #ffe1d6; border-radius: 4px; padding: 0 4px; margin-right: 4px;
         font-size: 12px; white-space: nowrap; }
 #layout { display: flex; gap: 2em; align-items: flex-start; }
 #videos video, #videos img { width: 320px; margin-right: 6px; background: #000;
                              image-rendering: pixelated; }
 pre { background: #f4f4f4; padding: 6px; white-space: pre-wrap; }
 .plot { width: 640px; height: 260px; }
 #confirm-panel { display: none; border: 2px solid #c33; padding: 6px; margin-top: 6px; }
 button { margin: 2px; }
</style>
</head>
<body>
<h2>openk view: <span id="root"></span></h2>
<div id="summary"></div>
<details><summary>Quality flags and their thresholds</summary><ul id="thresholds"></ul></details>
<div id="layout">
 <div>
  <table id="episodes"><thead><tr><th>mark</th><th>episode</th><th>frames</th><th>s</th>
   <th>task</th><th>flags</th></tr></thead><tbody></tbody></table>
  <h3>Marked episodes</h3>
  <pre id="command">(mark episodes to get the command that deletes them)</pre>
  <button id="run-delete" disabled>Run this command…</button>
  <div id="confirm-panel">This rewrites the dataset without the marked episodes.
   <button id="confirm-delete">Yes, delete them</button>
   <button id="cancel-delete">Cancel</button></div>
  <pre id="delete-output"></pre>
 </div>
 <div id="episode-view">
  <h3 id="episode-title">Episode</h3>
  <div id="videos"></div>
  <div><button id="play">play / pause</button> <span id="clock">0.000 s</span></div>
  <div id="plots"></div>
  <h4>Loop telemetry</h4>
  <table id="telemetry"><tbody></tbody></table>
 </div>
</div>
<script>
"use strict";
// `clock`: playback of an episode without videos (image cameras only) runs on the page's clock.
const state = { dataset: null, episode: null, marked: new Set(), t: 0, clock: null };

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

async function loadDataset() {
  const d = await getJSON("/api/dataset");
  state.dataset = d;
  document.getElementById("root").textContent = d.root;
  document.getElementById("summary").textContent =
    `${d.episodes.length} episodes, ${d.total_frames} frames at ${d.fps} fps, ` +
    `robot ${d.robot_type ?? "unknown"}, cameras: ${d.cameras.join(", ") || "none"}`;
  const th = document.getElementById("thresholds");
  th.replaceChildren();
  for (const [k, v] of Object.entries(d.thresholds)) th.appendChild(el("li", {}, `${k}: ${v}`));
  const body = document.querySelector("#episodes tbody");
  body.replaceChildren();
  for (const ep of d.episodes) {
    const tr = el("tr", { id: `ep-row-${ep.episode_index}` });
    const box = el("input", { type: "checkbox", id: `mark-${ep.episode_index}` });
    box.checked = state.marked.has(ep.episode_index);
    box.addEventListener("change", () => {
      if (box.checked) state.marked.add(ep.episode_index);
      else state.marked.delete(ep.episode_index);
      updateCommand();
    });
    const td0 = el("td"); td0.appendChild(box); tr.appendChild(td0);
    const link = el("a", { href: `#episode-${ep.episode_index}`, class: "open-episode" },
                    String(ep.episode_index));
    link.addEventListener("click", (ev) => { ev.preventDefault(); showEpisode(ep.episode_index); });
    const td1 = el("td"); td1.appendChild(link); tr.appendChild(td1);
    tr.appendChild(el("td", {}, String(ep.length)));
    tr.appendChild(el("td", {}, ep.duration_s.toFixed(2)));
    tr.appendChild(el("td", {}, ep.task));
    const tdf = el("td", { class: "flags" });
    for (const f of ep.flags) tdf.appendChild(el("span", { class: "flag", title: f.detail },
                                                 `${f.flag}: ${f.detail}`));
    tr.appendChild(tdf);
    body.appendChild(tr);
  }
  updateCommand();
}

async function updateCommand() {
  const pre = document.getElementById("command");
  const button = document.getElementById("run-delete");
  if (state.marked.size === 0) {
    pre.textContent = "(mark episodes to get the command that deletes them)";
    button.disabled = true;
    return;
  }
  const list = [...state.marked].sort((a, b) => a - b).join(",");
  const r = await getJSON(`/api/command?episodes=${list}`);
  pre.textContent = r.command;
  button.disabled = false;
}

document.getElementById("run-delete").addEventListener("click", () => {
  document.getElementById("confirm-panel").style.display = "block";
});
document.getElementById("cancel-delete").addEventListener("click", () => {
  document.getElementById("confirm-panel").style.display = "none";
});
document.getElementById("confirm-delete").addEventListener("click", async () => {
  document.getElementById("confirm-panel").style.display = "none";
  const episodes = [...state.marked].sort((a, b) => a - b);
  const r = await fetch("/api/delete", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ episodes, confirm: true }),
  });
  const out = await r.json();
  document.getElementById("delete-output").textContent =
    r.ok ? out.output.join("\n") : "error: " + out.error;
  if (r.ok) { state.marked.clear(); await loadDataset(); await showEpisode(0); }
});

function videos() { return [...document.querySelectorAll("#videos video")]; }
function images() { return [...document.querySelectorAll("#videos img")]; }

// An image camera shows one stored PNG at a time. At most one request per camera is in
// flight: a cursor that moves faster than frames load skips to the latest wanted frame.
function showFrame(img, frame) {
  img.dataset.want = String(frame);
  if (img.dataset.loading === "1" || img.dataset.frame === String(frame)) return;
  img.dataset.loading = "1";
  img.dataset.requested = String(frame);
  img.src = img.dataset.url + frame;
}

function frameLoaded(img, ok) {
  img.dataset.loading = "0";
  if (ok) img.dataset.frame = img.dataset.requested;
  else img.dataset.error = `frame ${img.dataset.requested} did not load`;
  if (ok && img.dataset.want !== img.dataset.frame) showFrame(img, Number(img.dataset.want));
}

function frameAt(t) {
  const ep = state.episode;
  return Math.max(0, Math.min(ep.length - 1, Math.round(t * ep.fps)));
}

function seek(t) {
  const ep = state.episode;
  if (!ep) return;
  t = Math.max(0, Math.min(t, (ep.length - 1) / ep.fps));
  for (const v of videos()) v.currentTime = Number(v.dataset.from) + t;
  setCursor(t);
}

function setCursor(t) {
  state.t = t;
  if (state.episode) for (const img of images()) showFrame(img, frameAt(t));
  document.getElementById("clock").textContent = t.toFixed(3) + " s";
  for (const div of document.querySelectorAll(".plot")) {
    Plotly.relayout(div, { "shapes[0].x0": t, "shapes[0].x1": t });
  }
}

function followClock() {
  const ep = state.episode;
  const c = state.clock;
  const last = (ep.length - 1) / ep.fps;
  const t = Math.min(last, c.from + (performance.now() - c.start) / 1000);
  if (t >= last) state.clock = null;
  setCursor(t);
}

function follow() {
  if (state.clock && state.episode) { followClock(); return; }
  const vs = videos();
  const ep = state.episode;
  if (!vs.length || !ep) return;
  const master = vs[0];
  const t = master.currentTime - Number(master.dataset.from);
  const end = ep.length / ep.fps;
  if (t >= end - 0.5 / ep.fps) {
    // stop at the episode's last frame (a busy machine may play past it into the next one)
    for (const v of vs) v.pause();
    if (t > end - 1 / ep.fps + 1e-3) { seek(end - 1 / ep.fps); return; }
  }
  for (const v of vs.slice(1)) {
    const want = Number(v.dataset.from) + t;
    if (Math.abs(v.currentTime - want) > 0.5 / ep.fps) v.currentTime = want;
  }
  if (Math.abs(t - state.t) > 1e-4) setCursor(Math.max(0, Math.min(t, end)));
}

function tick() { follow(); requestAnimationFrame(tick); }
requestAnimationFrame(tick);

document.getElementById("play").addEventListener("click", () => {
  const vs = videos();
  const ep = state.episode;
  if (!vs.length) {
    if (!ep || !images().length) return;
    if (state.clock) { state.clock = null; return; }
    const from = state.t >= (ep.length - 1) / ep.fps ? 0 : state.t;
    state.clock = { start: performance.now(), from };
    return;
  }
  if (vs[0].paused) { for (const v of vs) v.play(); } else { for (const v of vs) v.pause(); }
});

async function showEpisode(n) {
  const ep = await getJSON(`/api/episode/${n}`);
  state.episode = ep;
  document.querySelectorAll("#episodes tr.current").forEach((r) => r.classList.remove("current"));
  const row = document.getElementById(`ep-row-${n}`);
  if (row) row.classList.add("current");
  document.getElementById("episode-title").textContent =
    `Episode ${n}: ${ep.task} (${ep.length} frames)`;
  const vdiv = document.getElementById("videos");
  vdiv.replaceChildren();
  for (const [key, v] of Object.entries(ep.videos)) {
    const box = el("div", { style: "display:inline-block" });
    box.appendChild(el("div", {}, key));
    const video = el("video", { src: v.url, muted: "", preload: "auto", playsinline: "",
                                "data-key": key, "data-from": String(v.from) });
    video.muted = true;
    video.addEventListener("loadedmetadata", () => { video.currentTime = v.from + state.t; });
    box.appendChild(video);
    vdiv.appendChild(box);
  }
  state.clock = null;
  for (const [key, im] of Object.entries(ep.images)) {
    const box = el("div", { style: "display:inline-block" });
    box.appendChild(el("div", {}, key));
    const img = el("img", { alt: `${key} frame`, "data-key": key, "data-url": im.url });
    img.addEventListener("load", () => frameLoaded(img, true));
    img.addEventListener("error", () => frameLoaded(img, false));
    box.appendChild(img);
    vdiv.appendChild(box);
    showFrame(img, 0);
  }
  const plots = document.getElementById("plots");
  plots.replaceChildren();
  state.t = 0;
  document.getElementById("clock").textContent = "0.000 s";  // a new episode starts at 0
  for (const [key, s] of Object.entries(ep.series)) {
    const div = el("div", { class: "plot", id: `plot-${key}` });
    plots.appendChild(div);
    const traces = s.names.map((name, i) => ({ x: ep.time, y: s.values[i], name, mode: "lines" }));
    await Plotly.newPlot(div, traces, {
      title: { text: key }, margin: { t: 30, b: 30, l: 40, r: 10 },
      xaxis: { title: { text: "s" } }, hovermode: "x",
      shapes: [{ type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1,
                 line: { color: "#d22", width: 2 } }],
    }, { displaylogo: false, responsive: false });
    div.on("plotly_click", (d) => { if (d.points.length) seek(d.points[0].x); });
  }
  const tb = document.querySelector("#telemetry tbody");
  tb.replaceChildren();
  const tele = ep.telemetry || {};
  const rows = Object.entries(tele).filter(([k, v]) => typeof v !== "object");
  // Durations are stored in ns (`_ns`); shown in µs.
  const us = (ns) => `${+(ns / 1e3).toFixed(1)} µs`;
  for (const [k, v] of rows) {
    const ns = k.endsWith("_ns") && typeof v === "number";
    const tr = el("tr"); tr.appendChild(el("td", {}, ns ? k.slice(0, -3) : k));
    const shown = typeof v === "number" ? String(+v.toFixed(3)) : String(v);
    tr.appendChild(el("td", {}, ns ? us(v) : shown));
    tb.appendChild(tr);
  }
  for (const [part, r] of Object.entries(tele.bus_round || {})) {
    const tr = el("tr"); tr.appendChild(el("td", {}, `bus round ${part}`));
    tr.appendChild(el("td", {}, `p50 ${us(r.p50_ns)}, p99 ${us(r.p99_ns)}, max ${us(r.max_ns)}`));
    tb.appendChild(tr);
  }
  for (const [m, count] of Object.entries(tele.bus_errors || {})) {
    const tr = el("tr"); tr.appendChild(el("td", {}, `bus errors ${m}`));
    tr.appendChild(el("td", {}, String(count))); tb.appendChild(tr);
  }
  if (!Object.keys(tele).length) {
    const tr = el("tr"); tr.appendChild(el("td", {}, "no openk loop telemetry for this episode"));
    tb.appendChild(tr);
  }
}

window.openkView = {
  seek, showEpisode,
  cursor: () => state.t,
  cursorOnPlot: () => {
    const div = document.querySelector(".plot");
    return div && div.layout.shapes[0].x0;
  },
  // the frame an image camera shows (loaded), or null
  imageFrame: (key) => {
    const img = images().find((i) => i.dataset.key === key);
    return img && img.dataset.frame !== undefined ? Number(img.dataset.frame) : null;
  },
  playing: () => state.clock !== null,
  videoTime: () => {
    const v = videos()[0];
    return v ? v.currentTime - Number(v.dataset.from) : null;
  },
};

loadDataset().then(() => showEpisode(0)).then(() => { document.body.dataset.ready = "1"; });
</script>
</body>
</html>
"""
