// pamctl approvals: live queue updates. The page works without this file;
// with it, the queue refreshes itself when a request arrives or is decided.
// It never navigates by itself (no reload, no redirect followed): a page
// load is what keeps the session from idling out (sessions.idle_timeout),
// so only the person may make one. When the session has ended it says so
// and waits for the person to reload.
(function () {
  "use strict";
  var region = document.querySelector("[data-live=queue]");
  if (!region || !window.EventSource) { return; }
  region.setAttribute("aria-live", "polite");
  var busy = false, again = false, ended = false, es = null;
  var notice = null;
  // say shows a notice above the queue with a link that reloads the page
  // (the person's click); nothing is loaded until they follow it.
  function say(text, kind) {
    if (!notice) {
      notice = document.createElement("div");
      notice.setAttribute("role", "alert");
      region.parentNode.insertBefore(notice, region);
    }
    notice.className = "notice " + kind;
    var p = document.createElement("p");
    p.appendChild(document.createTextNode(text + " "));
    var a = document.createElement("a");
    a.href = window.location.pathname + window.location.search;
    a.textContent = "Reload the page";
    p.appendChild(a);
    notice.replaceChildren(p);
  }
  function unsay() {
    if (notice && !ended) { notice.remove(); notice = null; }
  }
  function sessionEnded() {
    ended = true;
    if (es) { es.close(); }
    document.documentElement.removeAttribute("data-live");
    say("Your session has ended, so this list no longer updates. Reload to sign in again.", "warn");
  }
  function refresh() {
    if (ended) { return; }
    if (busy) { again = true; return; }
    busy = true;
    // redirect: "manual": a redirect (to the login, when the session has
    // ended) is not followed, so no login is started behind the person's back.
    // X-Pamctl-Refresh: not the person's use of the session, even from a
    // browser that sends no fetch metadata.
    fetch(window.location.pathname, { credentials: "same-origin", redirect: "manual", headers: { "Accept": "text/html", "X-Pamctl-Refresh": "1" } })
      .then(function (r) {
        if (r.type === "opaqueredirect" || r.status === 401) {
          sessionEnded();
          return null;
        }
        if (!r.ok) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("[data-live=queue]");
        if (fresh) {
          unsay();
          if (fresh.innerHTML === region.innerHTML) { return; }
          region.replaceChildren.apply(region, Array.prototype.slice.call(fresh.childNodes));
          region.classList.remove("live-flash");
          void region.offsetWidth;
          region.classList.add("live-flash");
        }
      })
      .catch(function () {
        say("The list could not be refreshed; it may be out of date.", "warn");
      })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  // The server subscribes to the trail before it answers, so once the
  // stream is open no change is missed; what changed before that (since
  // the page was rendered, or while the stream was down) has no event
  // left, so each opening fetches the queue once. The page says it is
  // live (data-live) only while the stream is open.
  es = new EventSource("/ui/events");
  es.addEventListener("open", function () {
    document.documentElement.setAttribute("data-live", "connected");
    refresh();
  });
  es.addEventListener("error", function () {
    if (es.readyState !== EventSource.OPEN) { document.documentElement.removeAttribute("data-live"); }
  });
  es.addEventListener("queue", refresh);
  es.addEventListener("logout", sessionEnded);
})();
