/* PermitGame console: countdowns, PNG downloads of the server's SVG charts, present mode,
   full screen and the live-connection state. No library beyond htmx; nothing leaves this host. */
(function () {
  "use strict";

  // ------------------------------------------------------------------ countdowns
  // The server renders the seconds left; we count down from the moment they arrived, so a wrong
  // clock on the laptop does not matter. An update morphs the same element with new seconds
  // left (a new phase, +30 s): the count starts again from those.
  var arrived = new WeakMap();

  function tick() {
    var now = performance.now();
    document.querySelectorAll(".host-countdown[data-deadline]").forEach(function (el) {
      var stamp = el.getAttribute("data-deadline") + " " + el.getAttribute("data-seconds-left");
      if (!arrived.has(el) || arrived.get(el).stamp !== stamp) {
        var left = parseFloat(el.getAttribute("data-seconds-left"));
        if (isNaN(left)) {
          left = (Date.parse(el.getAttribute("data-deadline")) - Date.now()) / 1000;
        }
        arrived.set(el, { at: now, left: left, stamp: stamp });
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
  // Every update morphs the live fragments into the page (hx-swap-oob="morph", idiomorph): a
  // control the update keeps is the same element, so it keeps the keyboard focus, and Pause
  // becomes Resume in place. Only when the focused control is gone (the game ended) does the
  // focus go to the status line rather than fall back to the top of the page.
  var focusInSwap = false;

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var active = document.activeElement;
    var target = event.detail && event.detail.target;
    if (active && active !== document.body && target && target.contains(active)) focusInSwap = true;
  });

  function keepFocus() {
    if (!focusInSwap) return;
    focusInSwap = false;
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return;
    var status = document.getElementById("host-status");
    if (status) status.focus({ preventScroll: true });
  }
  document.addEventListener("htmx:oobAfterSwap", keepFocus);

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
