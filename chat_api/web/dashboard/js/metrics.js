// Metrics: the window's figures, and charts over time with thresholds and promotions.

import { api, query } from "./api.js";
import { h, ms, num, pct } from "./dom.js";
import { lineChart } from "./chart.js";

// Seconds as a short duration: 42 s, 3.5 min, 1.2 h; a dash when there is no figure.
function secs(v) {
  if (v === null || v === undefined) return "\u2014";
  if (v < 90) return `${Math.round(v)} s`;
  if (v < 5400) return `${(v / 60).toFixed(1)} min`;
  return `${(v / 3600).toFixed(1)} h`;
}

const RANGES = { "24h": [24 * 3600e3, 24], "7d": [7 * 86400e3, 28], "30d": [30 * 86400e3, 30] };

function stat(label, value, detail) {
  return h("div", { class: "stat card" },
    h("span", { class: "stat-label", text: label }),
    h("span", { class: "stat-value", text: value }),
    h("span", { class: "muted", text: detail }));
}

export async function renderMetrics(params) {
  const range = RANGES[params.get("range")] ? params.get("range") : "24h";
  const version = params.get("model_version") || "";
  const [spanMs, buckets] = RANGES[range];
  const until = new Date();
  const since = new Date(until.getTime() - spanMs);
  const filter = { since: since.toISOString(), until: until.toISOString(), model_version: version };
  const [summary, series, models] = await Promise.all([
    api("GET", `/v1/operator/metrics/summary${query(filter)}`),
    api("GET", `/v1/operator/metrics/series${query({ ...filter, buckets })}`),
    api("GET", "/v1/operator/models"),
  ]);

  const controls = h("form", { class: "filters card", "aria-label": "Metrics range" },
    h("div", { class: "field" }, h("label", { for: "m-range", text: "Range" }),
      h("select", { id: "m-range", name: "range" }, ...Object.keys(RANGES).map((r) =>
        h("option", { value: r, text: `Last ${r}`, selected: r === range })))),
    h("div", { class: "field" }, h("label", { for: "m-model", text: "Model version" }),
      h("select", { id: "m-model", name: "model_version" },
        h("option", { value: "", text: "All versions" }),
        ...models.map((m) => h("option", { value: m.id, text: m.id, selected: m.id === version })))),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary", text: "Show" })),
  );
  controls.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/metrics${query(Object.fromEntries(new FormData(controls).entries()))}`;
  });

  const t = series.thresholds;
  const mid = (p) => new Date((new Date(p.start).getTime() + new Date(p.end).getTime()) / 2);
  const points = (key) => series.points.map((p) => ({ t: mid(p), v: p[key] }));
  const from = new Date(series.since);
  const to = new Date(series.until);
  const promotions = series.promotions.map((p) => ({ t: new Date(p.at), label: `\u2192 ${p.model_version_id}` }));
  const rate = (v) => `${Math.round(v * 100)}%`;
  return h("section", { "aria-labelledby": "page-title" },
    h("h1", { id: "page-title", text: "Metrics" }),
    controls,
    h("p", { class: "muted", text: `Production model: ${summary.production_model || "none deployed"}` }),
    h("div", { class: "stats", id: "summary" },
      stat("Positive rating rate", pct(summary.positive_rate),
        `${summary.thumbs_up} up / ${summary.thumbs_down} down`),
      stat("Intent accuracy", pct(summary.intent_accuracy), `${summary.verified_intents} verified`),
      stat("Handoff rate", pct(summary.handoff_rate), `${summary.handed_off} of ${summary.conversations} chats`),
      stat("Time to first agent reply", secs(summary.first_agent_reply_p50_s),
        `p95 ${secs(summary.first_agent_reply_p95_s)}, ${summary.first_agent_replies} answered`),
      stat("p95 latency", ms(summary.latency_p95_ms), `p50 ${ms(summary.latency_p50_ms)}`),
      stat("CSAT", summary.csat_mean === null ? "\u2014" : `${num(summary.csat_mean, 1)} / 5`,
        `${summary.csat_count} ${summary.csat_count === 1 ? "answer" : "answers"}`),
      stat("Replies", String(summary.assistant_replies), `${summary.customer_messages} customer messages`),
      stat("Guard fallback", pct(summary.fallback_rate),
        `${summary.approved_replies} approved answers, ${summary.guarded_replies - summary.approved_replies} handed off`),
    ),
    h("div", { class: "charts" },
      lineChart({ title: "Positive rating rate", points: points("positive_rate"), yMax: 1, format: rate,
        threshold: { value: t.min_positive_rate, label: "min" }, promotions, from, to }),
      lineChart({ title: "Intent accuracy (operator-verified)", points: points("intent_accuracy"), yMax: 1,
        format: rate, threshold: { value: t.min_intent_accuracy, label: "min" }, promotions, from, to }),
      lineChart({ title: "Handoff rate", points: points("handoff_rate"), yMax: 1, format: rate,
        threshold: { value: t.max_handoff_rate, label: "max" }, promotions, from, to }),
      lineChart({ title: "Time to first agent reply (p95)", points: points("first_agent_reply_p95_s"),
        format: secs, promotions, from, to }),
      lineChart({ title: "Guard fallback rate (approved answer or handoff instead of the reply)",
        points: points("fallback_rate"), yMax: 1, format: rate,
        threshold: { value: t.max_fallback_rate, label: "max" }, promotions, from, to }),
      lineChart({ title: "p95 latency", points: points("latency_p95_ms"),
        format: (v) => `${Math.round(v)} ms`,
        threshold: { value: t.max_latency_p95_ms, label: "max" }, promotions, from, to }),
    ),
  );
}
