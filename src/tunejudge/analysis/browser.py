"""results/browser.html: every test item, every model's answer side by side, with the verdicts and reasons.

One self-contained file (no server, no network; it opens from a disk or inside Snakemake's HTML report):
the data as one JSON document inside the page, the page's own CSS and JavaScript around it. Answers and
corpus rows are untrusted text: the JSON is escaped so that no text can close the script element that
holds it (``<``, ``>``, ``&`` and the line separators written as ``\\uXXXX``), and the page shows every text
through ``textContent`` -- never as HTML -- so a ``<script>`` or an ``<img onerror=...>`` in an answer is
shown as the characters it is and runs nothing.

What it shows: filters by source, model, metric and outcome against a chosen model (win / tie / loss on
the per-item total or one metric), sorted by gain; one item at a time -- instruction, input, reference,
every model's answer with each verdict's score and reason, the judge-free metric, the checks it fails
(an answer that addresses the judge, or loops: :mod:`tunejudge.judge.flags`, marked and filterable), the
controls' arms, the pairwise verdicts in both orders and every panel judge's score (disagreements marked). ``#item=<id>``
opens an item (the report's cases link there). The list draws its first rows at once and the rest on
demand, so 10,000 answer rows paint in a fraction of a second (tests/test_browser.py measures it).
"""

from __future__ import annotations

import json

from ..judge.controls import NEGATIVE, POSITIVE


def _score(row: dict):
    return None if row.get("score_5") is None else round(float(row["score_5"]), 3)


def browser_data(responses: list[dict], labels: dict, judge_rows: list[dict], reference_rows: list[dict],
                 control_rows: list[dict], pairwise_rows: list[dict], panel_rows: dict[str, list[dict]],
                 metrics: list[str], run: dict) -> dict:
    """The page's data: per item its texts, every model's answer, verdicts, judge-free metric, controls,
    pairwise verdicts and panel scores; and the run (config files, judge) it shows."""
    models = list(labels)
    items = {r["id"]: {"id": r["id"], "source": r["source"], "instruction": r["instruction"], "input": r["input"],
                       "output": r["output"], "answers": {m: r.get(f"model {m}", "") for m in models},
                       "scores": {}, "reference": {}, "flags": {}, "controls": {}, "pairwise": [], "panel": {}}
             for r in responses}
    for r in judge_rows:
        if r["id"] in items:
            items[r["id"]]["scores"].setdefault(r["model"], {})[r["metric"]] = [_score(r), r.get("reason") or r.get("error") or ""]
    for r in reference_rows:
        if r["id"] in items and r.get("headline"):
            items[r["id"]]["reference"][r["model"]] = [r["headline"], r.get(r["headline"])]
        if r["id"] in items and r.get("flags"):
            items[r["id"]]["flags"][r["model"]] = list(r["flags"])
    arm_name = {POSITIVE: "positive", NEGATIVE: "negative"}
    for r in control_rows:
        if r["id"] in items and r.get("model") in arm_name:
            items[r["id"]]["controls"].setdefault(arm_name[r["model"]], {})[r["metric"]] = [_score(r), r.get("reason") or ""]
    for r in pairwise_rows:
        if r["id"] in items:
            items[r["id"]]["pairwise"].append({k: r.get(k) for k in ("a", "b", "metric", "verdict", "consistent", "first",
                                                                     "second", "reason", "reason_swapped")})
    for judge, rows in panel_rows.items():
        for r in rows:
            if r["id"] in items:
                items[r["id"]]["panel"].setdefault(judge, {}).setdefault(r["model"], {})[r["metric"]] = _score(r)
    from ..judge.flags import ADDRESSES_JUDGE

    return {"run": run, "models": models, "labels": labels, "metrics": metrics, "items": list(items.values()),
            "addresses_judge": list(ADDRESSES_JUDGE)}


