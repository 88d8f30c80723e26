/* PermitGame console: countdowns, PNG downloads of the server's SVG charts, present mode,
   full screen and the live-connection state. No library beyond htmx; nothing leaves this host. */
(function () {
  "use strict";

  // ------------------------------------------------------------------ countdowns
  // The server renders the seconds left; we count down from the moment the element arrived,
  // so a wrong clock on the laptop does not matter.
  var arrived = new WeakMap();

  function tick() {
    var now = performance.now();
    document.querySelectorAll(".host-countdown[data-deadline]").forEach(function (el) {
      if (!arrived.has(el)) {
        var left = parseFloat(el.getAttribute("data-seconds-left"));
        if (isNaN(left)) {
          left = (Date.parse(el.getAttribute("data-deadline")) - Date.now()) / 1000;
        }
        arrived.set(el, { at: now, left: left });
      }
      var start = arrived.get(el);
      var seconds = Math.max(0, Math.ceil(start.left - (now - start.at) / 1000));
      var minutes = Math.floor(seconds / 60);
      var text = minutes > 0 ? minutes + ":" + String(seconds % 60).padStart(2, "0") : seconds + " s";
      if (el.textContent !== text) el.textContent = text;
      el.classList.toggle("urgent", seconds <= 5);
    });
  }
  setInterval(tick, 250);
  document.addEventListener("DOMContentLoaded", tick);

  // ------------------------------------------------------------------ PNG download of a chart
  function downloadPng(button) {
    var figure = button.closest("figure");
    var svg = figure && figure.querySelector("svg");
    if (!svg) return;
    var width = parseFloat(svg.getAttribute("width")) || svg.viewBox.baseVal.width;
    var height = parseFloat(svg.getAttribute("height")) || svg.viewBox.baseVal.height;
    var text = new XMLSerializer().serializeToString(svg);
    var image = new Image();
    image.onload = function () {
      var scale = 2; // crisp on slides
      var canvas = document.createElement("canvas");
      canvas.width = width * scale;
      canvas.height = height * scale;
      var context = canvas.getContext("2d");
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(function (blob) {
        var link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = button.getAttribute("data-png") || "chart.png";
        document.body.appendChild(link);
        link.click();
        setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
      }, "image/png");
    };
    image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text);
  }

  document.addEventListener("click", function (event) {
    var png = event.target.closest("[data-png]");
    if (png) {
      event.preventDefault();
      downloadPng(png);
      return;
    }
    var present = event.target.closest("[data-present]");
    if (present) {
      var on = document.body.classList.toggle("presenting");
      present.setAttribute("aria-pressed", on ? "true" : "false");
      if (on && document.documentElement.requestFullscreen) {
        document.documentElement.requestFullscreen().catch(function () {});
      } else if (!on && document.fullscreenElement) {
        document.exitFullscreen().catch(function () {});
      }
      return;
    }
    if (event.target.closest("[data-fullscreen]") && document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().catch(function () {});
    }
  });

  // ------------------------------------------------------------------ keeping the keyboard focus
  // Every update replaces the live fragments (a student's bid, a control's answer). A keyboard
  // user's focus would fall back to the top of the page each time, so it is put back on the
  // same control in the new fragment, or on the control that took its place (Pause <-> Resume).
  var COUNTERPART = { pause: "resume", resume: "pause", start: "pause", "add-bot": "remove-bot" };
  var pendingFocus = null;

  function focusKey(element) {
    var control = element.closest("[data-control]");
    if (control) return { control: control.getAttribute("data-control") };
    var label = element.getAttribute("aria-label");
    if (element.tagName === "BUTTON" && label) return { label: label };
    return element.id ? { id: element.id } : null;
  }

  // ``tried``: the controls already looked for. Pause and Resume are each other's counterpart,
  // so once the game is over and neither is there the search must stop (it once recursed
  // without end when the game ended while Start or Pause had the focus).
  function findByKey(key, tried) {
    tried = tried || {};
    if (key.id) return document.getElementById(key.id);
    if (key.control) tried[key.control] = true;
    var found = null;
    var selector = key.control ? "[data-control]" : "button[aria-label]";
    document.querySelectorAll(selector).forEach(function (element) {
      if (found) return;
      if (key.control && element.getAttribute("data-control") === key.control) found = element;
      if (key.label && element.getAttribute("aria-label") === key.label) found = element;
    });
    var counterpart = key.control && COUNTERPART[key.control];
    if (!found && counterpart && !tried[counterpart]) {
      found = findByKey({ control: counterpart }, tried);
    }
    return found;
  }

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var active = document.activeElement;
    var target = event.detail && event.detail.target;
    if (active && active !== document.body && target && target.contains(active)) {
      pendingFocus = focusKey(active);
    }
  });

  function restoreFocus() {
    if (!pendingFocus) return;
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) {
      pendingFocus = null;  // the focus is somewhere already
      return;
    }
    var element = findByKey(pendingFocus) || document.getElementById("host-status");
    pendingFocus = null;
    if (element) element.focus({ preventScroll: true });
  }
  document.addEventListener("htmx:oobAfterSwap", function () { setTimeout(restoreFocus, 0); });
  document.addEventListener("htmx:afterSettle", restoreFocus);

  // ------------------------------------------------------------------ live connection state
  function socketState(state, text) {
    document.querySelectorAll("[data-socket-state]").forEach(function (el) {
      el.setAttribute("data-socket-state", state);
      el.textContent = text;
    });
  }
  document.addEventListener("htmx:wsOpen", function () { socketState("open", "Live"); });
  document.addEventListener("htmx:wsClose", function () { socketState("closed", "Reconnecting…"); });
})();
