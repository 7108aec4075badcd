// One handed-off conversation beside the inbox list: its messages, live (the operator events
// stream, resumed from the last seq shown), the customer's typing, a reply box, and the
// actions the state allows: claim, resolve, hand back to the bot, and (admins) assign.

import { api, currentOperator } from "./api.js";
import { flash, h, when } from "./dom.js";
import { openStream, whileShown } from "./live.js";
import { reasonLabel, stateBadge } from "./handoff_labels.js";

const WHO = { customer: "Customer", assistant: "Assistant", agent: "Agent", system: "Notice" };
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 4000;

function messageItem(m) {
  return h("li", { class: `msg ${m.role}`, "data-seq": m.seq },
    h("div", { class: "msg-head" },
      h("strong", { text: WHO[m.role] || m.role }),
      h("span", { class: "muted", text: when(m.created_at) })),
    h("p", { class: "msg-text", text: m.text }));
}

export async function renderPane(id, item, reloadList) {
  const base = `/v1/operator/conversations/${encodeURIComponent(id)}`;
  const me = currentOperator();
  const isAdmin = me.role === "admin";
  const [detail, operators] = await Promise.all([
    api("GET", base),
    isAdmin ? api("GET", "/v1/admin/operators").catch(() => []) : Promise.resolve([]),
  ]);
  const info = {
    state: (item && item.state) || detail.state || (detail.handed_off ? "waiting" : "bot"),
    assigned: item ? item.assigned_operator_id : detail.assigned_operator_id || null,
    assignedEmail: item ? item.assigned_operator_email : null,
    reason: (item && item.handoff_reason) || detail.handoff_reason,
    since: (item && item.waiting_since) || detail.handed_off_at,
  };

  // --- messages, deduplicated and kept in seq order ------------------------------------------
  const seen = new Map();
  const log = h("ol", { class: "messages" });
  // A focusable scroll box, so the keyboard can scroll it too; new messages are announced.
  const logBox = h("div", { class: "log-box", role: "log", "aria-live": "polite", "aria-label": "Messages",
    tabindex: 0 }, log);
  function addMessage(m) {
    if (seen.has(m.seq)) return;
    const node = messageItem(m);
    const later = [...seen.keys()].filter((s) => s > m.seq).sort((a, b) => a - b)[0];
    seen.set(m.seq, node);
    if (later === undefined) log.append(node);
    else log.insertBefore(node, seen.get(later));
    if (m.role === "customer") typingNote.textContent = "";
    logBox.scrollTop = logBox.scrollHeight;
  }
  const typingNote = h("p", { class: "typing-note", role: "status", "aria-live": "polite" });
  let typingTimer = 0;
  detail.messages.forEach(addMessage);

  // --- header and actions ----------------------------------------------------------------------
  const heading = h("h2", { id: "pane-title", tabindex: -1, text: "Conversation" });
  const stateSlot = h("span", { class: "state" });
  const facts = h("dl", { class: "meta" });
  const actions = h("div", { class: "pane-actions", role: "group", "aria-label": "Conversation actions" });
  const hint = h("p", { class: "muted hint" });
  const text = h("textarea", { id: "reply-text", rows: 3, maxlength: 2000, required: true });
  const sendButton = h("button", { type: "submit", class: "primary", text: "Send reply" });
  const form = h("form", { class: "reply-form", "aria-labelledby": "reply-label" },
    h("label", { id: "reply-label", for: "reply-text", text: "Reply to the customer" }), text,
    h("div", { class: "actions" }, sendButton));

  const mineOrAdmin = () => info.assigned === me.id || isAdmin;
  const canReply = () => info.state === "agent" && mineOrAdmin();

  async function act(path, body, done) {
    try {
      const out = await api("POST", `${base}/${path}`, body);
      info.state = out.state;
      info.assigned = out.assigned_operator_id;
      info.assignedEmail = (operators.find((o) => o.id === out.assigned_operator_id) ||
        (out.assigned_operator_id === me.id ? me : {})).email || null;
      if (out.message) addMessage(out.message);
      paint();
      flash(done);
      reloadList().catch(() => {});
    } catch (err) {
      flash(err.message, "error");
    }
  }

  function button(label, kind, onclick) {
    return h("button", { type: "button", class: `${kind} small`, text: label, onclick });
  }

  function assignControl() {
    const select = h("select", { id: "assign-to" },
      h("option", { value: "", text: "Choose an operator" }),
      ...operators.filter((o) => o.active).map((o) =>
        h("option", { value: o.id, text: `${o.name} (${o.email})`, selected: o.id === info.assigned })));
    return h("form", { class: "assign", onsubmit: (event) => {
      event.preventDefault();
      if (select.value) act("assign", { operator_id: select.value }, "Conversation assigned.");
    } },
    h("label", { for: "assign-to", text: "Assign to" }), select,
    h("button", { type: "submit", class: "secondary small", text: "Assign" }));
  }

  function paint() {
    stateSlot.replaceChildren(stateBadge(info.state));
    facts.replaceChildren(
      h("dt", { text: "Reason" }), h("dd", { text: reasonLabel(info.reason) }),
      h("dt", { text: "Handed off" }), h("dd", { text: when(info.since) }),
      h("dt", { text: "Assigned to" }),
      h("dd", { text: info.assigned ? (info.assigned === me.id ? "you" : info.assignedEmail || "another operator") : "nobody" }),
    );
    const open = info.state === "waiting" || info.state === "agent";
    const claimable = info.state === "waiting" || (info.state === "agent" && info.assigned !== me.id && isAdmin);
    actions.replaceChildren(...[
      claimable && button("Claim", "primary", () => act("claim", undefined, "You have this conversation now.")),
      open && mineOrAdmin() && button("Resolve", "secondary", () => act("resolve", undefined, "Conversation resolved.")),
      open && mineOrAdmin() && button("Hand back to bot", "secondary",
        () => act("hand-back", undefined, "The bot answers this conversation again.")),
      isAdmin && open && operators.length > 0 && assignControl(),
    ].filter(Boolean));
    const replying = canReply();
    form.hidden = !replying;
    hint.textContent = replying ? "" : info.state === "waiting" ? "Claim the conversation to reply."
      : info.state === "agent" ? "Another operator has this conversation." : "";
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    sendButton.disabled = true;
    try {
      addMessage(await api("POST", `${base}/messages`, { text: value }));
      text.value = "";
    } catch (err) {
      flash(err.message, "error");
    } finally {
      sendButton.disabled = false;
      text.focus();
    }
  });
  let lastTyping = 0;
  text.addEventListener("input", () => {
    if (!canReply() || Date.now() - lastTyping < TYPING_EVERY_MS) return;
    lastTyping = Date.now();
    api("POST", `${base}/typing`).catch(() => {});
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // --- live -------------------------------------------------------------------------------------
  const lastSeq = detail.messages.reduce((max, m) => Math.max(max, m.seq), 0);
  whileShown(openStream(`${base}/events`, (name, data) => {
    if (name === "message") addMessage(data);
    else if (name === "state" && data.state !== info.state) {
      info.state = data.state;
      paint();
      reloadList().catch(() => {});
    } else if (name === "typing" && data.role === "customer") {
      typingNote.textContent = "The customer is typing\u2026";
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => { typingNote.textContent = ""; }, TYPING_SHOWN_MS);
    }
  }, { lastId: lastSeq }));
  whileShown({ stop: () => clearTimeout(typingTimer) });

  paint();
  setTimeout(() => { if (heading.isConnected) heading.focus(); }, 0);
  return {
    node: h("section", { class: "pane card", "aria-labelledby": "pane-title" },
      h("div", { class: "pane-head" }, heading, stateSlot,
        h("a", { href: `#/conversations/${id}`, text: "Full details" })),
      facts, actions, hint, logBox, typingNote, form),
    sync(fresh) {
      if (!fresh) return;
      info.state = fresh.state;
      info.assigned = fresh.assigned_operator_id;
      info.assignedEmail = fresh.assigned_operator_email;
      paint();
    },
  };
}
