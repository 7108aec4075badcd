// The handoff queue's counts, live for as long as an operator is logged in: one inbox event
// stream feeds the Inbox badge in the navigation, the "(n) " prefix of the tab title, and a
// `chatdistill:inbox` window event the inbox screen refetches its list on.

import { openStream } from "./live.js";

let stream = null;
let counts = { waiting_count: 0, mine_count: 0 };
let baseTitle = "chatdistill";

function paint() {
  const n = counts.waiting_count;
  document.title = n > 0 ? `(${n}) ${baseTitle}` : baseTitle;
  const badge = document.getElementById("inbox-count");
  if (badge) {
    badge.hidden = n === 0;
    badge.querySelector(".n").textContent = String(n);
  }
}

export function queueCounts() {
  return counts;
}

export function startQueue() {
  if (stream) return;
  stream = openStream("/v1/operator/inbox/events", (name, data) => {
    if (name !== "inbox") return;
    counts = data;
    paint();
    window.dispatchEvent(new CustomEvent("chatdistill:inbox", { detail: data }));
  }, { onGone: () => { stream = null; } });
}

export function stopQueue() {
  if (stream) stream.stop();
  stream = null;
  counts = { waiting_count: 0, mine_count: 0 };
}

// The page's own title; the waiting count is put in front of it.
export function setTitle(title) {
  baseTitle = title;
  paint();
}

// Re-apply the counts after the navigation was drawn again.
export function repaintQueue() {
  paint();
}
