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
