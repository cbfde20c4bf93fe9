/* geoservice map pages: what the city map, the farmer finder and the planner do the same way. No third-party code.
 *
 * Loaded after Leaflet and before the page's own script. It reads the page's configuration (the JSON that
 * page_base.html writes into <script id="page-config">) and offers, on window.geoservice:
 *   config                       the page's configuration
 *   t(key, vars), lang()         the page's messages in the current language ("{name}" filled from vars)
 *   switchLanguage(), applyLanguage()   zh-CN ⇄ English, and relabelling every [data-i18n…] element in place
 *   kindLabel(code), KIND_COLOURS, icon(symbol), kindSwatch(code)   the one set of kind colours and icons
 *   getJSON(url, options)        fetch with errors as Error(description) from our {"code", "description"} shape;
 *                                a 503 "Busy" (every analysis slot taken) is asked again after its Retry-After
 *   bbox(bounds)                 "minlon,minlat,maxlon,maxlat" for ?bbox= from Leaflet bounds
 *   escapeHtml(text), el(tag, attrs, text)   text made inert, and a DOM element with text (never parsed as HTML)
 *   createMap()                  the Leaflet map in #map: start view, zoom limits, basemap, metric scale bar
 *   getFeature(url)              GET with the answer's ETag: {body, etag}
 *   send(method, url, body, options)   a write as JSON with X-CSRF-Token (from <meta name="csrf-token">) and
 *                                If-Match (options.etag); resolves {status, body, etag}, rejects like getJSON with
 *                                .errors (the API's [{field, reason}]) on top
 *   live                         a point's live state: live.start(ask, onAnswer) polls /api/v1/points/live every
 *                                config.live.poll_seconds; live.age(point) says how old its last change is, and
 *                                live.render(box, point) writes notice, age and stale mark into box
 */
