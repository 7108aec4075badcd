/*
 * chatdistill chat widget: one script tag adds a launcher and a chat panel to any page.
 *
 *   <script src="https://chat.example.com/widget.js" defer
 *           data-api="https://chat.example.com" data-title="Acme support"
 *           data-greeting="Hi! How can we help?" data-primary-color="#1f5fbf"
 *           data-text-color="#ffffff"></script>
 *
 * It talks to the widget API with the conversation's own token (kept in localStorage with the
 * conversation id, so a reload resumes the chat), streams replies over
 * POST .../messages/stream (Server-Sent Events read with fetch; falls back to the plain
 * POST .../messages when the server has no stream endpoint), lets the customer rate each reply,
 * ask for a human, and end the chat with a short CSAT question.
 * Once a human has the conversation (waiting, with an agent, resolved; after a reload too) it
 * listens on GET .../events (SSE over fetch, resumed with ?after=<last seq shown> and reconnected
 * with backoff) for agent replies, notices, state changes and the agent's typing; messages are
 * deduplicated by their seq, so a reconnect neither loses nor repeats one.
 * Everything renders inside a shadow root, so the host page's CSS and the widget's do not mix.
 * Customer and bot text is only ever set with textContent.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__chatdistillWidget) return;
  window.__chatdistillWidget = true;

  var data = script.dataset;
  var API = (data.api || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var TITLE = data.title || "Chat with us";
  var GREETING = data.greeting || "Hi! How can we help you today?";
  var PRIMARY = data.primaryColor || "#1f5fbf";
  var ON_PRIMARY = data.textColor || "#ffffff";
  var STORE_KEY = "chatdistill:" + API;
  var OPEN_KEY = STORE_KEY + ":open";
  var HANDOFF_ASKED = "You asked for a person: a human agent has been asked to join. Please stay here.";
  var HANDOFF_BOT = "This needs a person: a human agent has been asked to join. Please stay here.";
  var HANDOFF_RESUMED = "A human agent has been asked to join this conversation. Please stay here.";
  var WITH_AGENT = "You are chatting with a human agent.";
  var TYPING_SHOWN_MS = 4000;
  var THUMB = "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06" +
    "L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05" +
    "c.09-.23.14-.47.14-.73v-2z";


  // --- building blocks --------------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === false || value === null || value === undefined) return;
      if (name === "text") node.textContent = value;
      else if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function thumbIcon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", THUMB);
    svg.appendChild(path);
    return svg;
  }

  function loadSession() {
    try {
      var saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
      return saved && saved.conversation_id && saved.token ? saved : null;
    } catch (e) {
      return null;
    }
  }

  function saveSession(value) {
    try {
      if (value) localStorage.setItem(STORE_KEY, JSON.stringify(value));
      else localStorage.removeItem(STORE_KEY);
    } catch (e) { /* storage disabled: the chat still works until the page is left */ }
  }

  // --- the DOM ----------------------------------------------------------------------------------

  var hostNode = el("div", { "data-chatdistill": "widget" });
  var root = hostNode.attachShadow({ mode: "open" });
  hostNode.style.setProperty("--cd-primary", PRIMARY);
  hostNode.style.setProperty("--cd-on-primary", ON_PRIMARY);
  // The styles come from beside the script; the widget shows once they have loaded.
  var styles = el("link", { rel: "stylesheet", href: new URL("widget.css", script.src).href });
  hostNode.style.visibility = "hidden";
  styles.addEventListener("load", function () { hostNode.style.visibility = ""; });
  styles.addEventListener("error", function () { hostNode.style.visibility = ""; });
  root.appendChild(styles);

  var launcher = el("button", {
    type: "button", class: "launcher", "aria-expanded": "false", "aria-controls": "cd-panel",
    text: TITLE,
  });
  var log = el("ol", { "aria-label": "Messages" });
  var logBox = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" },
    [log]);
  var notice = el("p", { class: "notice", role: "status", hidden: true });
  var alertBox = el("p", { class: "alert", role: "alert" });
  var typingNote = el("p", { class: "agent-typing", role: "status", "aria-live": "polite" });
  var announcer = el("div", { class: "sr", "aria-live": "polite" });
  var input = el("textarea", {
    id: "cd-input", rows: "1", maxlength: "2000", autocomplete: "off", placeholder: "Type a message",
  });
  var sendButton = el("button", { type: "submit", class: "primary", text: "Send" });
  var composer = el("form", { class: "composer", "aria-label": "Send a message" }, [
    el("label", { for: "cd-input", class: "sr", text: "Your message" }), input, sendButton,
  ]);
  var humanButton = el("button", { type: "button", text: "Talk to a person" });
  var endButton = el("button", { type: "button", text: "End chat" });
  var closeButton = el("button", {
    type: "button", class: "close", "aria-label": "Minimise chat", text: "\u00d7",
  });
  var endArea = el("div", { class: "end", hidden: true });
  var panel = el("div", {
    id: "cd-panel", class: "panel", role: "dialog", "aria-labelledby": "cd-title", hidden: true,
  }, [
    el("header", {}, [
      el("div", { class: "title" }, [el("h2", { id: "cd-title", text: TITLE }), closeButton]),
      el("div", { class: "toolbar", role: "toolbar", "aria-label": "Chat actions" }, [humanButton, endButton]),
    ]),
    notice, logBox, typingNote, alertBox, composer, endArea, announcer,
  ]);
  root.appendChild(launcher);
  root.appendChild(panel);

  // --- state ------------------------------------------------------------------------------------

  var session = loadSession(); // {conversation_id, token} or null
  var streaming = true; // false once the server answered 404 on the stream endpoint
  var busy = false;
  var loaded = false;
  var convState = "bot"; // bot | waiting | agent | resolved
  var seen = {}; // seq -> list item, for the messages shown
  var lastSeq = 0;
  var live = null; // the open events stream: {stop}
  var deferred = []; // live messages that arrived while a send was in flight

  function headers() {
    return { "Content-Type": "application/json", Authorization: "Bearer " + session.token };
  }

  function url(path) {
    return API + "/v1/widget/conversations/" + session.conversation_id + path;
  }

  function showError(text) {
    alertBox.textContent = text || "";
  }

  function errorText(body, fallback) {
    return (body && body.error && body.error.message) || fallback;
  }

  function announce(text) {
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function scrollDown() {
    logBox.scrollTop = logBox.scrollHeight;
  }

  // --- messages ---------------------------------------------------------------------------------

  var WHO = { customer: "You said", assistant: "Assistant said", agent: "Agent", system: "Notice" };

  function addBubble(role, text, seq) {
    var bubble = el("div", { class: "bubble", text: text });
    var item = el("li", { class: role }, [el("span", { class: "who", text: WHO[role] + ": " }), bubble]);
    log.appendChild(item);
    if (seq) remember(seq, item);
    scrollDown();
    return { item: item, bubble: bubble };
  }

  function remember(seq, item) {
    seen[seq] = item;
    item.setAttribute("data-seq", String(seq));
    if (seq > lastSeq) lastSeq = seq;
  }

  function addRating(item, messageId, current) {
    var group = el("div", { class: "rate", role: "group", "aria-label": "Was this reply helpful?" });
    var up = el("button", { type: "button", class: "up", "aria-label": "Helpful", "aria-pressed": "false" },
      [thumbIcon()]);
    var down = el("button", {
      type: "button", class: "down", "aria-label": "Not helpful", "aria-pressed": "false",
    }, [thumbIcon()]);
    function mark(value) {
      up.setAttribute("aria-pressed", String(value === "up"));
      down.setAttribute("aria-pressed", String(value === "down"));
    }
    function rate(value) {
      var before = up.getAttribute("aria-pressed") === "true" ? "up" :
        down.getAttribute("aria-pressed") === "true" ? "down" : null;
      mark(value);
      fetch(url("/messages/" + messageId + "/rating"), {
        method: "POST", headers: headers(), body: JSON.stringify({ thumbs: value }),
      }).then(function (res) {
        if (!res.ok) throw new Error("rating failed");
        announce("Thanks for your feedback.");
      }).catch(function () {
        mark(before);
        showError("Your rating could not be saved. Please try again.");
      });
    }
    up.addEventListener("click", function () { rate("up"); });
    down.addEventListener("click", function () { rate("down"); });
    mark(current);
    group.appendChild(el("span", { "aria-hidden": "true", text: "Helpful?" }));
    group.appendChild(up);
    group.appendChild(down);
    item.appendChild(group);
  }

  function showHandoff(byCustomer) {
    if (!notice.hidden) return; // already shown: keep saying why it happened
    notice.textContent = byCustomer === null ? HANDOFF_RESUMED : byCustomer ? HANDOFF_ASKED : HANDOFF_BOT;
    notice.hidden = false;
    humanButton.disabled = true;
    humanButton.textContent = "Agent requested";
  }

  function renderStored(conversation) {
    var thumbs = {};
    conversation.ratings.forEach(function (r) { if (r.message_id && r.thumbs) thumbs[r.message_id] = r.thumbs; });
    conversation.messages.forEach(function (m) {
      var added = addBubble(WHO[m.role] ? m.role : "system", m.text, m.seq);
      if (m.role === "assistant") addRating(added.item, m.id, thumbs[m.id] || null);
    });
    if (conversation.handed_off) showHandoff(null);
    applyState(conversation.state || (conversation.handed_off ? "waiting" : "bot"));
  }

  function greet() {
    addBubble("assistant", GREETING);
  }

  function resume() {
    if (loaded) return Promise.resolve();
    loaded = true;
    greet();
    if (!session) return Promise.resolve();
    return fetch(url(""), { headers: headers() }).then(function (res) {
      if (res.status === 401 || res.status === 403 || res.status === 404) {
        saveSession(null); // expired or unknown: the next message starts a new conversation
        session = null;
        return;
      }
      if (!res.ok) throw new Error("load failed");
      return res.json().then(function (conversation) {
        if (conversation.status === "closed") { saveSession(null); session = null; return; }
        renderStored(conversation);
      });
    }).catch(function () {
      showError("The earlier messages could not be loaded. Check your connection.");
    });
  }

  function ensureConversation() {
    if (session) return Promise.resolve();
    return fetch(API + "/v1/widget/conversations", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ site: location.hostname || null, locale: navigator.language || null }),
    }).then(function (res) {
      return res.json().then(function (body) {
        if (!res.ok) throw new Error(errorText(body, "The chat could not be started."));
        session = { conversation_id: body.conversation_id, token: body.token };
        saveSession(session);
      });
    });
  }

  // --- sending: streamed, or the plain endpoint as a fallback ------------------------------------

  function finishReply(state, reply, handoff) {
    if (state.customer && state.stored) remember(state.stored.seq, state.customer.item);
    if (reply) {
      if (!state.view) state.view = addBubble("assistant", "");
      state.view.bubble.classList.remove("typing");
      state.view.bubble.textContent = reply.text;
      state.view.item.removeAttribute("aria-busy");
      if (reply.seq) remember(reply.seq, state.view.item);
      addRating(state.view.item, reply.id, null);
      announce("Assistant: " + reply.text);
    } else if (state.view) {
      state.view.item.remove();
    }
    if (handoff) {
      showHandoff(false);
      if (convState === "bot") convState = "waiting";
      openLive();
    }
  }

  function failReply(state, body) {
    if (state.view) state.view.item.remove();
    var code = body && (body.code || (body.error && body.error.code));
    if (code === "no_model_deployed") {
      addBubble("system", "The assistant is not available right now. Your message was saved; " +
        "ask for a person or try again later.");
    } else {
      showError(errorText(body, (body && body.detail) || "Something went wrong. Please try again."));
    }
  }

  function parseEvents(buffer, onEvent) {
    var parts = buffer.split(/\r?\n\r?\n/);
    var rest = parts.pop();
    parts.forEach(function (block) {
      var name = "message";
      var lines = [];
      block.split(/\r?\n/).forEach(function (line) {
        if (line.indexOf("event:") === 0) name = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) lines.push(line.slice(5).replace(/^ /, ""));
      });
      if (lines.length) onEvent(name, JSON.parse(lines.join("\n")));
    });
    return rest;
  }

  function sendStreamed(text, state) {
    return fetch(url("/messages/stream"), {
      method: "POST",
      headers: Object.assign(headers(), { Accept: "text/event-stream" }),
      body: JSON.stringify({ text: text }),
    }).then(function (res) {
      if (res.status === 404 || res.status === 405) {
        streaming = false;
        return sendPlain(text, state);
      }
      if (!res.ok || !res.body) {
        return res.json().catch(function () { return null; }).then(function (body) { failReply(state, body); });
      }
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function onEvent(name, payload) {
        if (name === "message") {
          state.stored = payload;
        } else if (name === "token") {
          if (!state.view) {
            state.view = addBubble("assistant", "");
            state.view.item.setAttribute("aria-busy", "true");
          }
          state.view.bubble.classList.remove("typing");
          state.view.bubble.textContent += payload.text;
          scrollDown();
        } else if (name === "reply") {
          state.done = true;
          finishReply(state, payload.reply, payload.handoff);
        } else if (name === "error") {
          state.done = true;
          failReply(state, payload);
        }
      }
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            parseEvents(buffer + "\n\n", onEvent);
            if (!state.done) failReply(state, { detail: "The reply was cut off. Please try again." });
            return;
          }
          buffer = parseEvents(buffer + decoder.decode(chunk.value, { stream: true }), onEvent);
          return pump();
        });
      }
      return pump();
    });
  }

  function sendPlain(text, state) {
    return fetch(url("/messages"), {
      method: "POST", headers: headers(), body: JSON.stringify({ text: text }),
    }).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (body) {
        if (res.ok) {
          state.stored = body.message;
          finishReply(state, body.reply, body.handoff);
        } else {
          failReply(state, body);
        }
      });
    });
  }

  function send(text) {
    if (busy) return;
    busy = true;
    sendButton.disabled = true;
    showError("");
    var customer = addBubble("customer", text);
    // While a human has the conversation the bot stays quiet: no "assistant is typing" bubble.
    var quiet = convState === "waiting" || convState === "agent";
    var state = { view: quiet ? null : addBubble("assistant", ""), done: false, customer: customer };
    if (state.view) {
      state.view.bubble.classList.add("typing");
      state.view.bubble.setAttribute("aria-label", "The assistant is typing");
      state.view.item.setAttribute("aria-busy", "true");
    }
    ensureConversation().then(function () {
      return streaming ? sendStreamed(text, state) : sendPlain(text, state);
    }).catch(function (err) {
      failReply(state, { detail: (err && err.message) || "The message could not be sent." });
    }).then(function () {
      if (state.view) state.view.bubble.removeAttribute("aria-label");
      busy = false;
      sendButton.disabled = false;
      input.focus();
      deferred.splice(0).forEach(showMessage);
    });
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  // --- live: agent replies, notices, state changes and typing, once a human has the chat ------

  function showMessage(m) {
    if (!m || !m.seq || seen[m.seq]) return;
    if (busy) { deferred.push(m); return; } // the send in flight may be showing it already
    if (m.role === "customer") {
      // The customer's own message, sent from this page but not yet matched to its seq.
      var mine = Array.prototype.filter.call(log.querySelectorAll("li.customer:not([data-seq])"),
        function (item) { return item.querySelector(".bubble").textContent === m.text; })[0];
      if (mine) { remember(m.seq, mine); return; }
    }
    var added = addBubble(WHO[m.role] ? m.role : "system", m.text, m.seq);
    if (m.role === "assistant") addRating(added.item, m.id, null);
    if (m.role === "agent") typingNote.textContent = "";
  }

  function applyState(state) {
    convState = state;
    if (state === "waiting") {
      showHandoff(null);
    } else if (state === "agent") {
      notice.textContent = WITH_AGENT;
      notice.hidden = false;
      humanButton.disabled = true;
      humanButton.textContent = "Agent requested";
    } else {
      notice.hidden = true;
      notice.textContent = "";
      humanButton.disabled = false;
      humanButton.textContent = "Talk to a person";
      typingNote.textContent = "";
    }
    if (state === "bot") closeLive();
    else openLive();
  }

  var typingTimer = 0;
  function showTyping() {
    typingNote.textContent = "An agent is typing\u2026";
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typingNote.textContent = ""; }, TYPING_SHOWN_MS);
  }

  function onLive(name, payload) {
    if (name === "message") showMessage(payload);
    else if (name === "state" && payload.state !== convState) applyState(payload.state);
    else if (name === "typing") showTyping();
  }

  // One stream per conversation; a drop reconnects (1 s, 2 s, ... up to 15 s) from the last seq.
  function openLive() {
    if (live || !session) return;
    var id = session.conversation_id;
    var auth = "Bearer " + session.token;
    var stopped = false;
    var controller = null;
    var delay = 1000;
    function connect() {
      if (stopped) return;
      controller = typeof AbortController === "function" ? new AbortController() : null;
      fetch(API + "/v1/widget/conversations/" + id + "/events?after=" + lastSeq, {
        headers: { Authorization: auth, Accept: "text/event-stream" },
        signal: controller ? controller.signal : undefined, cache: "no-store",
      }).then(function (res) {
        if (res.status === 401 || res.status === 403 || res.status === 404) {
          handle.stop(); // gone for good: expired, or a server without live events
          return;
        }
        if (!res.ok || !res.body) throw new Error("events failed");
        var reader = res.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done || stopped) return;
            buffer = parseEvents(buffer + decoder.decode(chunk.value, { stream: true }), function (name, payload) {
              delay = 1000;
              if (!stopped) onLive(name, payload);
            });
            return pump();
          });
        }
        return pump();
      }).catch(function () { /* dropped: reconnect below */ }).then(function () {
        if (stopped) return;
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15000);
      });
    }
    var handle = {
      stop: function () {
        stopped = true;
        if (controller) controller.abort();
        if (live === handle) live = null;
      },
    };
    live = handle;
    connect();
  }

  function closeLive() {
    if (live) live.stop();
    clearTimeout(typingTimer);
  }

  // --- asking for a human, ending with CSAT -------------------------------------------------------

  humanButton.addEventListener("click", function () {
    showError("");
    ensureConversation().then(function () {
      return fetch(url("/handoff"), { method: "POST", headers: headers(), body: "{}" });
    }).then(function (res) {
      if (!res.ok) throw new Error("handoff failed");
      showHandoff(true);
      if (convState === "bot" || convState === "resolved") convState = "waiting";
      return res.json().then(function (body) {
        if (body && body.message) showMessage(body.message);
      }, function () { /* the notice also arrives on the live stream */ });
    }).then(function () {
      openLive();
      input.focus();
    }).catch(function () {
      showError("We could not reach an agent just now. Please try again.");
    });
  });

  function csatForm() {
    var scale = el("div", { class: "scale" });
    var labels = ["Very unhappy", "Unhappy", "Neutral", "Happy", "Very happy"];
    for (var i = 1; i <= 5; i++) {
      scale.appendChild(el("label", { title: labels[i - 1] }, [
        el("input", { type: "radio", name: "cd-csat", value: String(i), "aria-label": i + " - " + labels[i - 1] }),
        el("span", { "aria-hidden": "true", text: String(i) }),
      ]));
    }
    var comment = el("input", { type: "text", id: "cd-comment", maxlength: "1000" });
    var submit = el("button", { type: "submit", class: "primary", text: "Send rating" });
    var skip = el("button", { type: "button", class: "secondary", text: "Skip" });
    var form = el("form", { "aria-labelledby": "cd-csat-q" }, [
      el("fieldset", {}, [
        el("legend", { id: "cd-csat-q", text: "How satisfied are you with this chat?" }),
        scale,
        el("div", { class: "hint", "aria-hidden": "true" }, [
          el("span", { text: "1 = very unhappy" }), el("span", { text: "5 = very happy" }),
        ]),
      ]),
      el("label", { for: "cd-comment", text: "Anything to add? (optional)" }),
      comment,
      el("div", { class: "row" }, [submit, skip]),
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var picked = form.querySelector("input[name=cd-csat]:checked");
      if (!picked) { showError("Pick a number from 1 to 5, or skip."); return; }
      showError("");
      submit.disabled = true;
      var body = { score: Number(picked.value) };
      if (comment.value.trim()) body.comment = comment.value.trim();
      fetch(url("/csat"), { method: "POST", headers: headers(), body: JSON.stringify(body) })
        .then(function (res) {
          if (!res.ok) throw new Error("csat failed");
          finishChat("Thank you for your feedback!");
        }).catch(function () {
          submit.disabled = false;
          showError("Your rating could not be sent. Please try again.");
        });
    });
    skip.addEventListener("click", function () { finishChat("Thanks for chatting with us."); });
    return form;
  }

  function finishChat(thanks) {
    closeLive();
    saveSession(null);
    session = null;
    var again = el("button", { type: "button", class: "primary", text: "Start a new chat" });
    again.addEventListener("click", restart);
    endArea.replaceChildren(el("p", { role: "status", text: thanks }), again);
    again.focus();
  }

  function restart() {
    closeLive();
    seen = {};
    lastSeq = 0;
    convState = "bot";
    typingNote.textContent = "";
    log.replaceChildren();
    notice.hidden = true;
    notice.textContent = "";
    humanButton.disabled = false;
    humanButton.textContent = "Talk to a person";
    endButton.disabled = false;
    endArea.hidden = true;
    endArea.replaceChildren();
    composer.hidden = false;
    greet();
    input.focus();
  }

  endButton.addEventListener("click", function () {
    showError("");
    composer.hidden = true;
    endButton.disabled = true;
    endArea.hidden = false;
    if (!session) { finishChat("Thanks for stopping by."); return; }
    endArea.replaceChildren(csatForm());
    endArea.querySelector("input[name=cd-csat]").focus();
  });

  // --- opening and closing ------------------------------------------------------------------------

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.textContent = open ? "Close chat" : TITLE;
    try { sessionStorage.setItem(OPEN_KEY, open ? "1" : ""); } catch (e) { /* ignore */ }
    if (open) {
      resume().then(function () { if (!composer.hidden) input.focus(); scrollDown(); });
    } else {
      launcher.focus();
    }
  }

  launcher.addEventListener("click", function () { setOpen(panel.hidden); });
  closeButton.addEventListener("click", function () { setOpen(false); });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") setOpen(false);
  });

  function mount() {
    document.body.appendChild(hostNode);
    var wasOpen = false;
    try { wasOpen = sessionStorage.getItem(OPEN_KEY) === "1"; } catch (e) { /* ignore */ }
    if (wasOpen) {
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      launcher.textContent = "Close chat";
      resume();
    }
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
