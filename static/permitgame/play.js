/* PermitGame play page: the countdown, the connection banner, reconnection and focus.
 *
 * No rule of the game lives here: every number comes from the server's fragments. The
 * countdown counts down from the seconds left that the server computed from its absolute
 * deadline when it rendered #phase (so a phone's wrong clock does not matter); the server's
 * next update replaces it. */
(function () {
  "use strict";

  var countdownTimer = null;
  var socket = null;          // the ws extension's socket wrapper (has reconnect())
  var current = null;         // the WebSocket now open: a close of an older one is old news
  var everOpen = false;
  var pendingForm = null;     // the form whose command awaits its #flash answer
  var pendingFocus = null;    // the control that had the focus when it was sent (now disabled)
  var pendingTimer = null;
  var leaving = false;        // the page is being left: a closed socket is expected

  // ------------------------------------------------------------------ countdown

  function formatClock(seconds) {
    var whole = Math.max(0, Math.ceil(seconds));
    var minutes = Math.floor(whole / 60);
    var rest = whole % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function startCountdown() {
    if (countdownTimer) { clearInterval(countdownTimer); countdownTimer = null; }
    var element = document.querySelector("#phase .countdown[data-seconds-left]");
    if (!element) { return; }
    var value = element.querySelector(".countdown-value");
    // Red only when a move is due; the lobby and the results just count down calmly.
    var urgent = ["bidding", "compliance", "audit"].indexOf(element.closest("#phase").dataset.phase) >= 0;
    var end = performance.now() + parseFloat(element.dataset.secondsLeft) * 1000;
    function tick() {
      var left = (end - performance.now()) / 1000;
      value.textContent = formatClock(left);
      element.classList.toggle("is-urgent", urgent && left <= 10);
      if (left <= 0) { clearInterval(countdownTimer); countdownTimer = null; }
    }
    tick();
    countdownTimer = setInterval(tick, 250);
  }

  // ------------------------------------------------------------------ connection

  function showConnection(state, text) {
    var banner = document.getElementById("connection");
    if (!banner) { return; }
    banner.classList.toggle("is-online", state === "online");
    banner.classList.toggle("is-offline", state === "offline");
    banner.querySelector(".connection-text").textContent = text;
  }

  // Reconnect soon and often: a class cannot wait a minute for a phone to come back.
  function reconnectDelay(retryCount) {
    var ceiling = Math.min(4000, 500 * Math.pow(2, retryCount));
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  // Close codes the ws extension retries by itself; 4003 means the seat is unknown; 4012 that
  // the seat changed role in the lobby (the page reloads to show the new role).
  var RETRIED = [1006, 1011, 1012, 1013];
  var UNKNOWN_SEAT = 4003;
  var ROLE_CHANGED = 4012;

  // ------------------------------------------------------------------ sequence numbers

  // Every message of the socket carries #seq (docs/protocol.md, "Delivery"): a snapshot sets
  // the page's number, an event is the next number, progress repeats the page's number. A
  // number skipped means a lost event: ask for the whole screen again ({"type": "sync"}).
  var lastSeq = null;

  function readSeq() {
    var marker = document.getElementById("seq");
    if (!marker) { return null; }
    return { seq: parseInt(marker.dataset.seq, 10), kind: marker.dataset.kind };
  }

  function checkSeq(wrapper) {
    var mark = readSeq();
    if (!mark || isNaN(mark.seq)) { return; }
    var gap = lastSeq !== null && mark.kind !== "snapshot" &&
      (mark.kind === "event" ? mark.seq > lastSeq + 1 : mark.seq > lastSeq);
    if (mark.kind === "snapshot" || lastSeq === null || mark.seq > lastSeq) { lastSeq = mark.seq; }
    if (gap && wrapper && wrapper.send) {
      lastSeq = null;  // the snapshot that answers sets it again
      wrapper.send(JSON.stringify({ type: "sync" }));
    }
  }
  window.permitgameCheckSeq = checkSeq;  // for tests: run the check on a message swapped in
  // Ask for the whole screen again (what a gap does; also for tests).
  window.permitgameSync = function () {
    if (socket && socket.send) { socket.send(JSON.stringify({ type: "sync" })); }
  };

  // ------------------------------------------------------------------ flash and forms

  function clearFlash() {
    var flash = document.getElementById("flash");
    if (flash) { flash.className = "flash"; flash.setAttribute("role", "status"); flash.textContent = ""; }
  }

  function settlePending() {
    if (pendingTimer) { clearTimeout(pendingTimer); pendingTimer = null; }
    if (!pendingForm) { return; }
    var form = pendingForm;
    var focused = pendingFocus;
    pendingForm = null;
    pendingFocus = null;
    form.querySelectorAll("button").forEach(function (button) {
      if (document.body.contains(button)) { button.disabled = false; }
    });
    form.removeAttribute("aria-busy");
    // Disabling the pressed button took the keyboard focus away: give it back.
    if (focused && document.body.contains(focused) && focusLost()) { focused.focus(); }
    return form;
  }

  function markInvalid(form, invalid) {
    var input = form && form.querySelector("input[type=text]");
    if (!input) { return null; }
    if (invalid) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
    return input;
  }

  // ------------------------------------------------------------------ drafts

  // What a player typed or ticked but has not sent yet (a bid, the audit boxes) survives an
  // update that redraws the action (someone joins, a pause) and a reload of the page. A draft
  // belongs to one seat, round and phase, so it never fills in the next round's form.
  var DRAFT_PREFIX = "permitgame-draft:";

  function draftKey() {
    var phase = document.getElementById("phase");
    var play = document.querySelector(".play");
    if (!phase || !play) { return null; }
    return DRAFT_PREFIX + window.location.pathname + ":" + play.dataset.seat + ":" +
      phase.dataset.round + ":" + phase.dataset.phase;
  }

  function storage() {
    try { return window.sessionStorage; } catch (error) { return null; }
  }

  function saveDraft() {
    var key = draftKey();
    var store = storage();
    if (!key || !store) { return; }
    var draft = {};
    var input = document.getElementById("bid-amount");
    if (input) { draft.bid = input.value; }
    var form = document.getElementById("audit-form");
    if (form) {
      draft.labs = Array.prototype.map.call(
        form.querySelectorAll("input[name=labs]:checked"), function (box) { return box.value; });
    }
    try { store.setItem(key, JSON.stringify(draft)); } catch (error) { /* storage full or off */ }
  }

  function restoreDraft() {
    var key = draftKey();
    var store = storage();
    if (!key || !store) { return; }
    var draft = null;
    try { draft = JSON.parse(store.getItem(key) || "null"); } catch (error) { draft = null; }
    if (!draft) { return; }
    var input = document.getElementById("bid-amount");
    if (input && !input.value && draft.bid) { input.value = draft.bid; }
    var form = document.getElementById("audit-form");
    if (form && draft.labs) {
      form.querySelectorAll("input[name=labs]").forEach(function (box) {
        box.checked = draft.labs.indexOf(box.value) >= 0;
      });
    }
  }

  function forgetOtherDrafts() {
    var key = draftKey();
    var store = storage();
    if (!store) { return; }
    for (var i = store.length - 1; i >= 0; i -= 1) {
      var name = store.key(i);
      if (name && name.indexOf(DRAFT_PREFIX) === 0 && name !== key) { store.removeItem(name); }
    }
  }

  // ------------------------------------------------------------------ swaps

  // The live fragments are morphed into the page (hx-swap-oob="morph", idiomorph): an element
  // an update keeps stays the same node, so the keyboard focus, the caret in the bid field and
  // the text typed into it stay as they were. What the server's HTML cannot know is put back
  // after a swap: a draft typed into a field without the focus, the ticked audit boxes, the
  // audit list's filter and order.
  var swapped = {};           // the ids of the fragments the message being handled morphed
  var lastPhase = null;
  var focusInAction = false;  // was the keyboard focus in the action when the message came?

  function beforeMessage() {
    swapped = {};
    var action = document.getElementById("lab-action") || document.getElementById("governor-action");
    var active = document.activeElement;
    // A pressed button is disabled while its command is on its way, which drops the focus.
    var sentFromAction = Boolean(action && pendingForm && action.contains(pendingForm));
    focusInAction = Boolean(action && (action.contains(active) || (sentFromAction && focusLost())));
  }

  function focusLost() {
    var active = document.activeElement;
    return !active || active === document.body || !document.body.contains(active);
  }

  function afterActionSwap(action) {
    applyTableView();
    restoreDraft();
    updateAuditCount();
    // The control that had the keyboard is gone (a sent form became its answer): the keyboard
    // goes on to the new next step.
    if (focusInAction && focusLost()) {
      var next = action.querySelector(".next");
      if (next) { next.focus({ preventScroll: true }); }
    }
  }

  function afterPhaseSwap(phase) {
    var key = phase.dataset.status + "/" + phase.dataset.round + "/" + phase.dataset.phase;
    if (lastPhase !== null && key !== lastPhase) {
      clearFlash();
      forgetOtherDrafts();
      showAction();
    }
    lastPhase = key;
    startCountdown();
  }

  // A new phase: bring the action card back into view (a phone scrolled down to the results
  // would not see that a move is due) and, when the keyboard was nowhere, onto its control.
  function showAction() {
    var action = document.getElementById("lab-action") || document.getElementById("governor-action");
    if (!action) { return; }
    var rect = action.getBoundingClientRect();
    if (rect.top < 0 || rect.top > window.innerHeight - 40) {
      action.scrollIntoView({ block: "start" });
    }
    var next = action.querySelector(".next");
    if (next && !next.disabled && focusLost()) { next.focus({ preventScroll: true }); }
  }

  function afterFlashSwap(flash) {
    var form = settlePending();
    var error = flash.classList.contains("flash-error");
    var input = markInvalid(form, error);
    if (error && input) { input.focus(); input.select(); }
  }

  function updateAuditCount() {
    var form = document.getElementById("audit-form");
    var note = document.getElementById("audit-count");
    if (!form || !note) { return; }
    // The cap is the server's number; the server refuses a set over it with its own message.
    var cap = form.dataset.maxAudits ? parseInt(form.dataset.maxAudits, 10) : null;
    var ticked = form.querySelectorAll("input[name=labs]:checked").length;
    var over = cap !== null && ticked > cap;
    var labs = function (n) { return n + " lab" + (n === 1 ? "" : "s"); };
    if (ticked === 0) {
      note.textContent = "Leave every box empty to audit no one.";
    } else if (over) {
      note.textContent = labs(ticked) + " ticked, but at most " + cap + " may be audited: untick " +
        (ticked - cap) + ".";
    } else {
      note.textContent = labs(ticked) + " ticked" + (cap !== null ? " of at most " + cap : "") + ".";
    }
    note.classList.toggle("is-over", over);
  }

  // ------------------------------------------------------------------ a long list of labs

  // In a lecture hall the governor's audit list has hundreds of rows: it can be narrowed to the
  // warnings or the labs without a permit, and ordered by them. The choice is kept across the
  // updates that redraw the form; ticked boxes stay ticked (and are sent) while hidden.
  var tableView = { filter: "all", sort: "lab" };

  function rowMatches(row, filter) {
    var warning = row.dataset.signal === "1";
    var permit = row.dataset.permit === "1";
    if (filter === "warning") { return warning; }
    if (filter === "nopermit") { return !permit; }
    if (filter === "warning-nopermit") { return warning && !permit; }
    return true;
  }

  function rowKey(row, sort) {
    var lab = parseInt(row.dataset.playerId, 10);
    if (sort === "signal") { return [row.dataset.signal === "1" ? 0 : 1, lab]; }
    if (sort === "permit") { return [row.dataset.permit === "1" ? 1 : 0, lab]; }
    return [0, lab];
  }

  function applyTableView() {
    document.querySelectorAll("[data-table-tools]").forEach(function (tools) {
      var scope = tools.closest("form") || tools.parentNode;
      var body = scope.querySelector("table.labs-table tbody");
      if (!body) { return; }
      var filter = tools.querySelector("[data-filter]");
      var sort = tools.querySelector("[data-sort]");
      if (filter) { filter.value = tableView.filter; }
      if (sort) { sort.value = tableView.sort; }
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var ka = rowKey(a, tableView.sort), kb = rowKey(b, tableView.sort);
        return ka[0] - kb[0] || ka[1] - kb[1];
      });
      var shown = 0;
      var fragment = document.createDocumentFragment();
      rows.forEach(function (row) {
        row.hidden = !rowMatches(row, tableView.filter);
        if (!row.hidden) { shown += 1; }
        fragment.appendChild(row);
      });
      body.appendChild(fragment);
      var note = tools.querySelector("[data-shown]");
      if (note) {
        note.textContent = shown === rows.length ? rows.length + " labs" :
          "Showing " + shown + " of " + rows.length + " labs";
      }
    });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target || !target.matches) { return; }
    if (target.matches("[data-filter]")) { tableView.filter = target.value; applyTableView(); }
    if (target.matches("[data-sort]")) { tableView.sort = target.value; applyTableView(); }
  });

  // ------------------------------------------------------------------ wiring

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) { window.htmx.config.wsReconnectDelay = reconnectDelay; }
    // The field being typed in keeps its text (and caret) when an update morphs its form.
    // (Not idiomorph's ignoreActiveValue: that also freezes the children of any focused
    // element, such as the action's next-step line, which must change.)
    if (window.Idiomorph) {
      window.Idiomorph.defaults.callbacks.beforeAttributeUpdated = function (name, element) {
        return !(name === "value" && element === document.activeElement);
      };
    }
    var phase = document.getElementById("phase");
    if (phase) { afterPhaseSwap(phase); }
    forgetOtherDrafts();
    applyTableView();
    restoreDraft();
    updateAuditCount();
  });

  document.addEventListener("htmx:wsConnecting", function () {
    if (everOpen) { showConnection("offline", "Reconnecting…"); }
  });

  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    current = event.detail.event && event.detail.event.target;
    everOpen = true;
    showConnection("online", "Live");
  });

  document.addEventListener("htmx:wsClose", function (event) {
    socket = event.detail.socketWrapper;
    var closed = event.detail.event && event.detail.event.target;
    if (current && closed && closed !== current) { return; }
    var code = event.detail.event && event.detail.event.code;
    settlePending();
    if (code === UNKNOWN_SEAT) {
      showConnection("offline", "Seat not found: join again");
      return;
    }
    if (code === ROLE_CHANGED) {
      leaving = true;
      window.location.reload();
      return;
    }
    if (leaving) { return; }
    showConnection("offline", "Reconnecting…");
    if (RETRIED.indexOf(code) < 0) {
      // e.g. 1001 when a server restarts: the extension would give up, we do not.
      setTimeout(function () { socket.reconnect(); }, reconnectDelay(0));
    }
  });

  // A phone waking up or a network coming back: do not wait for the next retry.
  function wake() {
    if (socket && socket.reconnect && document.visibilityState !== "hidden") {
      var banner = document.getElementById("connection");
      if (banner && banner.classList.contains("is-offline")) { socket.reconnect(); }
    }
  }
  document.addEventListener("visibilitychange", wake);
  window.addEventListener("pagehide", function () { leaving = true; });
  window.addEventListener("pageshow", function () { leaving = false; });
  window.addEventListener("online", wake);

  document.addEventListener("htmx:wsBeforeSend", function (event) {
    var form = event.detail.elt && event.detail.elt.closest ? event.detail.elt.closest("form") : null;
    if (!form) { return; }
    settlePending();
    clearFlash();
    pendingForm = form;
    pendingFocus = form.contains(document.activeElement) ? document.activeElement : null;
    form.setAttribute("aria-busy", "true");
    form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    pendingTimer = setTimeout(settlePending, 8000);
  });

  document.addEventListener("htmx:wsBeforeMessage", beforeMessage);

  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id) { swapped[target.id] = true; }
  });

  document.addEventListener("htmx:wsAfterMessage", function (event) {
    checkSeq(event.detail && event.detail.socketWrapper);
    var phase = swapped.phase && document.getElementById("phase");
    if (phase) { afterPhaseSwap(phase); }
    var flash = swapped.flash && document.getElementById("flash");
    if (flash) { afterFlashSwap(flash); }
    var action = (swapped["lab-action"] && document.getElementById("lab-action")) ||
      (swapped["governor-action"] && document.getElementById("governor-action"));
    if (action) {
      settlePending();
      afterActionSwap(action);
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target && event.target.name === "labs") { updateAuditCount(); saveDraft(); }
  });

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "bid-amount") { saveDraft(); }
  });
})();
