// The inbox: conversations handed to a human, in four views (waiting, oldest first; mine; all
// open ones; resolved), each with its waiting time and why it was handed off. The list is
// fetched again whenever the queue changes (`chatdistill:inbox`, from queue.js); the selected
// conversation opens beside it (inbox_pane.js).

import { api, query } from "./api.js";
import { badge, h } from "./dom.js";
import { duration, reasonLabel, stateBadge } from "./handoff_labels.js";
import { whileShown } from "./live.js";
import { renderPane } from "./inbox_pane.js";

const VIEWS = [
  { id: "waiting", label: "Waiting", title: "Waiting for an agent", empty: "Nobody is waiting. Well done." },
  { id: "mine", label: "Mine", title: "Assigned to me", empty: "No conversation is assigned to you." },
  { id: "all", label: "All open", title: "All open handoffs", empty: "No open handoffs." },
  { id: "resolved", label: "Resolved", title: "Resolved", empty: "Nothing resolved yet." },
];

function itemView(item, view, selected, fetchedAt) {
  const waited = h("span", { class: "waited" });
  const tick = () => {
    const waiting = item.state === "waiting" && item.waiting_seconds !== null;
    const seconds = item.waiting_seconds + (Date.now() - fetchedAt) / 1000;
    waited.textContent = waiting ? `waiting ${duration(seconds)}` : "";
  };
  tick();
  const node = h("li", { class: "queue-item", "data-conversation-id": item.conversation_id },
    h("a", {
      href: `#/inbox/${item.conversation_id}${query({ view })}`,
      "aria-current": selected ? "true" : false,
    },
    h("span", { class: "line" }, stateBadge(item.state), badge(reasonLabel(item.handoff_reason), "plain"), waited),
    h("span", { class: "last", text: item.last_customer_text || "(no message from the customer yet)" }),
    h("span", { class: "line muted" },
      item.assigned_operator_email ? `Assigned to ${item.assigned_operator_email}` : "Unassigned",
      ` \u00b7 ${item.message_count} messages`)));
  return [node, tick];
}

export async function renderInbox(selectedId, params) {
  const view = VIEWS.find((v) => v.id === params.get("view")) || VIEWS[0];
  const list = h("ul", { class: "queue-list", "aria-labelledby": "queue-title" });
  const status = h("p", { class: "muted queue-status", role: "status" });
  let items = [];
  let ticks = [];

  async function load() {
    const page = await api("GET", `/v1/operator/inbox${query({ view: view.id, limit: 50 })}`);
    const fetchedAt = Date.now();
    items = page.items;
    ticks = [];
    list.replaceChildren(...items.map((item) => {
      const [node, tick] = itemView(item, view.id, item.conversation_id === selectedId, fetchedAt);
      ticks.push(tick);
      return node;
    }));
    status.textContent = items.length ? `${items.length} conversation${items.length === 1 ? "" : "s"}` : view.empty;
    paintCounts(page);
    if (pane) pane.sync(items.find((i) => i.conversation_id === selectedId) || null);
    return page;
  }

  const counters = {};
  function paintCounts(c) {
    counters.waiting.textContent = String(c.waiting_count);
    counters.mine.textContent = String(c.mine_count);
  }
  const tabs = h("nav", { class: "views", "aria-label": "Inbox views" }, h("ul", {}, ...VIEWS.map((v) => {
    const count = v.id === "waiting" || v.id === "mine" ? h("span", { class: "badge" }) : null;
    if (count) counters[v.id] = count;
    return h("li", {}, h("a", {
      href: `#/inbox${query({ view: v.id })}`, "aria-current": v.id === view.id ? "page" : false,
    }, v.label, count && " ", count));
  })));

  let pane = null;
  await load();
  pane = selectedId
    ? await renderPane(selectedId, items.find((i) => i.conversation_id === selectedId) || null, () => load())
    : null;

  let pending = 0;
  const onQueue = () => {
    clearTimeout(pending);
    pending = setTimeout(() => { load().catch(() => {}); }, 150);
  };
  window.addEventListener("chatdistill:inbox", onQueue);
  const clock = setInterval(() => ticks.forEach((t) => t()), 30000);
  whileShown({ stop: () => {
    window.removeEventListener("chatdistill:inbox", onQueue);
    clearInterval(clock);
    clearTimeout(pending);
  } });

  return h("section", { "aria-labelledby": "page-title", class: "inbox" },
    h("h1", { id: "page-title", text: "Inbox" }),
    tabs,
    h("div", { class: `inbox-layout${pane ? " with-pane" : ""}` },
      h("section", { class: "queue", "aria-labelledby": "queue-title" },
        h("h2", { id: "queue-title", text: view.title }), status, list),
      pane ? pane.node : h("p", { class: "empty pane-empty", text: "Pick a conversation to see it here." })),
  );
}
