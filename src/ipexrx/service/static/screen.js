// Progressive enhancement of the population-screen page (the page works without it): a click on a column
// heading of a worklist sorts its rows by that column (again: the other way round). Sorting happens in the
// browser only; nothing is sent anywhere.
(function () {
  function key(cell, numeric) {
    var raw = cell.getAttribute("data-value");
    var text = raw !== null ? raw : cell.textContent.trim();
    if (numeric) {
      var n = parseFloat(text);
      return isNaN(n) ? -Infinity : n;
    }
    return text.toLowerCase();
  }
  function sortBy(table, index, button) {
    var th = button.parentNode;
    var numeric = th.getAttribute("data-sort") === "number";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var headings = table.tHead.rows[0].cells;
    for (var i = 0; i < headings.length; i++) { headings[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  // Files over the size limit: said before they are sent (the server would refuse them with 413 too)
  var form = document.getElementById("screen-form");
  var input = document.getElementById("screen-files");
  var sizeError = document.getElementById("size-error");
  if (form && input && sizeError) {
    form.addEventListener("submit", function (event) {
      var limit = parseInt(form.getAttribute("data-max-bytes"), 10);
      var total = 0;
      for (var i = 0; i < input.files.length; i++) { total += input.files[i].size; }
      if (limit && total > limit) {
        event.preventDefault();
        sizeError.textContent = "The files chosen take " + (total / 1048576).toFixed(1) + " MB; expected at most " +
          (limit / 1048576).toFixed(0) + " MB together. Screen a larger export with the command line (ipexrx screen).";
        sizeError.hidden = false;
      } else {
        sizeError.hidden = true;
      }
    });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var headings = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headings, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      button.setAttribute("title", "Sort by " + th.textContent.toLowerCase());
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, index, button); });
    });
  });
})();
