// The "Approve this action" page while a push is pending: polls the
// approval's status and reloads the page once it is decided (the page then
// shows the continue button, or why the request was not sent). Served as a
// file because the pages' Content-Security-Policy allows no inline script;
// without JavaScript the "check again" button does the same.
(function () {
  "use strict";
  var box = document.getElementById("approval");
  if (!box) {
    return;
  }
  var every = 2000;
  function poll() {
    fetch(box.dataset.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.status && s.status !== "pending") {
          window.location.assign(box.dataset.page);
          return;
        }
        setTimeout(poll, every);
      })
      .catch(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
