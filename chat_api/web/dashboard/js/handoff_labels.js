// How the inbox names a conversation's state, its handoff reason and a waiting time.

import { badge } from "./dom.js";

export const REASONS = {
  customer_request: "Customer asked",
  low_confidence: "Low confidence",
  out_of_scope: "Out of scope",
};

export const STATES = {
  bot: ["With the bot", ""], waiting: ["Waiting", "warn"], agent: ["With an agent", "info"],
  resolved: ["Resolved", "good"],
};

export function reasonLabel(reason) {
  return REASONS[reason] || reason || "No reason given";
}

export function stateBadge(state) {
  const [label, kind] = STATES[state] || [state, ""];
  return badge(label, kind);
}

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return "under a minute";
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  return hours < 24 ? `${hours} h ${m % 60} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}
