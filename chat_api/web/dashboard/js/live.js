// Server-sent events read with fetch (EventSource cannot send the bearer token). A stream
// reconnects after a drop, with backoff, and resumes from the last event id it saw
// (`Last-Event-ID`), so the server sends only what was missed. Streams opened by a screen are
// registered with `whileShown` and closed when the operator leaves that screen.

import { token } from "./api.js";

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 15000;

// Split complete events off the buffer; returns the unfinished rest.
export function parseEvents(buffer, onEvent) {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message";
    let id = null;
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      else if (line.startsWith("id:")) id = line.slice(3).trim();
    }
    if (data.length) onEvent(name, JSON.parse(data.join("\n")), id);
  }
  return rest;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Open `path` as an event stream; `onEvent(name, data)` gets every event. `lastId` resumes
// after that id. Returns `{ stop() }`. A 401/403/404 ends the stream for good (`onGone`).
export function openStream(path, onEvent, { lastId = null, onGone = () => {} } = {}) {
  let stopped = false;
  let controller = null;
  let last = lastId;
  let delay = FIRST_DELAY_MS;

  async function readAll(res) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done || stopped) return;
      buffer = parseEvents(buffer + decoder.decode(chunk.value, { stream: true }), (name, data, id) => {
        if (id !== null) last = id;
        delay = FIRST_DELAY_MS; // it delivers: the next drop retries quickly again
        if (!stopped) onEvent(name, data);
      });
    }
  }

  async function run() {
    while (!stopped) {
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token()}` };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      controller = new AbortController();
      try {
        const res = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
        if ([401, 403, 404].includes(res.status)) {
          stopped = true;
          onGone(res.status);
          return;
        }
        if (res.ok && res.body) await readAll(res);
      } catch (err) {
        // A dropped connection or an aborted one: retry below unless stopped.
      }
      if (stopped) return;
      await sleep(delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }

  run();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
    },
  };
}

const shown = [];

// Keep `handle.stop()` for when the operator leaves the current screen.
export function whileShown(handle) {
  shown.push(handle);
  return handle;
}

export function leaveScreen() {
  for (const handle of shown.splice(0)) handle.stop();
}
