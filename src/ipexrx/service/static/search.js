// Instant search: asks /api/v1/search as the user types (debounced) and lists the hits.
// The page works without JavaScript too (the form submits to /search).
(function () {
  var input = document.getElementById("q");
  var list = document.getElementById("results");
  var status = document.getElementById("search-status");
  if (!input || !list) return;
  var pages = {drug: "/drugs/", "class": "/classes/", manifestation: "/manifestations/", interaction: "/interactions/"};
  function href(hit) {
    if (pages[hit.kind]) return pages[hit.kind] + encodeURIComponent(hit.id);
    if (hit.kind === "source") return "/sources#src-" + encodeURIComponent(hit.id);
    if (hit.kind === "ipex-like") return "/#ipex-like-" + encodeURIComponent(hit.id);
    if (hit.kind === "evidence") return "/sources#evidence-" + encodeURIComponent(hit.id);
    return "/";
  }
  var timer = null, seq = 0;
  function run() {
    var q = input.value.trim(), mine = ++seq;
    if (!q) { list.innerHTML = ""; status.textContent = ""; return; }
    fetch("/api/v1/search?limit=15&q=" + encodeURIComponent(q)).then(function (r) { return r.json(); }).then(function (data) {
      if (mine !== seq) return;
      list.innerHTML = "";
      (data.results || []).forEach(function (hit) {
        var li = document.createElement("li");
        var kind = document.createElement("span"); kind.className = "kind"; kind.textContent = hit.kind;
        var a = document.createElement("a"); a.href = href(hit); a.textContent = hit.title;
        var snip = document.createElement("div"); snip.textContent = hit.snippet;
        li.appendChild(kind); li.appendChild(a); li.appendChild(snip); list.appendChild(li);
      });
      var n = (data.results || []).length;
      status.textContent = n ? n + " result(s) for \u201c" + q + "\u201d" : "No match for \u201c" + q +
        "\u201d: try a drug or brand name, a class, a manifestation, an HPO id or another spelling.";
    }).catch(function () { status.textContent = "Search failed; press Enter to search without JavaScript."; });
  }
  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 120); });
})();
