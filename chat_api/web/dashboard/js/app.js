// The dashboard shell: login, navigation (with the handoff queue's waiting count), and a hash
// router (#/inbox, #/conversations, #/metrics, ...).

import { currentOperator, login, logout, token, whenUnauthorized } from "./api.js";
import { h } from "./dom.js";
import { renderAdmin } from "./admin.js";
import { renderConversation } from "./conversation.js";
import { renderConversations } from "./conversations.js";
import { renderInbox } from "./inbox.js";
import { leaveScreen } from "./live.js";
import { renderMetrics } from "./metrics.js";
import { renderModels } from "./models.js";
import { renderRuns } from "./runs.js";
import { repaintQueue, setTitle, startQueue, stopQueue } from "./queue.js";

const PAGES = [
  { path: "inbox", label: "Inbox" },
  { path: "conversations", label: "Conversations" },
  { path: "metrics", label: "Metrics" },
  { path: "models", label: "Models" },
  { path: "runs", label: "Runs" },
  { path: "admin", label: "Admin", admin: true },
];

const main = document.getElementById("main");

function route() {
  const [path, search = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, id] = path.split("/");
  return { page: page || "conversations", id, params: new URLSearchParams(search) };
}

function renderNav(active) {
  const operator = currentOperator();
  const nav = document.getElementById("nav");
  nav.replaceChildren(...PAGES.filter((p) => !p.admin || operator.role === "admin").map((p) =>
    h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === active ? "page" : false },
      p.label,
      p.path === "inbox" && h("span", { class: "count", id: "inbox-count", hidden: true },
        " ", h("span", { class: "n" }), h("span", { class: "sr", text: " waiting" }))))));
  document.getElementById("who").textContent = `${operator.name} (${operator.role})`;
  document.getElementById("top").hidden = false;
  repaintQueue();
  startQueue();
}

function renderLogin(message) {
  leaveScreen();
  stopQueue();
  document.getElementById("top").hidden = true;
  document.title = "Log in \u2013 chatdistill";
  const error = h("p", { class: "error", role: "alert", text: message || "" });
  const email = h("input", { id: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const form = h("form", { class: "card login", "aria-labelledby": "login-title" },
    h("p", { class: "brand-line", text: "chatdistill dashboard" }),
    h("h1", { id: "login-title", text: "Operator login" }),
    h("label", { for: "email", text: "E-mail" }), email,
    h("label", { for: "password", text: "Password" }), password,
    error,
    h("button", { type: "submit", class: "primary", text: "Log in" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await login(email.value, password.value);
      if (!location.hash || location.hash === "#/login") location.hash = "#/conversations";
      else show();
    } catch (err) {
      error.textContent = err.message;
      password.focus();
    }
  });
  main.replaceChildren(form);
  email.focus();
}

let renderSeq = 0;

async function show() {
  if (!token()) {
    renderLogin();
    return;
  }
  const { page, id, params } = route();
  const known = PAGES.find((p) => p.path === page);
  const current = known ? page : "conversations";
  renderNav(current);
  const seq = ++renderSeq;
  leaveScreen();
  main.replaceChildren(h("p", { class: "muted", text: "Loading\u2026" }));
  const renderers = {
    inbox: () => renderInbox(id, params),
    conversations: () => (id ? renderConversation(id) : renderConversations(params)),
    metrics: () => renderMetrics(params),
    models: () => renderModels(),
    runs: () => renderRuns(),
    admin: () => renderAdmin(),
  };
  try {
    const view = await renderers[current]();
    if (seq !== renderSeq) return; // the operator navigated on meanwhile
    main.replaceChildren(view);
    const heading = main.querySelector("h1");
    setTitle(`${heading ? heading.textContent : "Dashboard"} \u2013 chatdistill`);
    main.focus({ preventScroll: true });
  } catch (err) {
    if (seq !== renderSeq || err.status === 401) return;
    main.replaceChildren(h("div", { class: "card" },
      h("h1", { text: "Something went wrong" }),
      h("p", { class: "error", role: "alert", text: err.message })));
  }
}

whenUnauthorized(() => renderLogin("Your session has ended. Please log in again."));
document.getElementById("logout").addEventListener("click", async () => {
  await logout().catch(() => {});
  location.hash = "#/login";
  renderLogin();
});
window.addEventListener("hashchange", show);
window.addEventListener("chatdistill:refresh", show);
show();
