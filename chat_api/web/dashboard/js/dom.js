// Building DOM nodes without innerHTML: every text goes through textContent.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "value") node.value = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function pct(value) {
  return value === null || value === undefined ? "\u2014" : `${(value * 100).toFixed(1)}%`;
}

export function ms(value) {
  return value === null || value === undefined ? "\u2014" : `${value.toFixed(0)} ms`;
}

export function num(value, digits = 2) {
  return value === null || value === undefined ? "\u2014" : Number(value).toFixed(digits);
}

export function when(iso) {
  if (!iso) return "\u2014";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}`.trim(), text });
}

let dialogSeq = 0;

// An accessible modal confirmation (a native <dialog>). With `reason`, the operator must say
// why (kept in the audit log). Resolves to the reason ("" without one) or null when cancelled.
export function confirmAction({ title, message, confirmLabel, reason = false, danger = false }) {
  return new Promise((resolve) => {
    const id = `confirm-${++dialogSeq}`;
    const reasonInput = reason
      ? h("input", { id: `${id}-reason`, type: "text", required: true, maxlength: 500 })
      : null;
    const dialog = h("dialog", { "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-msg` },
      h("form", { method: "dialog" },
        h("h2", { id: `${id}-title`, text: title }),
        h("p", { id: `${id}-msg`, text: message }),
        reasonInput && h("label", { for: `${id}-reason`, text: "Reason (kept in the audit log)" }),
        reasonInput,
        h("div", { class: "actions" },
          h("button", { type: "button", class: "secondary", value: "cancel", text: "Cancel",
            onclick: () => dialog.close("cancel") }),
          h("button", { type: "submit", class: danger ? "danger" : "primary", value: "ok",
            text: confirmLabel }),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok";
      dialog.remove();
      resolve(ok ? (reasonInput ? reasonInput.value.trim() : "") : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    (reasonInput || dialog.querySelector("button[value=ok]")).focus();
  });
}

let flashTimer = 0;

// A status line that screen readers announce; it clears itself after a few seconds.
export function flash(text, kind = "ok") {
  const region = document.getElementById("flash");
  region.className = `flash ${kind}`;
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 30);
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { region.textContent = ""; }, 6000);
}
