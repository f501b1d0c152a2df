// Reloads the page every data-refresh seconds, except while the visitor is using the filter
// form or the tab is hidden (then it looks again a little later).
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh"), 10);
  if (!(seconds > 0)) {
    return;
  }
  function busy() {
    var el = document.activeElement;
    return el !== null && (el.tagName === "INPUT" || el.tagName === "SELECT");
  }
  function tick() {
    if (document.visibilityState === "visible" && !busy()) {
      window.location.reload();
    } else {
      window.setTimeout(tick, seconds * 1000);
    }
  }
  window.setTimeout(tick, seconds * 1000);
})();
