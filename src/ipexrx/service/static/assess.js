// Reads an uploaded patient JSON / FHIR Bundle file into the text area (nothing leaves the browser
// until the form is submitted to this server).
(function () {
  var file = document.getElementById("patient-file");
  var text = document.getElementById("patient");
  if (!file || !text) return;
  file.addEventListener("change", function () {
    var f = file.files && file.files[0];
    if (!f) return;
    var reader = new FileReader();
    reader.onload = function () { text.value = reader.result; };
    reader.readAsText(f);
  });
})();
