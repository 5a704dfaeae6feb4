// Paved's portal: the one script. Pages work without it; with it, times are shown in the
// viewer's time zone (the UTC value stays in the tooltip).
document.querySelectorAll("time[datetime]").forEach(function (t) {
  var d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d.getTime())) {
    t.title = t.getAttribute("datetime");
    t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
});
