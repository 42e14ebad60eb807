// Progressive enhancement of the dosing page (the form works without it): choosing a model reloads the form
// with that model's covariates, the target follows the chosen exposure metric, and "Add a level" adds a row.
// No data leaves the browser until the form is submitted to this server.
(function () {
  var choice = document.getElementById("model-choice");
  var select = document.getElementById("model-select");
  if (choice && select) {
    select.addEventListener("change", function () { choice.submit(); });
  }
  var metric = document.getElementById("metric");
  var low = document.getElementById("target_low");
  var high = document.getElementById("target_high");
  var targetFor = document.getElementById("target_for");
  if (metric && low && high && targetFor) {
    metric.addEventListener("change", function () {
      var opt = metric.options[metric.selectedIndex];
      low.value = opt.getAttribute("data-low") || "";
      high.value = opt.getAttribute("data-high") || "";
      targetFor.value = metric.value;
    });
  }
  var add = document.getElementById("add-level");
  var body = document.querySelector("#level-rows tbody");
  if (add && body) {
    add.hidden = false;
    add.addEventListener("click", function () {
      var rows = body.querySelectorAll("tr");
      if (rows.length >= 20) return;
      var row = rows[rows.length - 1].cloneNode(true);
      var n = rows.length + 1;
      row.querySelectorAll("input").forEach(function (el) { el.value = ""; });
      row.querySelectorAll("[aria-label]").forEach(function (el) {
        el.setAttribute("aria-label", el.getAttribute("aria-label").replace(/^Level \d+/, "Level " + n));
      });
      body.appendChild(row);
      row.querySelector("input").focus();
    });
  }
})();
