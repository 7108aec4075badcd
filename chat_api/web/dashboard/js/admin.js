// Admin: operators (create, activate/deactivate, role), API keys (create, shown once; revoke)
// and the audit log.

import { api, currentOperator } from "./api.js";
import { badge, confirmAction, flash, h, when } from "./dom.js";

const reload = () => window.dispatchEvent(new Event("chatdistill:refresh"));

async function run(action, message) {
  try {
    await action();
    flash(message);
    reload();
  } catch (err) {
    flash(err.message, "error");
  }
}

function operatorsSection(operators) {
  const me = currentOperator();
  const rows = operators.map((o) => h("tr", {},
    h("th", { scope: "row", text: o.name }),
    h("td", { text: o.email }),
    h("td", { text: o.role }),
    h("td", {}, o.active ? badge("active", "good") : badge("inactive", "bad")),
    h("td", { text: when(o.last_login_at) }),
    h("td", {}, o.id === me.id ? h("span", { class: "muted", text: "you" }) : [
      h("button", { type: "button", class: "secondary small", text: o.active ? "Deactivate" : "Activate",
        "aria-label": `${o.active ? "Deactivate" : "Activate"} ${o.email}`,
        onclick: () => run(() => api("PATCH", `/v1/admin/operators/${o.id}`, { active: !o.active }),
          `${o.email} ${o.active ? "deactivated" : "activated"}.`) }),
      " ",
      h("button", { type: "button", class: "secondary small",
        text: o.role === "admin" ? "Make operator" : "Make admin",
        "aria-label": `${o.role === "admin" ? "Make operator" : "Make admin"}: ${o.email}`,
        onclick: () => run(() => api("PATCH", `/v1/admin/operators/${o.id}`,
          { role: o.role === "admin" ? "operator" : "admin" }), `${o.email}'s role changed.`) }),
    ]),
  ));
  const form = h("form", { class: "filters card", "aria-labelledby": "new-op" },
    h("h3", { id: "new-op", text: "Add an operator" }),
    h("div", { class: "field" }, h("label", { for: "op-name", text: "Name" }),
      h("input", { id: "op-name", name: "name", required: true, maxlength: 200 })),
    h("div", { class: "field" }, h("label", { for: "op-email", text: "E-mail" }),
      h("input", { id: "op-email", name: "email", type: "email", required: true })),
    h("div", { class: "field" }, h("label", { for: "op-password", text: "Initial password" }),
      h("input", { id: "op-password", name: "password", type: "password", required: true,
        minlength: 8, autocomplete: "new-password" })),
    h("div", { class: "field" }, h("label", { for: "op-role", text: "Role" }),
      h("select", { id: "op-role", name: "role" }, h("option", { value: "operator", text: "operator" }),
        h("option", { value: "admin", text: "admin" }))),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary", text: "Add" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(form).entries());
    run(() => api("POST", "/v1/admin/operators", body), `${body.email} added.`);
  });
  return h("section", { "aria-labelledby": "ops" },
    h("h2", { id: "ops", text: "Operators" }),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Operators table" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Name", "E-mail", "Role", "Status", "Last login", "Actions"]
        .map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...rows))),
    form);
}

// A newly created key, shown on the next render only (the list then includes it).
let createdKey = null;

function keysSection(keys) {
  const secret = h("div", { role: "status" });
  if (createdKey) {
    secret.append(h("div", { class: "card secret" },
      h("p", { text: `Key for ${createdKey.name}. Copy it now: it is not shown again.` }),
      h("code", { text: createdKey.key })));
    createdKey = null;
  }
  const rows = keys.map((k) => h("tr", {},
    h("th", { scope: "row", text: k.name }),
    h("td", {}, h("code", { text: `${k.prefix}\u2026` })),
    h("td", { text: when(k.created_at) }),
    h("td", { text: when(k.last_used_at) }),
    h("td", {}, k.revoked_at ? badge(`revoked ${when(k.revoked_at)}`, "bad") :
      h("button", { type: "button", class: "danger small", text: "Revoke", "aria-label": `Revoke ${k.name}`,
        onclick: async () => {
          const ok = await confirmAction({ title: `Revoke ${k.name}?`, confirmLabel: "Revoke", danger: true,
            message: "Clients using this key are refused from now on. This cannot be undone." });
          if (ok !== null) run(() => api("DELETE", `/v1/admin/api-keys/${k.id}`), `${k.name} revoked.`);
        } })),
  ));
  const name = h("input", { id: "key-name", required: true, maxlength: 100 });
  const form = h("form", { class: "filters card", "aria-labelledby": "new-key" },
    h("h3", { id: "new-key", text: "Create an API key" }),
    h("div", { class: "field" }, h("label", { for: "key-name", text: "Name" }), name),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary", text: "Create" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      createdKey = await api("POST", "/v1/admin/api-keys", { name: name.value.trim() });
      reload();
    } catch (err) {
      flash(err.message, "error");
    }
  });
  return h("section", { "aria-labelledby": "keys" },
    h("h2", { id: "keys", text: "API keys" }),
    keys.length ? h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "API keys table" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Name", "Prefix", "Created", "Last used", ""]
        .map((t, i) => h("th", { scope: "col", text: t || (i === 4 ? "Actions" : "") })))),
      h("tbody", {}, ...rows))) : h("p", { class: "empty", text: "No API keys yet." }),
    form, secret);
}

function auditSection(entries, operators) {
  const emails = new Map(operators.map((o) => [o.id, o.email]));
  const actor = (e) => (e.actor_type === "operator" && emails.get(e.actor_id)) ||
    `${e.actor_type}${e.actor_id ? ` ${e.actor_id.slice(0, 8)}` : ""}`;
  return h("section", { "aria-labelledby": "audit" },
    h("h2", { id: "audit", text: "Audit log (latest 50)" }),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Audit log table" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["When", "Actor", "Action", "Target", "Details"]
        .map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...entries.map((e) => h("tr", {},
        h("td", { text: when(e.at) }),
        h("td", { text: actor(e) }),
        h("td", {}, h("code", { text: e.action })),
        h("td", { text: `${e.target_type || ""} ${e.target_id || ""}`.trim() }),
        h("td", { class: "clip", title: JSON.stringify(e.details) },
          h("code", { text: JSON.stringify(e.details) }))))))));
}

export async function renderAdmin() {
  const [operators, keys, audit] = await Promise.all([
    api("GET", "/v1/admin/operators"),
    api("GET", "/v1/admin/api-keys"),
    api("GET", "/v1/admin/audit?limit=50"),
  ]);
  return h("section", { "aria-labelledby": "page-title" },
    h("h1", { id: "page-title", text: "Administration" }),
    operatorsSection(operators), keysSection(keys), auditSection(audit, operators));
}
