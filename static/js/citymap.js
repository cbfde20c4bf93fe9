/* geoservice city map (/): layers by view, popups, search, legend, permalink, language switch, and live occupancy,
 * status and notices (asked every few seconds). No third-party code here. The page's configuration comes from
 * geoservice/web/maps.py through common.js; nothing here holds data. Popups, tooltips and search results are built
 * as DOM nodes with text: names, addresses and notices are typed by people and are never parsed as HTML.
 * For an officer or a planner, static/js/editing.js adds to the popups through G.city.hooks. */
(function () {
  "use strict";

  var G = window.geoservice;
  var config = G.config;
  var t = G.t, kindLabel = G.kindLabel, icon = G.icon, kindSwatch = G.kindSwatch, escapeHtml = G.escapeHtml;
  var el = G.el;

  var LAYER_KEYS = ["districts", "grids", "streets"];
  var DAY_CODES = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];
  var PANES = { grids: 410, districts: 415, streets: 420, gridLabels: 625 };
  var DEBOUNCE_MS = 150;

  function startCityMap() {
    var map = G.createMap();
    var groups = {};
    var statusKey = null;
    var hintKey = null;
    var coverage = {};
    var coverageLoaded = false;
    var gridLayer = null;
    var gridLabels = L.layerGroup();
    var clusters = {};
    var lastPoints = null;
    var view = { bounds: null, truncated: false, serial: 0 };
    var controller = null;
    var timer = null;
    var initialPending = 3;  // districts, grids, the first view
    var firstViewPending = true;
    var ui = {};

    // -- language ---------------------------------------------------------------------------------------------
    function applyLanguage() {
      G.applyLanguage();
      if (ui.locate && ui.locate._link) {
        ui.locate._link.title = t("locate_title");
        ui.locate._link.setAttribute("aria-label", t("locate_title"));
      }
      if (ui.legend) { ui.legend.render(); }
      showStatus();
      if (lastPoints) { drawPoints(lastPoints); }
      if (ui.results && ui.results.lastQuery) { ui.results.render(); }
      map.closePopup();
    }

    function switchLanguage() {
      G.switchLanguage();
      applyLanguage();
    }

    // -- status line ------------------------------------------------------------------------------------------
    function showStatus() {
      var el = document.getElementById("map-status");
      if (!el) { return; }
      var text = statusKey ? t(statusKey) : (hintKey ? t(hintKey) : "");
      el.textContent = text;
      el.hidden = !text;
    }
    function setStatus(key) { statusKey = key; showStatus(); }
    function setHint(key) { hintKey = key; showStatus(); }

    function initialDone() {
      initialPending -= 1;
      if (initialPending === 0) {
        if (statusKey === "loading") { setStatus(null); }
        document.body.setAttribute("data-layers-loaded", "true");
      }
    }

    function failed(err) {
      if (err && err.name === "AbortError") { return; }
      setStatus("error_network");
    }

    function ensurePane(name) {
      var paneName = "geoservice-city-" + name;
      if (!map.getPane(paneName)) { map.createPane(paneName).style.zIndex = PANES[name]; }
      return paneName;
    }

    function tag(layer, key) { layer.options.geoserviceLayer = key; return layer; }

    // -- text formatting --------------------------------------------------------------------------------------
    function formatHours(text) {
      if (!text) { return t("hours_unknown"); }
      if (text.trim() === "24/7") { return t("all_day"); }
      var days = t("weekdays").split(",");
      return text.split(";").map(function (rule) {
        return rule.trim().replace(/^Mo-Su\s+/, t("every_day") + " ").replace(/\boff\b/, t("closed_day"))
          .replace(/\b(Mo|Tu|We|Th|Fr|Sa|Su)\b/g, function (d) { return days[DAY_CODES.indexOf(d)]; });
      }).join("; ");
    }

    function formatSeason(text) {
      var m = /^(\d{2})-(\d{2})\/(\d{2})-(\d{2})$/.exec(text || "");
      if (!m) { return text || ""; }
      var months = t("months").split(",");
      function day(month, d) {
        return G.lang() === "zh" ? months[month - 1] + Number(d) + "日" : Number(d) + " " + months[month - 1];
      }
      return day(Number(m[1]), m[2]) + " – " + day(Number(m[3]), m[4]);
    }

    function telLink(phone) {
      return el("a", { href: "tel:" + String(phone).replace(/[^0-9+]/g, "") }, phone);
    }

    /* A <dt>/<dd> pair into dl; the value is text or nodes (never markup). */
    function row(dl, labelKey, value) {
      dl.appendChild(el("dt", {}, t(labelKey)));
      var dd = dl.appendChild(el("dd"));
      (Array.isArray(value) ? value : [value]).forEach(function (v) {
        if (v === null || v === undefined || v === "") { return; }
        if (dd.childNodes.length) { dd.appendChild(document.createTextNode(" ")); }
        dd.appendChild(typeof v === "object" ? v : document.createTextNode(String(v)));
      });
      return dd;
    }

    // -- popups -----------------------------------------------------------------------------------------------
    function openState(p) {
      if (p.status && p.status !== "open") {
        return el("p", { "class": "open-state closed" }, t("status_" + p.status));
      }
      if (p.open_now === true) { return el("p", { "class": "open-state open" }, t("open_now")); }
      if (p.open_now === false) { return el("p", { "class": "open-state closed" }, t("closed_now")); }
      return el("p", { "class": "open-state unknown" }, t("hours_unknown"));
    }

    function amenityList(p, box) {
      if (!p.amenity_labels || !p.amenity_labels.length) { return; }
      var lang = G.lang(), other = lang === "zh" ? "en" : "zh";
      box.appendChild(el("h3", {}, t("amenities")));
      var list = box.appendChild(el("ul", { "class": "amenities" }));
      p.amenity_labels.forEach(function (a) {
        var li = list.appendChild(el("li", { "data-amenity": a.code }));
        li.innerHTML = icon("amenity-" + a.code);  // our own sprite, no data
        li.appendChild(el("span", {}, a[lang]));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("span", { "class": "other-lang", lang: other === "zh" ? "zh-CN" : "en" }, a[other]));
      });
    }

    var hooks = { pointPopup: [], gridPopup: [] };

    function pointPopup(p, marker) {
      var box = el("div", { "class": "point-popup", "data-point-id": p.id });
      box.appendChild(el("h2", {}, p.name));
      var kind = box.appendChild(el("p", { "class": "kind" }));
      kind.innerHTML = kindSwatch(p.kind);  // our own icon and colour, no data
      kind.appendChild(document.createTextNode(p.kind_label.zh + " · "));
      kind.appendChild(el("span", { lang: "en" }, p.kind_label.en));
      box.appendChild(openState(p));
      var dl = box.appendChild(el("dl"));
      row(dl, "hours", formatHours(p.opening_hours));
      if (p.season) { row(dl, "season", formatSeason(p.season)); }
      if (p.capacity != null) {
        row(dl, p.kind === "parking" ? "free_spaces" : "free_places", p.free_places + " / " + p.capacity)
          .className = "free";
      }
      if (p.phone) { row(dl, "phone", telLink(p.phone)); }
      if (p.address) { row(dl, "address", p.address); }
      row(dl, "grid", p.grid_code ? [p.grid_name, el("span", { "class": "code" }, p.grid_code)] : t("no_grid"));
      if (p.squad) { row(dl, "squad", [p.squad, p.squad_phone ? telLink(p.squad_phone) : null]); }
      amenityList(p, box);
      G.live.render(box.appendChild(el("div", { "class": "live" })), p);
      hooks.pointPopup.forEach(function (hook) { hook(box, p, marker); });
      return box;
    }

    function gridPopup(p, layer) {
      var c = coverage[p.code];
      var pct = c && c.covered_pct != null ? c.covered_pct.toFixed(1) + " % (" + c.covered_km + " / " +
        c.street_km + " km)" : t("coverage_none");
      var box = el("div", { "class": "grid-popup", "data-grid-code": p.code });
      box.appendChild(el("h2", {}, p.name));
      var dl = box.appendChild(el("dl"));
      row(dl, "grid", el("span", { "class": "code" }, p.code));
      row(dl, "coverage", pct);
      row(dl, "officer", [p.officer_name, p.officer_phone ? telLink(p.officer_phone) : null]);
      row(dl, "squad", [p.squad, p.squad_phone ? telLink(p.squad_phone) : null]);
      hooks.gridPopup.forEach(function (hook) { hook(box, p, layer); });
      return box;
    }

    // -- districts and grids (loaded once: a city has few) ---------------------------------------------------
    function coverageColour(pct) {
      if (pct == null) { return config.no_streets_colour; }
      for (var i = 0; i < config.coverage_classes.length; i += 1) {
        if (pct >= config.coverage_classes[i][0]) { return config.coverage_classes[i][1]; }
      }
      return config.coverage_classes[config.coverage_classes.length - 1][1];
    }

    function gridStyle(feature) {
      var close = map.getZoom() >= config.grid_label_min_zoom;
      var c = coverage[feature.properties.code];
      // Until the coverage has arrived a grid is an outline only (grey would claim "no streets").
      var fill = coverageLoaded ? (close ? 0.2 : 0.5) : 0;
      return { color: close ? "#1b2631" : "#566573", weight: close ? 2.5 : 0.8, opacity: 0.9,
               fillColor: coverageColour(c ? c.covered_pct : null), fillOpacity: fill };
    }

    function loadDistricts() {
      G.getJSON(config.api.districts).then(function (collection) {
        groups.districts.addLayer(L.geoJSON(collection, {
          pane: ensurePane("districts"), interactive: false, pmIgnore: true,
          style: { color: "#17202a", weight: 3.5, fill: false },
          onEachFeature: function (f, layer) { tag(layer, "districts"); }
        }));
      }).catch(failed).finally(initialDone);
    }

    // Grids are drawn as soon as they arrive and coloured when their coverage does (slower on a big city).
    function loadGrids() {
      G.getJSON(config.api.coverage_grids).then(function (body) {
        body.grids.forEach(function (g) { coverage[g.code] = g; });
        coverageLoaded = true;
        document.body.setAttribute("data-coverage-loaded", "true");
        if (gridLayer) { gridLayer.setStyle(gridStyle); }
      }).catch(failed);
      G.getJSON(config.api.grids).then(function (collection) {
        gridLayer = L.geoJSON(collection, {
          pane: ensurePane("grids"), style: gridStyle,
          onEachFeature: function (f, layer) { tag(layer, "grids"); }
        });
        gridLayer.bindPopup(function (layer) { return gridPopup(layer.feature.properties, layer); });
        groups.grids.addLayer(gridLayer);
        groups.grids.addLayer(gridLabels);
        updateGrids();
      }).catch(failed).finally(initialDone);
    }

    // Close up, grids are drawn as outlines with their codes; labels only for grids in view.
    function updateGrids() {
      if (!gridLayer) { return; }
      gridLayer.setStyle(gridStyle);
      gridLabels.clearLayers();
      if (map.getZoom() < config.grid_label_min_zoom) { return; }
      var bounds = map.getBounds();
      var pane = ensurePane("gridLabels");
      gridLayer.eachLayer(function (layer) {
        var box = layer.getBounds();
        if (!bounds.intersects(box)) { return; }
        gridLabels.addLayer(tag(L.marker(box.getCenter(), {
          pane: pane, interactive: false, keyboard: false, pmIgnore: true,
          icon: L.divIcon({ className: "grid-label", iconSize: null,
                            html: "<span>" + escapeHtml(layer.feature.properties.code) + "</span>" })
        }), "gridLabels"));
      });
    }

    // -- points and streets (loaded for the view, so a city of any size stays small) -----------------------
    function clusterIcon(kind) {
      return function (cluster) {
        var n = cluster.getChildCount();
        return L.divIcon({
          className: "poi-cluster kind-" + kind.code, iconSize: [40, 40],
          html: "<span class=\"poi\" style=\"--kind-colour: " + G.KIND_COLOURS[kind.code] + "\">" +
            icon("kind-" + kind.code) +
            "<b>" + n + "</b><span class=\"visually-hidden\">" +
            escapeHtml(t("cluster_label", { n: n, kind: kindLabel(kind.code) })) + "</span></span>"
        });
      };
    }

    // No chunked loading: a chunked add goes on after clearLayers and would bring back the previous view's markers.
    function makeClusters() {
      config.kinds.forEach(function (kind) {
        var cluster = L.markerClusterGroup({
          showCoverageOnHover: false, maxClusterRadius: 45, disableClusteringAtZoom: 17,
          spiderfyOnMaxZoom: false, iconCreateFunction: clusterIcon(kind)
        });
        tag(cluster, kind.code);
        clusters[kind.code] = cluster;
        groups[kind.code].addLayer(cluster);
      });
    }

    function isStale(p) {
      var age = p.capacity != null ? G.live.age(p) : null;
      return Boolean(age && age.stale);
    }

    function markerTitle(p) {
      var title = p.name + " · " + kindLabel(p.kind);
      if (p.kind === "kiosk" && p.capacity != null) {
        title += " · " + t("free_badge", { free: p.free_places, capacity: p.capacity });
        if (isStale(p)) { title += " · " + t("stale", { n: G.live.staleAfterMinutes }); }
      }
      return title;
    }

    /* The marker's icon: the kind's disc, and on a kiosk the free places as a badge (dashed and marked "?" when
       the count is older than the stale age). Only numbers and our own sprite go into its HTML. */
    function pointIcon(p) {
      var badge = "";
      if (p.kind === "kiosk" && p.free_places != null) {
        var stale = isStale(p);
        badge = "<b class=\"badge " + (p.free_places > 0 ? "free" : "full") + (stale ? " stale" : "") + "\">" +
          Number(p.free_places) + (stale ? "?" : "") + "</b>";
      }
      return L.divIcon({
        className: "poi-marker kind-" + p.kind, iconSize: [30, 30], iconAnchor: [15, 15], popupAnchor: [0, -12],
        html: "<span class=\"poi\" style=\"--kind-colour: " + G.KIND_COLOURS[p.kind] + "\">" +
          icon("kind-" + p.kind) + badge + "</span>"
      });
    }

    var markersById = {};

    function pointMarker(feature) {
      var p = feature.properties;
      var coords = feature.geometry.coordinates;
      var marker = L.marker([coords[1], coords[0]], {
        title: markerTitle(p), alt: markerTitle(p), keyboard: true, riseOnHover: true, icon: pointIcon(p),
        pmIgnore: true  // for Leaflet-Geoman (editors): moved by the editing panel, and nothing snaps to it
      });
      marker.feature = feature;
      tag(marker, p.kind);
      marker.bindPopup(function () { return pointPopup(marker.feature.properties, marker); },
                       { maxWidth: 320, minWidth: 220 });
      if (p.kind === "night_market" && p.opening_hours) {
        marker.bindTooltip(el("span", {}, formatHours(p.opening_hours)), {
          permanent: true, direction: "bottom", offset: [0, 14], className: "night-hours"
        });
      }
      markersById[p.id] = marker;
      return marker;
    }

    function drawPoints(collection) {
      lastPoints = collection;
      markersById = {};
      var byKind = {};
      config.kinds.forEach(function (k) { byKind[k.code] = []; });
      collection.features.forEach(function (f) { byKind[f.properties.kind].push(pointMarker(f)); });
      config.kinds.forEach(function (k) {
        clusters[k.code].clearLayers();
        clusters[k.code].addLayers(byKind[k.code]);
      });
    }

    function streetStyle(feature) {
      var weights = { trunk: 5, primary: 4, secondary: 3.5, tertiary: 2.5, residential: 1.5 };
      return { color: "#5f6a6a", weight: weights[feature.properties["class"]] || 1.2, opacity: 0.85 };
    }

    function drawStreets(collection) {
      groups.streets.clearLayers();
      groups.streets.addLayer(L.geoJSON(collection, {
        pane: ensurePane("streets"), style: streetStyle, pmIgnore: true,  // a grid's corner snaps to grids only
        onEachFeature: function (f, layer) {
          tag(layer, "streets");
          layer.bindPopup(function () {
            var box = el("div", { "class": "street-popup" });
            box.appendChild(el("strong", {}, f.properties.name));
            box.appendChild(el("br"));
            box.appendChild(document.createTextNode(t("street_class") + ": " + f.properties["class"]));
            return box;
          });
        }
      }));
    }

    // Whichever view load finishes first completes the initial load (a user may move before it answers).
    function viewLoaded() {
      view.serial += 1;
      document.body.setAttribute("data-view-serial", String(view.serial));
      document.body.setAttribute("data-view", "ready");
      if (firstViewPending) {
        firstViewPending = false;
        initialDone();
      }
    }

    // While an editor drags a marker the drawn markers stay (a reload would replace the one in hand).
    var viewHeld = false;

    function loadView(force) {
      if (viewHeld) { return; }
      updateGrids();
      if (map.getZoom() < config.limits.data_min_zoom) {
        setHint("zoom_in_for_data");
        viewLoaded();
        return;
      }
      var bounds = map.getBounds();
      if (force !== true && view.bounds && view.bounds.contains(bounds) && !view.truncated) {
        setHint(null);
        viewLoaded();
        return;
      }
      // A margin around the view: small pans and zooming in need no new request.
      var padded = bounds.pad(0.25);
      var bbox = G.bbox(padded);
      if (controller) { controller.abort(); }
      controller = new AbortController();
      document.body.setAttribute("data-view", "loading");
      Promise.all([
        G.getJSON(config.api.points + "?bbox=" + bbox + "&limit=" + config.limits.point_limit,
                  { signal: controller.signal }),
        G.getJSON(config.api.streets + "?bbox=" + bbox + "&limit=" + config.limits.street_limit,
                  { signal: controller.signal })
      ]).then(function (results) {
        drawPoints(results[0]);
        drawStreets(results[1]);
        view.bounds = padded;
        view.truncated = Boolean(results[0].truncated || results[1].truncated);
        setHint(view.truncated ? "truncated" : null);
        if (statusKey === "error_network") { setStatus(null); }
        viewLoaded();
      }).catch(function (err) {
        failed(err);
        if (!err || err.name !== "AbortError") { viewLoaded(); }
      });
    }

    function scheduleView() {
      window.clearTimeout(timer);
      timer = window.setTimeout(loadView, DEBOUNCE_MS);
    }

    // -- live occupancy, status and notices ------------------------------------------------------------------
    var liveSince = null;

    /* Changes since the last answer (the API looks a little further back, for changes committed just after
       it); before the first, since the newest change among the points drawn (nothing is asked until points are
       drawn: a change before they were read is in what was read). */
    function liveQuery() {
      if (liveSince === null) {
        if (!lastPoints || !lastPoints.features.length) { return null; }
        liveSince = Math.max.apply(null, lastPoints.features.map(function (f) {
          return Date.parse(f.properties.live_updated_at) || 0;
        }));
      }
      return "since=" + encodeURIComponent(new Date(liveSince).toISOString());
    }

    function applyLive(answer) {
      liveSince = Date.parse(answer.now);
      var statusChanged = false, changed = {};
      answer.points.forEach(function (live) {
        var marker = markersById[live.id];
        if (!marker) { return; }
        var p = marker.feature.properties;
        if (p.live_updated_at === live.live_updated_at) { return; }
        if (p.status !== live.status) { statusChanged = true; }
        ["occupancy", "capacity", "status", "notice", "live_updated_at"].forEach(function (k) { p[k] = live[k]; });
        p.free_places = p.capacity == null ? null : p.capacity - (p.occupancy || 0);
        changed[live.id] = true;
      });
      // Ages and stale marks move on with time: a kiosk's badge is redrawn when its count or staleness changed,
      // an open popup rebuilt when its point changed, else only its age line.
      Object.keys(markersById).forEach(function (id) {
        var marker = markersById[id], p = marker.feature.properties;
        if (p.kind === "kiosk" && p.capacity != null) {
          var badge = p.free_places + "|" + isStale(p);
          if (marker.liveBadge !== undefined && marker.liveBadge !== badge) {
            marker.setIcon(pointIcon(p));
            marker.options.title = marker.options.alt = markerTitle(p);
            if (marker._icon) { marker._icon.title = marker.options.title; }
          }
          marker.liveBadge = badge;
        }
        if (!marker.isPopupOpen()) { return; }
        if (changed[id]) { marker.setPopupContent(pointPopup(p, marker)); return; }
        var box = marker.getPopup().getElement();
        box = box && box.querySelector(".point-popup > .live");
        if (box) { G.live.render(box, p); }
      });
      // Whether a point is open now depends on its hours too, which only the server reads: ask for the view.
      if (statusChanged) { loadView(true); }
      document.body.setAttribute("data-live", answer.now);
    }

    // -- permalink: #zoom/lat/lon ----------------------------------------------------------------------------
    function parseHash() {
      var m = /^#(\d{1,2})\/(-?\d{1,2}(?:\.\d+)?)\/(-?\d{1,3}(?:\.\d+)?)$/.exec(window.location.hash);
      if (!m) { return null; }
      var zoom = Number(m[1]), lat = Number(m[2]), lon = Number(m[3]);
      if (Math.abs(lat) > 85 || Math.abs(lon) > 180) { return null; }
      return { zoom: Math.max(map.getMinZoom(), Math.min(map.getMaxZoom(), zoom)), lat: lat, lon: lon };
    }

    function writeHash() {
      var c = map.getCenter();
      var hash = "#" + map.getZoom() + "/" + c.lat.toFixed(5) + "/" + c.lng.toFixed(5);
      if (window.location.hash !== hash) { window.history.replaceState(null, "", hash); }
    }

    function restoreHash() {
      var target = parseHash();
      if (target) { map.setView([target.lat, target.lon], target.zoom, { animate: false }); }
    }

    // -- controls ---------------------------------------------------------------------------------------------
    function addPanel() {
      var Panel = L.Control.extend({
        options: { position: "topleft" },
        onAdd: function () {
          var div = L.DomUtil.create("div", "leaflet-control city-panel");
          div.innerHTML =
            "<button type=\"button\" class=\"lang-switch\" data-i18n=\"language_switch\" " +
            "data-i18n-aria=\"language_switch_aria\"></button>" +
            "<form class=\"search\" role=\"search\">" +
            "<label for=\"point-search\" class=\"visually-hidden\" data-i18n=\"search_label\"></label>" +
            "<input id=\"point-search\" type=\"search\" autocomplete=\"off\" maxlength=\"100\" " +
            "data-i18n-placeholder=\"search_placeholder\" data-i18n-aria=\"search_label\">" +
            "<button type=\"submit\" data-i18n=\"search_button\"></button></form>" +
            "<p class=\"search-status\" aria-live=\"polite\"></p><ul class=\"search-results\"></ul>";
          L.DomEvent.disableClickPropagation(div);
          L.DomEvent.disableScrollPropagation(div);
          return div;
        }
      });
      var panel = new Panel().addTo(map);
      var div = panel.getContainer();
      div.querySelector(".lang-switch").addEventListener("click", switchLanguage);
      var form = div.querySelector("form");
      var input = div.querySelector("input");
      ui.results = { list: div.querySelector(".search-results"), status: div.querySelector(".search-status"),
                     lastQuery: null, features: [] };
      ui.results.render = renderResults;
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        search(input.value.trim());
      });
    }

    function search(q) {
      if (!q) { return; }
      G.getJSON(config.api.search + "?q=" + encodeURIComponent(q) + "&limit=10").then(function (body) {
        ui.results.lastQuery = q;
        ui.results.features = body.features;
        renderResults();
      }).catch(failed);
    }

    function renderResults() {
      var r = ui.results;
      r.status.textContent = r.features.length ? t("search_found", { n: r.features.length })
        : t("search_none", { q: r.lastQuery });
      r.list.innerHTML = "";
      r.features.forEach(function (f) {
        var li = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.innerHTML = kindSwatch(f.properties.kind);  // our own icon and colour, no data
        button.appendChild(el("span", { "class": "name" }, f.properties.name));
        button.appendChild(document.createTextNode(" "));
        button.appendChild(el("span", { "class": "address" }, f.properties.address || ""));
        button.addEventListener("click", function () { showResult(f); });
        li.appendChild(button);
        r.list.appendChild(li);
      });
    }

    function showResult(feature) {
      var c = feature.geometry.coordinates;
      map.setView([c[1], c[0]], Math.max(map.getZoom(), 17), { animate: false });
      L.popup({ maxWidth: 320, minWidth: 220, offset: [0, -12] }).setLatLng([c[1], c[0]])
        .setContent(pointPopup(feature.properties, markersById[feature.properties.id])).openOn(map);
    }

    function addLegend() {
      var Legend = L.Control.extend({
        options: { position: "bottomright" },
        onAdd: function () {
          var div = L.DomUtil.create("div", "leaflet-control city-legend");
          L.DomEvent.disableClickPropagation(div);
          L.DomEvent.disableScrollPropagation(div);
          return div;
        }
      });
      var control = new Legend().addTo(map);
      var div = control.getContainer();
      // Point kinds are explained by the icons in the layer control; the legend explains colours and badges.
      // Small screens (or 200 % zoom) start with it folded so it does not cover the map.
      var open = map.getSize().y >= 600 && map.getSize().x >= 700;
      control.render = function () {
        var details = div.querySelector("details");
        if (details) { open = details.open; }
        var classes = config.coverage_classes.map(function (c, i) {
          var upper = i === 0 ? "" : "–" + config.coverage_classes[i - 1][0];
          return "<li><span class=\"swatch\" style=\"background:" + c[1] + "\"></span>" +
            (i === 0 ? "≥ " + c[0] : c[0] + upper) + " %</li>";
        }).join("") + "<li><span class=\"swatch\" style=\"background:" + config.no_streets_colour + "\"></span>" +
          escapeHtml(t("legend_no_streets")) + "</li>";
        div.innerHTML = "<details" + (open ? " open" : "") + "><summary>" + escapeHtml(t("legend")) + "</summary>" +
          "<p class=\"legend-badge\"><b class=\"badge free\">3</b> " + escapeHtml(t("legend_free_places")) + "</p>" +
          "<p class=\"legend-badge\"><span class=\"night-hours\">18:00-02:00</span> " +
          escapeHtml(t("legend_night_hours")) + "</p>" +
          "<h2>" + escapeHtml(t("legend_coverage")) + "</h2><ul class=\"legend-coverage\">" + classes + "</ul>" +
          "</details>";
      };
      ui.legend = control;
    }

    function addLocate() {
      if (!L.control.locate) { return; }
      ui.locate = L.control.locate({
        position: "topleft", showPopup: false, flyTo: false, initialZoomLevel: 16,
        strings: { title: t("locate_title") },
        onLocationError: function () { setStatus("locate_failed"); }
      }).addTo(map);
    }

    // -- layers and their control -----------------------------------------------------------------------------
    // One group per layer of the control: districts, grids, streets and one per point kind.
    function addLayerControl() {
      var overlays = {};
      LAYER_KEYS.forEach(function (key) {
        groups[key] = tag(L.featureGroup().addTo(map), key);
        overlays["<span data-i18n=\"layer_" + key + "\">" + escapeHtml(t("layer_" + key)) + "</span>"] = groups[key];
      });
      config.kinds.forEach(function (kind) {
        groups[kind.code] = tag(L.featureGroup().addTo(map), kind.code);
        overlays[kindSwatch(kind.code) + "<span data-kind-label=\"" + kind.code + "\">" +
                 escapeHtml(kindLabel(kind.code)) + "</span>"] = groups[kind.code];
      });
      L.control.layers(null, overlays, { collapsed: false, position: "topright" }).addTo(map);
    }

    // -- start ------------------------------------------------------------------------------------------------
    addLayerControl();
    // Controls first in the tab order: otherwise a keyboard user tabs through every marker to reach them.
    map.getContainer().insertBefore(map._controlContainer, map.getContainer().firstChild);
    makeClusters();
    addLocate();
    addPanel();
    addLegend();
    restoreHash();
    writeHash();
    applyLanguage();
    setStatus("loading");
    loadDistricts();
    loadGrids();
    loadView();
    map.on("moveend", function () { writeHash(); scheduleView(); });
    window.addEventListener("hashchange", restoreHash);
    G.live.start(liveQuery, applyLive);
    G.city = {
      map: map, groups: groups, clusters: clusters, hooks: hooks, setStatus: setStatus,
      marker: function (id) { return markersById[id]; },
      reloadView: function () { loadView(true); },
      holdView: function (held) {
        viewHeld = held;
        window.clearTimeout(timer);
        if (held && controller) { controller.abort(); }  // an answer on its way would replace the markers too
        if (!held) { loadView(true); }
      },
      reloadGrids: function () {
        if (gridLayer) { groups.grids.removeLayer(gridLayer); gridLayer = null; }
        coverageLoaded = false;
        initialPending += 1;
        loadGrids();
      }
    };
  }

  startCityMap();
}());
