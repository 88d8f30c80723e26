// The create form's live preview: when the server scaled the cap with the number of labs
// (the instructor had not typed one), put the scaled cap in the field, and remember it as the
// page's own cap so that it keeps scaling. A cap typed meanwhile is left alone.
(function () {
  "use strict";
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "setup-preview") return;
    var note = target.querySelector("#preview-cap");
    var form = target.closest("form");
    if (!note || !form) return;
    var cap = form.querySelector("#id_token_cap");
    var auto = form.querySelector("#id_auto_cap");
    if (!cap || !auto || cap.value !== note.dataset.typedCap) return;
    cap.value = note.dataset.scaledCap;
    auto.value = note.dataset.scaledCap;
  });
})();
