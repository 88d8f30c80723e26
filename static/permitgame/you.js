/* Marks this seat's own rows in the public lists (scoreboard, players, waiting): "(you)" after
 * its name and a highlighted row. The rows are the same for every player (the server renders
 * them once per game), so the mark is a style rule for this page's seat, added through the
 * CSS object model: the Content-Security-Policy allows no inline <style>. */
(function () {
  "use strict";
  var play = document.querySelector(".play[data-seat]");
  var seat = play ? play.getAttribute("data-seat") : null;
  if (!seat || !/^[0-9]+$/.test(seat)) {
    return;
  }
  var rules = [
    '[data-player-id="' + seat + '"] .who::after { content: " (you)"; font-weight: 700; }',
    '.board li[data-player-id="' + seat + '"] { background: var(--highlight); }',
  ];
  if ("adoptedStyleSheets" in document && typeof CSSStyleSheet === "function") {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(rules.join("\n"));
    document.adoptedStyleSheets = document.adoptedStyleSheets.concat([sheet]);
    return;
  }
  window.addEventListener("load", function () {
    var own = document.styleSheets[document.styleSheets.length - 1];
    rules.forEach(function (rule) {
      own.insertRule(rule, own.cssRules.length);
    });
  });
})();