(function () {
  "use strict";

  var SPRITE = "/static/img/icons/sprite.svg";
  // One colour per point kind: markers, clusters, search results and layer-control swatches all use these.
  var KIND_COLOURS = {
    kiosk: "#b03a2e", rest_station: "#1f618d", vendor_point: "#1e8449", melon_point: "#7d6608",
    night_market: "#6c3483", job_board: "#a04000", parking: "#283747", toilet: "#0e6655"
  };

  var config = JSON.parse(document.getElementById("page-config").textContent);
  var wanted = new URLSearchParams(window.location.search).get("lang");
  var lang = wanted === "en" ? "en" : "zh";  // zh-CN first; ?lang=en opens the page in English
  var kinds = {};
  config.kinds.forEach(function (k) { kinds[k.code] = k; });
  var pageMap = null;

  // -- text ------------------------------------------------------------------------------------------------

  function t(key, vars) {
    var text = config.messages[lang][key];
    if (text === undefined) { return key; }
    Object.keys(vars || {}).forEach(function (name) { text = text.split("{" + name + "}").join(String(vars[name])); });
    return text;
  }

  function kindLabel(code) { return kinds[code] ? kinds[code][lang] : code; }

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function each(selector, fn) { Array.prototype.forEach.call(document.querySelectorAll(selector), fn); }

  /* Relabel the document in the current language: text (data-i18n, with data-i18n-vars as JSON), aria-label
     (data-i18n-aria), placeholder (data-i18n-placeholder) and kind labels (data-kind-label). */
  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("page_title");
    each("[data-i18n]", function (el) {
      el.textContent = t(el.getAttribute("data-i18n"), JSON.parse(el.getAttribute("data-i18n-vars") || "{}"));
    });
    each("[data-i18n-aria]", function (el) { el.setAttribute("aria-label", t(el.getAttribute("data-i18n-aria"))); });
    each("[data-i18n-placeholder]", function (el) {
      el.setAttribute("placeholder", t(el.getAttribute("data-i18n-placeholder")));
    });
    each("[data-kind-label]", function (el) { el.textContent = kindLabel(el.getAttribute("data-kind-label")); });
    // The switch is written in the language it switches to.
    each(".lang-switch", function (el) { el.setAttribute("lang", lang === "zh" ? "en" : "zh-CN"); });
    if (pageMap && config.messages[lang].map_label) {
      pageMap.getContainer().setAttribute("aria-label", t("map_label"));
    }
  }

  function switchLanguage() {
    lang = lang === "zh" ? "en" : "zh";
    return lang;
  }

  // -- kinds: colours and icons ----------------------------------------------------------------------------

  function icon(symbol, cls) {
    return "<svg class=\"" + (cls || "icon") + "\" aria-hidden=\"true\" focusable=\"false\"><use href=\"" + SPRITE +
      "#" + symbol + "\"></use></svg>";
  }

  function kindSwatch(code) {
    return "<span class=\"kind-swatch\" style=\"--kind-colour: " + KIND_COLOURS[code] + "\">" + icon("kind-" + code) +
      "</span>";
  }

  // -- the API ---------------------------------------------------------------------------------------------

  /* GET url as JSON. A 4xx/5xx rejects with an Error whose message is the API's description (and .status,
     .code); an unreachable server with error_network (and .network); an abort with the AbortError itself.
     options: signal (an AbortSignal), notFoundIsNull (a 404 answers null: "there is none"). */
  var BUSY_RETRIES = 5;

  function getJSON(url, options, attempt) {
    options = options || {};
    attempt = attempt || 0;
    return fetch(url, { headers: { Accept: "application/geo+json, application/json" }, signal: options.signal })
      .then(function (response) {
        if (response.ok) { return response.json(); }
        if (options.notFoundIsNull && response.status === 404) { return null; }
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (body.code === "Busy" && attempt < BUSY_RETRIES) {
            // Other users' analyses hold every slot: wait as asked (plus a jitter, so waiting pages spread out).
            var seconds = Math.max(1, Number(response.headers.get("Retry-After")) || 2) + Math.random();
            return new Promise(function (resolve) { setTimeout(resolve, seconds * 1000); })
              .then(function () { return getJSON(url, options, attempt + 1); });
          }
          var error = new Error(body.description || response.status + " " + response.statusText);
          error.status = response.status;
          error.code = body.code;
          throw error;
        });
      }, function (error) {
        if (error && error.name === "AbortError") { throw error; }
        var failed = new Error(t("error_network"));
        failed.network = true;
        throw failed;
      });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function csrfToken() {
    var meta = document.querySelector("meta[name='csrf-token']");
    return meta ? meta.getAttribute("content") : "";
  }

  function apiError(response, body) {
    var error = new Error(body.description || response.status + " " + response.statusText);
    error.status = response.status;
    error.code = body.code;
    error.errors = body.errors || [];
    return error;
  }

  function networkError(error) {
    if (error && error.name === "AbortError") { throw error; }
    var failed = new Error(t("error_network"));
    failed.network = true;
    throw failed;
  }

  /* GET a single feature with its ETag (what a later write sends as If-Match). */
  function getFeature(url) {
    return fetch(url, { headers: { Accept: "application/geo+json, application/json" }, cache: "no-store" })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (!response.ok) { throw apiError(response, body); }
          return { body: body, etag: response.headers.get("ETag") };
        });
      }, networkError);
  }

  /* A write as JSON from a page: the session cookie goes along, so the CSRF token must too. */
  function send(method, url, body, options) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    if (options && options.etag) { headers["If-Match"] = options.etag; }
    return fetch(url, { method: method, headers: headers, credentials: "same-origin",
                        body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (!response.ok) { throw apiError(response, answer); }
          return { status: response.status, body: answer, etag: response.headers.get("ETag") };
        });
      }, networkError);
  }

  // -- live state: occupancy, status and notice as staff change them -----------------------------------------

  var live = {
    offsetMs: 0,  // server clock minus ours, from the last answer: ages are told in the server's time
    staleAfterMinutes: config.live ? config.live.stale_after_minutes : null,

    serverNow: function () { return Date.now() + live.offsetMs; },

    /* Whole minutes since the point's last live change, and whether that is older than the stale age. */
    age: function (point) {
      var at = Date.parse(point.live_updated_at);
      if (isNaN(at)) { return null; }
      var minutes = Math.max(0, Math.floor((live.serverNow() - at) / 60000));
      return { minutes: minutes, stale: live.staleAfterMinutes != null && minutes >= live.staleAfterMinutes };
    },

    ageText: function (minutes) {
      if (minutes < 1) { return t("updated_just_now"); }
      if (minutes < 60) { return t("updated_minutes_ago", { n: minutes }); }
      if (minutes < 48 * 60) { return t("updated_hours_ago", { n: Math.floor(minutes / 60) }); }
      return t("updated_days_ago", { n: Math.floor(minutes / 1440) });
    },

    /* Fill box with the point's notice, the age of its live state and (for a point with places to count)
       a stale mark. Text only: a notice is what a person typed. */
    render: function (box, point) {
      box.textContent = "";
      if (point.notice) {
        var notice = el("p", { "class": "live-notice" });
        notice.appendChild(el("strong", {}, t("notice")));
        notice.appendChild(el("span", { "class": "live-notice-text" }, point.notice));
        box.appendChild(notice);
      }
      var age = live.age(point);
      if (!age) { return; }
      box.appendChild(el("p", { "class": "live-age", "data-minutes": age.minutes }, live.ageText(age.minutes)));
      if (age.stale && point.capacity != null) {
        box.appendChild(el("p", { "class": "live-stale", role: "note" },
                           "⚠ " + t("stale", { n: live.staleAfterMinutes })));
      }
    },

    /* Every poll_seconds: ask() gives the query string ("ids=1,2" or "since=…") or null for nothing to ask;
       onAnswer(answer) gets {points, now, stale_after_minutes}. A page in the background does not ask. */
    start: function (ask, onAnswer) {
      var busy = false;
      function tick() {
        var query = ask();
        if (busy || query === null || document.hidden) { return; }
        busy = true;
        fetch(config.api.live + "?" + query, { headers: { Accept: "application/json" }, cache: "no-store" })
          .then(function (response) { return response.ok ? response.json() : null; })
          .then(function (answer) {
            if (!answer) { return; }
            live.offsetMs = Date.parse(answer.now) - Date.now();
            live.staleAfterMinutes = answer.stale_after_minutes;
            onAnswer(answer);
          })
          .catch(function () { /* the next tick asks again */ })
          .finally(function () { busy = false; });
      }
      var timer = window.setInterval(tick, config.live.poll_seconds * 1000);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) { tick(); } });
      tick();
      return { tick: tick, stop: function () { window.clearInterval(timer); } };
    }
  };

  function bbox(bounds) {
    var west = Math.max(-180, bounds.getWest()), east = Math.min(180, bounds.getEast());
    var south = Math.max(-90, bounds.getSouth()), north = Math.min(90, bounds.getNorth());
    return [west, south, east, north].map(function (n) { return n.toFixed(6); }).join(",");
  }

  // -- the map ---------------------------------------------------------------------------------------------

  function createMap() {
    var view = config.map;
    var map = L.map("map", {
      center: view.center, zoom: view.zoom, minZoom: view.min_zoom, maxZoom: view.max_zoom,
      preferCanvas: view.prefer_canvas
    });
    L.control.scale({ imperial: false }).addTo(map);
    if (config.basemap) { L.tileLayer(config.basemap.url, config.basemap.options).addTo(map); }
    if (config.messages[lang].map_label) { map.getContainer().setAttribute("role", "region"); }
    pageMap = map;
    return map;
  }

  window.geoservice = {
    config: config, t: t, lang: function () { return lang; }, switchLanguage: switchLanguage,
    applyLanguage: applyLanguage, kindLabel: kindLabel, KIND_COLOURS: KIND_COLOURS, icon: icon,
    kindSwatch: kindSwatch, getJSON: getJSON, bbox: bbox, escapeHtml: escapeHtml, el: el, createMap: createMap,
    getFeature: getFeature, send: send, live: live
  };
}());
