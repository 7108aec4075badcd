// The conversation list: filters (rating, handed off, intent, date, model version) and search.

import { api, query } from "./api.js";
import { badge, h, when } from "./dom.js";

const PAGE_SIZE = 25;

const RATINGS = [
  ["", "Any rating"], ["down", "Thumbs down"], ["low_csat", "Low CSAT (1\u20132)"],
  ["up", "Thumbs up"], ["rated", "Rated"], ["unrated", "Not rated"],
];

function field(id, label, control) {
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id, text: label }), control);
}

function select(name, options, current) {
  return h("select", { name }, ...options.map(([value, label]) =>
    h("option", { value, text: label, selected: value === (current || "") })));
}

function dayStart(value) {
  return value ? `${value}T00:00:00Z` : null;
}

function dayAfter(value) {
  if (!value) return null;
  const d = new Date(`${value}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString();
}

export async function renderConversations(params) {
  const offset = Number(params.get("offset") || 0);
  const [page, models] = await Promise.all([
    api("GET", `/v1/operator/conversations${query({
      q: params.get("q"), rating: params.get("rating"), intent: params.get("intent"),
      handed_off: params.get("handed_off"), model_version: params.get("model_version"),
      since: dayStart(params.get("from")), until: dayAfter(params.get("to")),
      limit: PAGE_SIZE, offset,
    })}`),
    api("GET", "/v1/operator/models"),
  ]);

  const form = h("form", { class: "filters card", role: "search", "aria-label": "Filter conversations" },
    field("f-q", "Search text", h("input", { type: "search", name: "q", value: params.get("q") || "" })),
    field("f-rating", "Rating", select("rating", RATINGS, params.get("rating"))),
    field("f-handoff", "Handed off", select("handed_off",
      [["", "Any"], ["true", "Handed off"], ["false", "Not handed off"]], params.get("handed_off"))),
    field("f-intent", "Intent", h("input", { type: "text", name: "intent", value: params.get("intent") || "" })),
    field("f-model", "Model version", select("model_version",
      [["", "Any version"], ...models.map((m) => [m.id, m.id])], params.get("model_version"))),
    field("f-from", "From", h("input", { type: "date", name: "from", value: params.get("from") || "" })),
    field("f-to", "To", h("input", { type: "date", name: "to", value: params.get("to") || "" })),
    h("div", { class: "field buttons" },
      h("button", { type: "submit", class: "primary", text: "Apply" }),
      h("a", { href: "#/conversations", class: "button secondary", text: "Reset" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    location.hash = `#/conversations${query(data)}`;
  });

  const rows = page.items.map((c) => h("tr", {},
    h("td", { "data-label": "Started" }, h("a", { href: `#/conversations/${c.id}`,
      text: when(c.created_at), "aria-label": `Open conversation from ${when(c.created_at)}` })),
    h("td", { class: "clip", "data-label": "Last message" }, c.last_message || "\u2014"),
    h("td", { "data-label": "Intents" }, c.intents.length ? c.intents.join(", ") : "\u2014"),
    h("td", { "data-label": "Model" }, c.model_versions.join(", ") || "\u2014"),
    h("td", { class: "num", "data-label": "Messages" }, String(c.message_count)),
    h("td", { "data-label": "Status" }, c.handed_off ? badge("Handed off", "warn") : badge(c.status)),
  ));
  const table = page.items.length
    ? h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Conversations table" }, h("table", { class: "stack" },
        h("caption", { class: "sr", text: "Conversations, newest first" }),
        h("thead", {}, h("tr", {}, ...["Started", "Last message", "Intents", "Model", "Messages", "Status"]
          .map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...rows)))
    : h("p", { class: "empty", text: "No conversations match these filters." });

  const pager = [];
  const base = Object.fromEntries(params.entries());
  if (offset > 0) {
    pager.push(h("a", { class: "button secondary", text: "Newer",
      href: `#/conversations${query({ ...base, offset: Math.max(0, offset - PAGE_SIZE) })}` }));
  }
  if (offset + PAGE_SIZE < page.total) {
    pager.push(h("a", { class: "button secondary", text: "Older",
      href: `#/conversations${query({ ...base, offset: offset + PAGE_SIZE })}` }));
  }
  const shown = page.items.length
    ? `${offset + 1}\u2013${offset + page.items.length} of ${page.total}` : "0 of 0";
  return h("section", { "aria-labelledby": "page-title" },
    h("h1", { id: "page-title", text: "Conversations" }),
    form,
    h("p", { class: "muted", role: "status", text: `Showing ${shown}` }),
    table,
    h("nav", { class: "pager", "aria-label": "Pages" }, ...pager),
  );
}
