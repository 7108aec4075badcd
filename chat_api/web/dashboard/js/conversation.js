// One conversation: every message with its intent, confidence, model data and ratings; an
// operator corrects a reply, relabels an intent, or makes a reply (its correction, if it has
// one) the approved answer the serving guard sends for that intent, in place.

import { api } from "./api.js";
import { badge, flash, h, ms, pct, when } from "./dom.js";

function ratingBadges(ratings) {
  return ratings.map((r) => [
    r.thumbs && badge(r.thumbs === "up" ? "Thumbs up" : "Thumbs down", r.thumbs === "up" ? "good" : "bad"),
    r.csat && badge(`CSAT ${r.csat}/5`, r.csat <= 2 ? "bad" : "good"),
    r.comment && h("q", { text: r.comment }),
  ]);
}

function correctionList(corrections) {
  if (!corrections.length) return null;
  return h("ul", { class: "corrections", "aria-label": "Corrections" }, ...corrections.map((c) =>
    h("li", {},
      h("span", { class: "muted", text: `${when(c.created_at)}: ` }),
      c.corrected_text && [h("strong", { text: "Corrected reply: " }), h("span", { text: c.corrected_text })],
      c.corrected_intent && [" ", badge(`Intent: ${c.corrected_intent}`, "info")],
      c.exclude_from_training && [" ", badge("Excluded from training", "warn")],
    )));
}

function correctForm(message, onSaved) {
  const id = `fix-${message.id}`;
  const text = h("textarea", { id, rows: 3, required: true, maxlength: 10000, value: message.text });
  const exclude = h("input", { type: "checkbox", id: `${id}-ex` });
  const form = h("form", { class: "inline-form", hidden: true },
    h("label", { for: id, text: "Corrected reply" }), text,
    h("label", { class: "check" }, exclude, " Keep this message out of training"),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", text: "Save correction" }),
      h("button", { type: "button", class: "secondary", text: "Cancel",
        onclick: () => { form.hidden = true; } })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", `/v1/operator/messages/${message.id}/correction`, {
        corrected_text: text.value.trim(), exclude_from_training: exclude.checked,
      });
      flash("Correction saved.");
      onSaved();
    } catch (err) {
      flash(err.message, "error");
    }
  });
  return form;
}

const OUT_OF_SCOPE = "oos"; // the label a run treats as out-of-scope (distill_worker: OOS)

function intentControls(message, intents, onSaved) {
  const id = `intent-${message.id}`;
  const input = h("input", { id, type: "text", list: "known-intents", value: message.intent || "",
    required: true, maxlength: 120 });
  async function label(intent) {
    try {
      await api("POST", `/v1/operator/messages/${message.id}/intent`, { intent });
      flash(`Intent labelled ${intent}.`);
      onSaved();
    } catch (err) {
      flash(err.message, "error");
    }
  }
  const form = h("form", { class: "intent-form" },
    h("label", { for: id, text: "Intent" }), input,
    h("button", { type: "submit", class: "secondary small", text: "Relabel" }),
    message.intent && h("button", { type: "button", class: "secondary small",
      text: "Confirm predicted", onclick: () => label(message.intent) }),
    // The next run trains on it as an out-of-scope row and calibrates its handoff with it.
    message.intent !== OUT_OF_SCOPE && h("button", { type: "button", class: "secondary small",
      text: "Not something we handle", onclick: () => label(OUT_OF_SCOPE) }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) label(input.value.trim());
  });
  return form;
}

const SENT = { generated: "Generated", approved: "Approved answer", handoff: "Handoff" };

async function approve(message, onSaved) {
  try {
    const answer = await api("PUT", `/v1/operator/approved-answers/${encodeURIComponent(message.intent)}`,
      { message_id: message.id });
    flash(`Approved answer for ${answer.intent} saved.`);
    onSaved();
  } catch (err) {
    flash(err.message, "error");
  }
}

function messageCard(message, ratings, corrections, intents, reload) {
  const who = { customer: "Customer", assistant: "Assistant", agent: "Agent", system: "System" }[message.role] ||
    message.role;
  const meta = message.role === "assistant" ? h("dl", { class: "meta" },
    h("dt", { text: "Intent" }), h("dd", { text: message.intent || "\u2014" }),
    h("dt", { text: "Confidence" }), h("dd", { text: pct(message.intent_confidence) }),
    h("dt", { text: "Model" }), h("dd", { text: message.model_version || "\u2014" }),
    h("dt", { text: "Latency" }), h("dd", { text: ms(message.latency_ms) }),
    h("dt", { text: "Sent" }), h("dd", { text: SENT[message.reply_source] || "\u2014" }),
  ) : null;
  const fix = message.role === "assistant" ? correctForm(message, reload) : null;
  const tools = message.role === "assistant" ? h("div", { class: "tools" },
    h("button", { type: "button", class: "secondary small", text: "Correct reply",
      "aria-label": `Correct reply ${message.seq}`,
      onclick: () => { fix.hidden = false; fix.querySelector("textarea").focus(); } }),
    message.intent && h("button", { type: "button", class: "secondary small",
      text: "Use as approved answer", "aria-label": `Use as approved answer for ${message.intent} (reply ${message.seq})`,
      onclick: () => approve(message, reload) }),
    intentControls(message, intents, reload),
  ) : null;
  return h("li", { class: `msg ${message.role}`, "data-message-id": message.id },
    h("div", { class: "msg-head" },
      h("strong", { text: who }), h("span", { class: "muted", text: when(message.created_at) }),
      message.handoff && badge("Handoff", "warn"), ratingBadges(ratings)),
    h("p", { class: "msg-text", text: message.text }),
    meta, correctionList(corrections), tools, fix,
  );
}

export async function renderConversation(id) {
  const c = await api("GET", `/v1/operator/conversations/${encodeURIComponent(id)}`);
  const reload = () => window.dispatchEvent(new Event("chatdistill:refresh"));
  const intents = new Set();
  c.messages.forEach((m) => m.intent && intents.add(m.intent));
  c.corrections.forEach((k) => k.corrected_intent && intents.add(k.corrected_intent));
  const whole = c.ratings.filter((r) => !r.message_id);
  const byMessage = (list, m) => list.filter((x) => x.message_id === m.id);
  return h("section", { "aria-labelledby": "page-title" },
    h("p", {}, h("a", { href: "#/conversations", text: "\u2190 All conversations" })),
    h("h1", { id: "page-title", text: `Conversation of ${when(c.created_at)}` }),
    h("div", { class: "card summary" },
      h("dl", { class: "meta" },
        h("dt", { text: "Status" }), h("dd", { text: c.status }),
        h("dt", { text: "Handed off" }), h("dd", { text: c.handed_off ? `yes (${c.handoff_reason || "no reason"})` : "no" }),
        h("dt", { text: "Site" }), h("dd", { text: c.site || "\u2014" }),
        h("dt", { text: "Locale" }), h("dd", { text: c.locale || "\u2014" }),
        h("dt", { text: "Conversation rating" }),
        h("dd", {}, whole.length ? ratingBadges(whole) : "\u2014"),
      )),
    h("datalist", { id: "known-intents" }, ...[...intents].sort().map((i) => h("option", { value: i }))),
    h("ol", { class: "messages", "aria-label": "Messages" }, ...c.messages.map((m) =>
      messageCard(m, byMessage(c.ratings, m), byMessage(c.corrections, m), intents, reload))),
  );
}
