// Paved's portal: the one script. Pages work without it; with it, times are shown in the
// viewer's time zone (the UTC value stays in the tooltip). A countdown (`data-keep`) keeps
// its words and gets the local time as its tooltip.
document.querySelectorAll("time[datetime][data-keep]").forEach(function (t) {
  var d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d.getTime())) {
    t.title = d.toLocaleString() + " (" + t.getAttribute("datetime") + ")";
  }
});
document.querySelectorAll("time[datetime]:not([data-keep])").forEach(function (t) {
  var d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d.getTime())) {
    t.title = t.getAttribute("datetime");
    t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
});

// A request under way (`data-follow`): fetch its page again every few seconds and swap the
// part that changes in place, so the page never reloads (a reload sends a screen reader
// back to the top). A change of state is said in the page's status line. Stops when the
// request is over, or when the page cannot be fetched (the Refresh link still works).
(function follow() {
  var live = document.getElementById("request-live");
  var announce = document.getElementById("request-announce");
  if (!live || !live.hasAttribute("data-follow")) {
    return;
  }
  var url = live.getAttribute("data-follow");
  var stateOf = function (root) {
    var s = root.querySelector("[data-state]");
    return s ? s.getAttribute("data-state") : "";
  };
  var tick = function () {
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("status " + r.status);
        }
        return r.text();
      })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, "text/html").getElementById("request-live");
        if (!next) {
          return;
        }
        var before = stateOf(live);
        live.innerHTML = next.innerHTML;
        var after = stateOf(live);
        if (announce && after !== before) {
          announce.textContent = "The request is now " + after + ".";
        }
        if (next.hasAttribute("data-follow")) {
          setTimeout(tick, 3000);
        } else {
          live.removeAttribute("data-follow");
        }
      })
      .catch(function () {});
  };
  setTimeout(tick, 3000);
})();

// A request form: what the chosen type asks. Its latest expiry day becomes the date's `max`
// (and makes the date required), and the tags it needs become required, so the browser
// says what is missing before the form is sent. Without the script the server says it.
document.querySelectorAll("form.request select[data-type-select]").forEach(function (select) {
  var form = select.form;
  var apply = function () {
    var chosen = select.options[select.selectedIndex];
    var type = chosen ? chosen.value : "";
    var max = chosen ? chosen.getAttribute("data-max") : null;
    var date = form.querySelector("input[name=expiresAt]");
    if (date) {
      if (max) {
        date.max = max;
      } else {
        date.removeAttribute("max");
      }
    }
    form.querySelectorAll("[data-needed-by]").forEach(function (input) {
      var needed = input.getAttribute("data-needed-by").split(" ").indexOf(type) >= 0;
      input.required = needed;
      var mark = form.querySelector("label[for='" + input.id + "'] .required");
      if (mark) {
        mark.hidden = !needed;
      }
    });
  };
  select.addEventListener("change", apply);
  apply();
});
