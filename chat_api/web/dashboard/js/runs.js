// Distillation runs: status, stage and progress, metrics; admins cancel an active run.

import { api, currentOperator } from "./api.js";
import { badge, confirmAction, flash, h, num, when } from "./dom.js";
import { lineChart } from "./chart.js";

const STATUS_KIND = { succeeded: "good", failed: "bad", cancelled: "", running: "info", queued: "info" };

function curves(run) {
  // Lists of numbers in the run's metrics (loss curves) are drawn; scalars are listed.
  const charts = [];
  const scalars = [];
  for (const [key, value] of Object.entries(run.metrics || {})) {
    if (Array.isArray(value) && value.every((v) => typeof v === "number") && value.length > 1) {
      const start = new Date(run.started_at || run.created_at).getTime();
      charts.push(lineChart({ title: `${key} (per step)`,
        points: value.map((v, i) => ({ t: new Date(start + i * 1000), v })),
        format: (v) => num(v, 2), xFormat: (t) => `step ${Math.round((t - start) / 1000) + 1}` }));
    } else if (typeof value === "number" || typeof value === "string") {
      scalars.push(h("dt", { text: key }), h("dd", { text: typeof value === "number" ? num(value, 3) : value }));
    }
  }
  return [scalars.length ? h("dl", { class: "meta" }, ...scalars) : null,
    charts.length ? h("div", { class: "charts" }, ...charts) : null];
}

export async function renderRuns() {
  const isAdmin = currentOperator().role === "admin";
  const runs = await api("GET", "/v1/operator/runs");
  const reload = () => window.dispatchEvent(new Event("chatdistill:refresh"));
  const cancel = (run) => async () => {
    const ok = await confirmAction({ title: "Cancel this run?", confirmLabel: "Cancel run", danger: true,
      message: `The run started ${when(run.created_at)} stops at its next checkpoint.` });
    if (ok === null) return;
    try {
      await api("POST", `/v1/operator/runs/${run.id}/cancel`);
      flash("Run cancelled.");
      reload();
    } catch (err) {
      flash(err.message, "error");
    }
  };
  const cards = runs.map((run) => {
    const active = run.status === "queued" || run.status === "running";
    const pctDone = Math.round(run.progress * 100);
    return h("article", { class: "card run", "aria-label": `Run ${when(run.created_at)}` },
      h("div", { class: "msg-head" },
        h("h2", { text: `Run of ${when(run.created_at)}` }),
        badge(run.status, STATUS_KIND[run.status]), badge(`trigger: ${run.trigger}`)),
      h("div", { class: "progress-row" },
        h("label", { for: `p-${run.id}`, text: `Stage: ${run.stage || "not started"}` }),
        h("progress", { id: `p-${run.id}`, max: 100, value: pctDone }),
        h("span", { text: `${pctDone}%` })),
      h("p", { class: "muted", text: `Started ${when(run.started_at)} \u00b7 finished ${when(run.finished_at)}` +
        (run.candidate_version_id ? ` \u00b7 candidate ${run.candidate_version_id}` : "") }),
      run.error && h("p", { class: "error", text: run.error }),
      ...curves(run),
      isAdmin && active && h("button", { type: "button", class: "danger small", text: "Cancel run",
        onclick: cancel(run) }),
    );
  });
  return h("section", { "aria-labelledby": "page-title" },
    h("h1", { id: "page-title", text: "Distillation runs" }),
    cards.length ? cards : h("p", { class: "empty", text: "No distillation run has been started yet." }),
  );
}
