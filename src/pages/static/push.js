// The waiting view of the second-factor page: polls `status` and moves on
// by itself once the push is decided. Served as a file because the pages'
// Content-Security-Policy allows no inline script; without JavaScript the
// "continue" button does the same.
(function () {
  "use strict";
  var box = document.getElementById("push");
  if (!box) {
    return;
  }
  var every = 2500;
  function poll() {
    fetch(box.dataset.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.status === "approved" || s.status === "denied" || s.status === "expired" || s.status === "none") {
          window.location.assign(box.dataset.next);
          return;
        }
        setTimeout(poll, every);
      })
      .catch(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