def embed_json(data) -> str:
    """JSON that is safe inside an HTML script element: no text can end the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def render(data: dict) -> str:
    """The whole page."""
    return PAGE.replace("/*DATA*/", embed_json(data))


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>tunejudge answer browser</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{padding:8px 14px;background:#263238;color:#eceff1}
header h1{font-size:16px;margin:0 0 2px}
header .run{font-size:12px;opacity:.85}
#controls{display:flex;flex-wrap:wrap;gap:10px;padding:8px 14px;background:#eceff1;border-bottom:1px solid #cfd8dc}
#controls label{font-size:12px;display:flex;flex-direction:column}
main{display:flex;height:calc(100vh - 110px)}
#list{width:34%;overflow:auto;border-right:1px solid #cfd8dc;background:#fff}
#list .row{padding:6px 10px;border-bottom:1px solid #eee;cursor:pointer}
#list .row:hover,#list .row.sel{background:#e3f2fd}
#list .meta{font-size:11px;color:#607d8b}
#count{font-size:12px;color:#455a64;padding:6px 10px}
#detail{flex:1;overflow:auto;padding:10px 16px}
.box{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px 10px;margin:8px 0}
.text{white-space:pre-wrap;word-break:break-word}
.answers{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:8px}
.answer .meta{font-size:11px;color:#607d8b}
.answer-text{background:#f5f7f8;border-left:3px solid #90a4ae;padding:4px 6px;margin:4px 0;border-radius:3px}
.verdict{font-size:12px;margin-top:4px;border-top:1px dashed #ddd;padding-top:3px}
.score{font-weight:600}
.win{color:#2e7d32}.loss{color:#c62828}.tie{color:#757575}
.disagree{background:#fff3e0}
.flags{font-size:12px;margin:4px 0;padding:2px 6px;border-radius:3px;background:#fff3e0;color:#8d4a00}
.flags.judge{background:#ffebee;color:#b71c1c;font-weight:600}
.flag-mark{color:#b71c1c;font-weight:600}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
button{font-size:12px}
</style>
</head>
<body>
<header><h1>tunejudge answer browser</h1><div class="run" id="run"></div></header>
<div id="controls">
<label>source<select id="f-source"></select></label>
<label>model<select id="f-model"></select></label>
<label>metric<select id="f-metric"></select></label>
<label>against<select id="f-versus"></select></label>
<label>outcome<select id="f-outcome"><option value="">any</option><option value="win">win</option><option value="tie">tie</option><option value="loss">loss</option></select></label>
<label>flagged (model)<select id="f-flag"><option value="">any answer</option><option value="any">flagged</option><option value="judge">addresses the judge</option><option value="degenerate">degenerate</option><option value="none">not flagged</option></select></label>
<label>sort<select id="f-sort"><option value="order">test-set order</option><option value="gain-desc">largest gain first</option><option value="gain-asc">largest loss first</option></select></label>
<label>search<input id="f-search" type="search" placeholder="text in any field"></label>
</div>
<main><div id="list"><div id="count"></div><div id="rows"></div><button id="more" hidden>show more</button></div>
<div id="detail"><p>Pick an item on the left.</p></div></main>
<script type="application/json" id="data">/*DATA*/</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 200;
let shown = PAGE, current = [], selected = null;
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
  return e;
}
function options(sel, values, any) {
  sel.replaceChildren(...(any ? [el("option", {value: ""}, any)] : []), ...values.map(v => el("option", {value: v}, v)));
}
function total(it, model, metric) {
  const s = it.scores[model]; if (!s) return null;
  const ms = metric ? [metric] : D.metrics; let t = 0;
  for (const m of ms) { if (!s[m] || s[m][0] == null) return null; t += s[m][0]; }
  return t;
}
function gain(it) {
  const m = $("f-model").value || D.models[0], v = $("f-versus").value, metric = $("f-metric").value;
  if (!v || v === m) return null;
  const a = total(it, m, metric), b = total(it, v, metric);
  return a == null || b == null ? null : Math.round((a - b) * 1e6) / 1e6;
}
function $(id) { return document.getElementById(id); }
function addressesJudge(flags) { return (flags || []).some(f => D.addresses_judge.includes(f)); }
function flagged(it, want) {
  const f = it.flags[$("f-model").value || D.models[0]] || [];
  if (want === "any") return f.length > 0;
  if (want === "none") return f.length === 0;
  if (want === "judge") return addressesJudge(f);
  return f.some(x => !D.addresses_judge.includes(x));
}
function filter() {
  const src = $("f-source").value, out = $("f-outcome").value, q = $("f-search").value.toLowerCase(), sort = $("f-sort").value;
  const fl = $("f-flag").value;
  let items = D.items.filter(it => (!src || it.source === src) && (!fl || flagged(it, fl)));
  if (q) items = items.filter(it => [it.instruction, it.input, it.output, ...Object.values(it.answers)].some(t => (t || "").toLowerCase().includes(q)));
  const withGain = items.map(it => [it, gain(it)]);
  let kept = withGain;
  if (out) kept = withGain.filter(([, g]) => g != null && (out === "win" ? g > 0 : out === "loss" ? g < 0 : g === 0));
  if (sort !== "order") kept = kept.slice().sort((x, y) => ((sort === "gain-desc" ? -1 : 1) * ((x[1] ?? 0) - (y[1] ?? 0))));
  current = kept; shown = PAGE; drawList();
}
function drawList() {
  const rows = $("rows"); rows.replaceChildren();
  $("count").textContent = current.length + " of " + D.items.length + " items";
  for (const [it, g] of current.slice(0, shown)) {
    const cls = g == null ? "" : g > 0 ? "win" : g < 0 ? "loss" : "tie";
    const r = el("div", {class: "row" + (selected === it.id ? " sel" : ""), "data-id": it.id},
      el("div", {class: "text"}, it.instruction.length > 140 ? it.instruction.slice(0, 139) + "\u2026" : it.instruction),
      el("div", {class: "meta"}, it.source + " \u00b7 " + it.id + (g == null ? "" : " \u00b7 "), g == null ? "" : el("span", {class: cls}, "gain " + g),
        (it.flags[$("f-model").value || D.models[0]] || []).length ? el("span", {class: "flag-mark", title: (it.flags[$("f-model").value || D.models[0]]).join(", ")}, " \u00b7 flagged") : ""));
    r.addEventListener("click", () => { location.hash = "item=" + encodeURIComponent(it.id); });
    rows.append(r);
  }
  $("more").hidden = current.length <= shown;
}
function verdictLine(v) {
  if (!v) return el("div", {class: "verdict"}, "no verdict");
  return el("div", {class: "verdict"}, el("span", {class: "score"}, v[0] == null ? "error" : v[0].toFixed(2) + " / 5"), " \u2014 ", v[1]);
}
function show(id) {
  const it = D.items.find(x => x.id === id); const d = $("detail");
  if (!it) { d.replaceChildren(el("p", {}, "No item " + id + " in this run.")); return; }
  selected = id; drawList();
  const parts = [el("h2", {}, it.source + " \u00b7 " + it.id),
    el("div", {class: "box"}, el("b", {}, "Instruction"), el("div", {class: "text"}, it.instruction))];
  if (it.input) parts.push(el("div", {class: "box"}, el("b", {}, "Input"), el("div", {class: "text", "data-field": "input"}, it.input)));
  parts.push(el("div", {class: "box"}, el("b", {}, "Reference"), el("div", {class: "text"}, it.output)));
  const grid = el("div", {class: "answers"});
  for (const m of D.models) {
    const box = el("div", {class: "box answer", "data-model": m}, el("b", {}, m), el("div", {class: "meta"}, D.labels[m] || ""),
      el("div", {class: "text answer-text"}, it.answers[m] || "(empty answer)"));
    const fl = it.flags[m] || [];
    if (fl.length) box.append(el("div", {class: "flags" + (addressesJudge(fl) ? " judge" : ""), "data-flags": fl.join(" ")},
      (addressesJudge(fl) ? "flagged, addresses the judge: " : "flagged: ") + fl.join(", ")));
    const t = total(it, m, null);
    box.append(el("div", {class: "verdict"}, "total ", el("span", {class: "score"}, t == null ? "n/a" : t.toFixed(2))));
    for (const metric of D.metrics) box.append(el("div", {}, el("i", {}, metric), verdictLine((it.scores[m] || {})[metric])));
    const ref = it.reference[m];
    if (ref) box.append(el("div", {class: "verdict"}, "judge-free " + ref[0] + ": ", el("span", {class: "score"}, ref[1] == null ? "n/a" : Number(ref[1]).toFixed(3))));
    const panel = Object.entries(it.panel).map(([j, byModel]) => [j, byModel[m] || {}]);
    if (panel.length) {
      const tbl = el("table", {class: "panel"}, el("tr", {}, el("th", {}, "panel judge"), ...D.metrics.map(x => el("th", {}, x))));
      for (const [j, s] of panel) {
        tbl.append(el("tr", {}, el("td", {}, j), ...D.metrics.map(x => {
          const own = ((it.scores[m] || {})[x] || [])[0], v = s[x];
          const off = v != null && own != null && Math.abs(v - own) >= 2;
          return el("td", {class: off ? "disagree" : "", title: off ? "differs from the judge by 2 or more" : ""}, v == null ? "n/a" : v.toFixed(2));
        })));
      }
      box.append(tbl);
    }
    grid.append(box);
  }
  parts.push(el("h3", {}, "Answers"), grid);
  if (Object.keys(it.controls).length) {
    const box = el("div", {class: "box controls"}, el("b", {}, "Controls (the reference as an answer: positive; another item's reference: negative)"));
    for (const [arm, byMetric] of Object.entries(it.controls))
      for (const [metric, v] of Object.entries(byMetric)) box.append(el("div", {}, el("i", {}, arm + " \u00b7 " + metric), verdictLine(v)));
    parts.push(box);
  }
  if (it.pairwise.length) {
    const tbl = el("table", {class: "pairwise"}, el("tr", {}, ...["pair", "metric", "A first", "B first", "verdict", "reason (A first)", "reason (B first)"].map(h => el("th", {}, h))));
    for (const p of it.pairwise)
      tbl.append(el("tr", {class: p.consistent === false ? "disagree" : ""}, el("td", {}, p.a + " vs " + p.b), el("td", {}, p.metric),
        el("td", {}, p.first ?? "-"), el("td", {}, p.second ?? "-"), el("td", {}, (p.verdict ?? "error") + (p.consistent === false ? " (order flipped it)" : "")),
        el("td", {class: "text"}, p.reason ?? ""), el("td", {class: "text"}, p.reason_swapped ?? "")));
    parts.push(el("h3", {}, "Pairwise, both orders"), tbl);
  }
  d.replaceChildren(...parts);
}
function route() { const m = location.hash.match(/item=([^&]+)/); if (m) show(decodeURIComponent(m[1])); }
$("run").textContent = "run: " + (D.run.config_files || []).join(", ") + " \u00b7 judge: " + D.run.judge + " \u00b7 " + D.items.length + " items \u00b7 " + D.models.length + " models";
options($("f-source"), [...new Set(D.items.map(i => i.source))].sort(), "every source");
options($("f-model"), D.models, null);
options($("f-metric"), D.metrics, "total (every metric)");
options($("f-versus"), D.models, "nobody");
if (D.models.length > 1) { $("f-model").value = D.models[1]; $("f-versus").value = D.models[0]; }  // e.g. full against base
for (const id of ["f-source", "f-model", "f-metric", "f-versus", "f-outcome", "f-flag", "f-sort"]) $(id).addEventListener("change", filter);
$("f-search").addEventListener("input", filter);
$("more").addEventListener("click", () => { shown += PAGE * 5; drawList(); });
window.addEventListener("hashchange", route);
filter(); route();
requestAnimationFrame(() => { window.__firstPaint = performance.now(); });
</script>
</body>
</html>
"""
