// pamctl approvals: live queue updates. The page works without this file;
// with it, the queue refreshes itself when a request arrives or is decided.
(function () {
  "use strict";
  var region = document.querySelector("[data-live=queue]");
  if (!region || !window.EventSource) { return; }
  region.setAttribute("aria-live", "polite");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-live=queue]");
        if (fresh) {
          region.replaceChildren.apply(region, Array.prototype.slice.call(fresh.childNodes));
          region.classList.remove("live-flash");
          void region.offsetWidth;
          region.classList.add("live-flash");
        }
      })
      .catch(function () { window.location.reload(); })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var es = new EventSource("/ui/events");
  es.addEventListener("queue", refresh);
  es.addEventListener("logout", function () { es.close(); window.location.reload(); });
  document.documentElement.setAttribute("data-live", "connected");
})();
