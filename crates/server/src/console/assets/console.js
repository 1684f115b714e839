// regkeeper console: says which provider a registry server means while it is typed,
// and shows the Amazon ECR options only for ECR. The form works without this script:
// the server detects the type itself.
"use strict";
(function () {
  var registry = document.getElementById("registry");
  var provider = document.getElementById("type");
  var output = document.getElementById("detected-type");
  var ecrOptions = document.getElementById("ecr-options");
  if (!registry || !provider || !output) {
    return;
  }
  var detected = null;
  var timer = null;
  var latest = 0;

  function showEcrOptions() {
    if (!ecrOptions) {
      return;
    }
    var type = provider.value === "auto" ? detected : provider.value;
    var show = type === "ecr";
    ecrOptions.hidden = !show;
    // Hidden fields are not sent, so a stale Role ARN cannot reach a docker credential.
    ecrOptions.disabled = !show;
  }

  function detect() {
    var value = registry.value.trim();
    if (value === "") {
      detected = null;
      output.textContent = "";
      showEcrOptions();
      return;
    }
    // Never send what may hold a password or token (user:password@host, ?query).
    if (/[@?#]/.test(value)) {
      detected = null;
      output.textContent = "Check the registry server: it must not contain a user name, password, query or fragment.";
      showEcrOptions();
      return;
    }
    var request = ++latest;
    fetch("/console/detect-type?registry=" + encodeURIComponent(value), {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (answer) {
        if (request !== latest || !answer) {
          return;
        }
        detected = answer.type || null;
        output.textContent = answer.text || "";
        showEcrOptions();
      })
      .catch(function () {
        // Detection is a convenience; the server decides when the form is sent.
      });
  }

  registry.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(detect, 150);
  });
  provider.addEventListener("change", showEcrOptions);
  detect();
})();
