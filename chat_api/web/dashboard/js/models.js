// Model versions: evaluation and live metrics side by side; promote or roll back (admins), with
// a confirmation and a reason for the audit log; the production history; the approved answers
// the serving guard sends in place of unfit replies.

import { api, currentOperator, query } from "./api.js";
import { badge, confirmAction, flash, h, ms, num, pct, when } from "./dom.js";

const RATIO = /(accuracy|rate|recall|precision|agreement|f1|degenerate|share|coverage)/;
// Figures inside the run's nested reports that belong beside the flat ones: intents on the
// rows the run reported on, the handoff threshold calibrated on other rows and how often it
// hands off there, reply quality.
const NESTED = [
  "intent.accuracy", "intent.oos_recall", "intent.handoff.score", "intent.handoff.threshold",
  "intent.handoff.share", "intent.handoff.calibration.precision",
  "intent.handoff.calibration.oos_rows", "intent.handoff.calibration.pseudo_oos_rows",
  "intent.handoff.calibration.separation", "intent.rows.ood_corpus", "replies.degenerate",
  "replies.chrf_vs_teacher",
];

function metric(m, key) {
  return key.split(".").reduce((v, part) => (v && typeof v === "object" ? v[part] : undefined), m.metrics);
}

function evalValue(key, value) {
  if (typeof value === "number" && RATIO.test(key) && value >= 0 && value <= 1) return pct(value);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : num(value, 3);
  if (value === null || value === undefined) return "\u2014";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

async function act(path, body, done) {
  try {
    const out = await api("POST", path, body);
    flash(`Production now serves ${out.model_version_id}.`);
    done();
  } catch (err) {
    flash(err.message, "error");
  }
}

function answersTable(answers, reload) {
  if (!answers.length) {
    return h("p", { class: "empty", text: "No approved answers yet. Open a conversation and use a good reply as the approved answer of its intent." });
  }
  const remove = (a) => async () => {
    const ok = await confirmAction({ title: `Remove the approved answer for ${a.intent}?`,
      confirmLabel: "Remove", danger: true,
      message: "Unfit replies of this intent will be handed to a human instead." });
    if (!ok) return;
    try {
      await api("DELETE", `/v1/operator/approved-answers/${encodeURIComponent(a.intent)}`);
      flash(`Approved answer for ${a.intent} removed.`);
      reload();
    } catch (err) {
      flash(err.message, "error");
    }
  };
  return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Approved answers table" },
    h("table", {},
      h("caption", { class: "sr", text: "Approved answers by intent" }),
      h("thead", {}, h("tr", {}, ...["Intent", "Answer", "Source", "Updated", ""].map((t) =>
        h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...answers.map((a) => h("tr", {},
        h("th", { scope: "row", text: a.intent }),
        h("td", { text: a.text }),
        h("td", {}, badge(a.source === "seed" ? "Seeded" : "Operator", a.source === "seed" ? "info" : "good")),
        h("td", { text: when(a.updated_at) }),
        h("td", {}, h("button", { type: "button", class: "secondary small", text: "Remove",
          "aria-label": `Remove the approved answer for ${a.intent}`, onclick: remove(a) })),
      )))));
}

export async function renderModels() {
  const isAdmin = currentOperator().role === "admin";
  const [models, history, answers] = await Promise.all([
    api("GET", "/v1/operator/models"),
    api("GET", "/v1/operator/models/history"),
    api("GET", "/v1/operator/approved-answers"),
  ]);
  const live = await Promise.all(models.map((m) =>
    api("GET", `/v1/operator/metrics/summary${query({ model_version: m.id })}`)));
  const reload = () => window.dispatchEvent(new Event("chatdistill:refresh"));
  const evalKeys = [...new Set(models.flatMap((m) => Object.keys(m.metrics)))]
    .filter((k) => typeof models.find((m) => k in m.metrics).metrics[k] !== "object").sort()
    .concat(NESTED.filter((k) => models.some((m) => metric(m, k) !== undefined)));

  const promote = (m) => async () => {
    const reason = await confirmAction({
      title: `Promote ${m.id}?`, confirmLabel: "Promote", reason: true,
      message: `Production traffic will be answered by ${m.id} from now on.`,
    });
    if (reason) act(`/v1/operator/models/${encodeURIComponent(m.id)}/promote`, { reason }, reload);
  };
  const canRollBack = history.length > 0 && history[0].previous_version_id;
  const rollback = async () => {
    const reason = await confirmAction({
      title: "Roll back production?", confirmLabel: "Roll back", reason: true, danger: true,
      message: `Production goes back from ${history[0].model_version_id} to ${history[0].previous_version_id}.`,
    });
    if (reason) act("/v1/operator/models/rollback", { reason }, reload);
  };

  const head = ["Version", "Registered", ...evalKeys.map((k) => `Eval: ${k}`), "Live: positive",
    "Live: intent acc.", "Live: handoff", "Live: p95", ""];
  const rows = models.map((m, i) => h("tr", {},
    h("th", { scope: "row" }, m.id, " ", m.aliases.map((a) => badge(a, "good"))),
    h("td", { text: when(m.created_at) }),
    ...evalKeys.map((k) => h("td", { class: "num", text: evalValue(k, metric(m, k)) })),
    h("td", { class: "num", text: pct(live[i].positive_rate) }),
    h("td", { class: "num", text: pct(live[i].intent_accuracy) }),
    h("td", { class: "num", text: pct(live[i].handoff_rate) }),
    h("td", { class: "num", text: ms(live[i].latency_p95_ms) }),
    h("td", {}, isAdmin && !m.aliases.includes("production")
      ? h("button", { type: "button", class: "secondary small", text: "Promote",
          "aria-label": `Promote ${m.id}`, onclick: promote(m) })
      : null),
  ));
  return h("section", { "aria-labelledby": "page-title" },
    h("h1", { id: "page-title", text: "Model versions" }),
    h("p", { class: "muted", text: history.length
      ? `Production serves ${history[0].model_version_id}` +
        (canRollBack ? `; a rollback returns to ${history[0].previous_version_id}.` : ".")
      : "Production has no model yet." }),
    isAdmin && h("p", {}, h("button", { type: "button", class: "danger", text: "Roll back production",
      disabled: !canRollBack, onclick: rollback })),
    models.length
      ? h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Model versions table" }, h("table", {},
          h("caption", { class: "sr", text: "Model versions with evaluation and live metrics" }),
          h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, ...rows)))
      : h("p", { class: "empty", text: "No model is registered yet. Deploy one with `chatdistill deploy BUNDLE_DIR`." }),
    h("h2", { text: "Approved answers" }),
    answersTable(answers, reload),
    h("h2", { text: "Production history" }),
    history.length
      ? h("ol", { class: "history" }, ...history.map((e) => h("li", {},
          h("strong", { text: e.model_version_id }),
          ` ${e.previous_version_id ? `(was ${e.previous_version_id})` : "(first)"} \u2014 ${when(e.at)}`,
          e.reason ? [" \u2014 ", h("q", { text: e.reason })] : null)))
      : h("p", { class: "empty", text: "Production has never been set." }),
  );
}
