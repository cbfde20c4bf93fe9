/* The login page (/login): the language switch. The form itself is plain HTML posted to /login; the page it
 * answers with is in the language of the address, so the form's action carries ?lang=en once switched. */
(function () {
  "use strict";

  var gs = window.geoservice;
  var form = document.getElementById("login-form");

  function keepLanguage() {
    form.setAttribute("action", gs.lang() === "en" ? "/login?lang=en" : "/login");
  }

  document.getElementById("lang-switch").addEventListener("click", function () {
    gs.switchLanguage();
    gs.applyLanguage();
    keepLanguage();
  });
  gs.applyLanguage();
  keepLanguage();
  var first = document.getElementById(document.getElementById("username").value ? "password" : "username");
  first.focus();
}());
