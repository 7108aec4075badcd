// Hand-drawn SVG line charts: a series over time, a threshold line, promotion markers, and the
// same numbers as a table for screen readers and keyboard users.

import { h, when } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const H = 230;
const PAD = { left: 56, right: 16, top: 16, bottom: 34 };
let chartSeq = 0;

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  children.forEach((c) => c && node.append(c));
  return node;
}

function shortTime(date, spanMs) {
  return spanMs > 2 * 86400e3
    ? date.toLocaleDateString(undefined, { month: "short", day: "numeric" })
    : date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// A round number at or above `value` (1, 2 or 5 times a power of ten), for the y axis.
function niceCeil(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((n) => n >= value);
}

// points: [{t: Date, v: number|null}] (t: the middle of each period); from/to: the range shown;
// threshold: {value, label}; promotions: [{t: Date, label}]
export function lineChart({ title, points, from, to, threshold, promotions, format, yMax, xFormat }) {
  const id = `chart-${++chartSeq}`;
  // Drawn in CSS pixels of the screen it is shown on, so labels keep a readable size on phones.
  const W = window.innerWidth < 640 ? 340 : 600;
  const t0 = (from || (points.length ? points[0].t : new Date())).getTime();
  const t1 = (to || (points.length ? points[points.length - 1].t : new Date(t0 + 1))).getTime();
  const span = Math.max(t1 - t0, 1);
  const values = points.map((p) => p.v).filter((v) => v !== null && v !== undefined);
  const top = yMax ?? niceCeil(Math.max(1, ...values, threshold ? threshold.value : 0) * 1.1);
  const x = (t) => PAD.left + ((t - t0) / span) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / top) * (H - PAD.top - PAD.bottom);

  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-t ${id}-d`,
    class: "chart", preserveAspectRatio: "xMidYMid meet" });
  const summary = values.length
    ? `${values.length} of ${points.length} periods have data; latest ${format(values[values.length - 1])}.`
    : "No data in this range yet.";
  svg.append(s("title", { id: `${id}-t`, text: title }),
    s("desc", { id: `${id}-d`, text: `${summary}${threshold ? ` ${threshold.label}: ${format(threshold.value)}.` : ""}` }));

  // As many grid lines as give round steps (e.g. 0.5 up to 2.5, not 0.625).
  const divisions = [4, 5, 2].find((n) => niceCeil(top / n) === top / n) || 4;
  for (let i = 0; i <= divisions; i++) {
    const v = (top * i) / divisions;
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick", text: format(v) }));
  }
  [t0, t0 + span / 2, t1].forEach((t, i) => {
    svg.append(s("text", { x: x(t), y: H - 10, class: "tick",
      "text-anchor": ["start", "middle", "end"][i],
      text: xFormat ? xFormat(t) : shortTime(new Date(t), span) }));
  });

  if (threshold) {
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(threshold.value),
      y2: y(threshold.value), class: "threshold" }),
      s("text", { x: PAD.left + 4, y: y(threshold.value) - 5, "text-anchor": "start",
        class: "threshold-label", text: `${threshold.label} ${format(threshold.value)}` }));
  }
  let lastX = -Infinity;
  let row = 0;
  (promotions || []).forEach((p) => {
    const px = x(p.t.getTime());
    if (px < PAD.left || px > W - PAD.right) return;
    row = px - lastX < 60 ? row + 1 : 0; // promotions close together: labels one under another
    lastX = px;
    const right = px > W / 2; // labels on the line's inner side, so they stay in the chart
    svg.append(s("line", { x1: px, x2: px, y1: PAD.top, y2: H - PAD.bottom, class: "promotion" }),
      s("text", { x: right ? px - 4 : px + 4, y: PAD.top + 10 + row * 13,
        "text-anchor": right ? "end" : "start", class: "promotion-label", text: p.label }));
  });

  let d = "";
  let pen = false;
  points.forEach((p) => {
    if (p.v === null || p.v === undefined) { pen = false; return; }
    d += `${pen ? "L" : "M"}${x(p.t.getTime()).toFixed(1)},${y(p.v).toFixed(1)}`;
    pen = true;
  });
  if (d) svg.append(s("path", { d, class: "series" }));
  points.forEach((p) => {
    if (p.v === null || p.v === undefined) return;
    svg.append(s("circle", { cx: x(p.t.getTime()), cy: y(p.v), r: 3.5, class: "dot" }));
  });

  const rows = points.filter((p) => p.v !== null && p.v !== undefined);
  const table = h("details", { class: "chart-data" },
    h("summary", { text: `${title}: data` }),
    rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "When" }),
        h("th", { scope: "col", text: "Value" }))),
      h("tbody", {}, ...rows.map((p) => h("tr", {},
        h("td", { text: xFormat ? xFormat(p.t.getTime()) : when(p.t.toISOString()) }),
        h("td", { text: format(p.v) })))))
      : h("p", { text: "No data." }));
  return h("figure", { class: "card chart-card" },
    h("figcaption", { text: title }), svg, table);
}
