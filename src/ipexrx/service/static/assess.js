// Reads a chosen patient JSON / FHIR Bundle file (or a bundled example) into the text area, then
// clears the file input so that the text area (with any edits) is what gets sent. Without
// JavaScript the browser uploads the file itself. Nothing leaves the browser until the form is
// submitted to this server.
(function () {
  var file = document.getElementById("patient-file");
  var text = document.getElementById("patient");
  if (!file || !text) return;
  file.addEventListener("change", function () {
    var f = file.files && file.files[0];
    if (!f) return;
    var reader = new FileReader();
    reader.onload = function () { text.value = reader.result; file.value = ""; text.focus(); };
    reader.readAsText(f);
  });
  document.querySelectorAll("a[data-example]").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      fetch(a.getAttribute("data-example")).then(function (r) { return r.text(); })
        .then(function (t) { text.value = t; text.focus(); });
    });
  });
})();
