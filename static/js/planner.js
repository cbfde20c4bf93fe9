/* geoservice planner page: asks the coverage API and draws, sums up and lists the answer. No third-party code here.
 *
 * The page's state is what the form says (radius, kinds, mode). Every change asks
 * /api/v1/coverage/streets and /api/v1/coverage/grids for that state; an answer to an older state is dropped, so
 * what is shown always belongs to what the form says. <body data-planner-state> is "loading", "ready" or "error",
 * and data-planner-query is the query string the shown result was computed for (tests wait on both).
 */
(function () {
  "use strict";

  var G = window.geoservice;
  var config = G.config;
  var t = G.t, escapeHtml = G.escapeHtml;
  // YlGn classes: low coverage pale, high coverage dark green; uncovered streets in red stand out on all of them.
  var CLASSES = [
    { upTo: 20, colour: "#ffffcc" }, { upTo: 40, colour: "#c2e699" }, { upTo: 60, colour: "#78c679" },
    { upTo: 80, colour: "#31a354" }, { upTo: 100, colour: "#006837" }
  ];
  var NO_STREETS = "#d5d8dc";
  var UNCOVERED = "#d7191c";
  var GAP = "#1b1b1b";
  var OVERLAP = "#7b3294";
  var SELECTED = "#2c7bb6";
  var PANES = { districts: 405, grids: 410, gaps: 420, streets: 430, uncovered: 440, points: 620 };
  var NUMERIC = { street_km: true, covered_km: true, uncovered_km: true, covered_pct: true, points: true };

  var P = { counts: {} };
  var map;
  var layers = {}, gridShapes = {}, gridRows = [], coverageByCode = {};
  var viewPoints = null, layerControl = null, legend = null;
  // The streets and points of the view (with a margin), loaded by bbox like the city map: a big city's whole
  // street and point layers would be megabytes the planner does not need to see at once.
  var view = { bounds: null, truncated: false, timer: null, controller: null };
  var sortKey = null, sortAscending = true, selectedCode = null;
  var seq = 0, shownQuery = null, pendingQuery = null, debounce = null;

  // -- text ------------------------------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function fixed(value, digits) { return value == null ? t("no_value") : Number(value).toFixed(digits); }

  function applyLanguage() {
    G.applyLanguage();
    Array.prototype.forEach.call(document.querySelectorAll("button.sort"), function (button) {
      button.setAttribute("aria-label", t("sort_by", { column: t("col_" + button.getAttribute("data-key")) }));
    });
    Array.prototype.forEach.call(document.querySelectorAll("a.export-link"), function (a) {
      a.setAttribute("aria-label", t("export_aria", { what: t("export_" + a.getAttribute("data-what")),
                                                     fmt: a.textContent.trim() }));
    });
    buildLayerControl();
    buildLegend();
    if (P.lastStreets) { renderSummary(P.lastStreets.summary); }
    if (P.lastGaps) { renderGapSummary(P.lastGaps.summary); bindGapPopups(); }
    renderTable();
    bindGridPopups();
  }

  // -- the form --------------------------------------------------------------------------------------------

  function radiusValue() {
    var raw = $("radius-number").value.trim();
    var value = Number(raw);
    var ok = raw !== "" && isFinite(value) && value > 0 && value <= config.max_radius;
    $("radius-error").hidden = ok;
    $("radius-number").setAttribute("aria-invalid", ok ? "false" : "true");
    return ok ? value : null;
  }

  function checkedKinds() {
    return Array.prototype.filter.call(document.querySelectorAll("input[name=kind]"), function (box) {
      return box.checked;
    }).map(function (box) { return box.value; });
  }

  function mode() { return document.querySelector("input[name=mode]:checked").value; }

  /** The query for what the form says, or null when the form says something the API would refuse. */
  function currentQuery() {
    var radius = radiusValue();
    var kinds = checkedKinds();
    // No kind checked would mean "all kinds" to the API: say so instead of silently showing everything.
    $("kinds-error").hidden = kinds.length > 0;
    if (radius === null || kinds.length === 0) { return null; }
    var q = new URLSearchParams();
    q.append("radius", String(radius));
    kinds.forEach(function (k) { q.append("kind", k); });
    q.append("mode", mode());
    return q;
  }

  function bindForm() {
    var range = $("radius-range"), number = $("radius-number");
    range.addEventListener("input", function () { number.value = range.value; radiusValue(); });
    range.addEventListener("change", function () { number.value = range.value; update(); });
    number.addEventListener("input", function () {
      var value = radiusValue();
      if (value !== null) { range.value = String(Math.min(Math.max(value, Number(range.min)), Number(range.max))); }
      clearTimeout(debounce);
      debounce = setTimeout(update, 400);
    });
    number.addEventListener("change", update);
    Array.prototype.forEach.call(document.querySelectorAll("input[name=kind], input[name=mode]"), function (el) {
      el.addEventListener("change", update);
    });
    $("kinds-all").addEventListener("click", function () { setAllKinds(true); });
    $("kinds-none").addEventListener("click", function () { setAllKinds(false); });
    $("planner-form").addEventListener("submit", function (event) { event.preventDefault(); update(); });
    $("lang-switch").addEventListener("click", function () {
      G.switchLanguage();
      applyLanguage();
      if (shownQuery) { writeAddress(shownQuery); }
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.sort"), function (button) {
      button.addEventListener("click", function () { sortBy(button.getAttribute("data-key")); });
    });
    $("grid-table").querySelector("tbody").addEventListener("click", function (event) {
      var row = event.target.closest("tr[data-code]");
      if (row) { zoomToGrid(row.getAttribute("data-code")); }
    });
  }

  function setAllKinds(checked) {
    Array.prototype.forEach.call(document.querySelectorAll("input[name=kind]"), function (box) {
      box.checked = checked;
    });
    update();
  }

  // -- asking the API --------------------------------------------------------------------------------------

  function setState(state, text) {
    document.body.setAttribute("data-planner-state", state);
    $("planner-status").textContent = text;
  }

  function update() {
    clearTimeout(debounce);
    var q = currentQuery();
    if (q === null) { return; }
    var key = q.toString();
    if (key === shownQuery || key === pendingQuery) { return; }
    pendingQuery = key;
    var mine = ++seq;
    setState("loading", t("status_updating"));
    updateExportLinks(key);
    Promise.all([G.getJSON(config.api.coverage_streets + "?" + key),
                 G.getJSON(config.api.coverage_grids + "?" + key)]).then(function (answers) {
      if (mine !== seq) { return; }
      pendingQuery = null;
      shownQuery = key;
      showStreets(answers[0]);
      showGrids(answers[1].grids);
      showPoints(q.getAll("kind"));
      document.body.setAttribute("data-planner-query", key);
      writeAddress(key);
      setState("ready", t("status_ready"));
    }).catch(function (error) {
      if (mine !== seq) { return; }
      pendingQuery = null;
      setState("error", t("status_error", { description: error.message }));
    });
  }

  function updateExportLinks(key) {
    Array.prototype.forEach.call(document.querySelectorAll("a.export-link"), function (a) {
      a.href = config.api["coverage_" + a.getAttribute("data-what")] + "?" + key + "&f=" +
        a.getAttribute("data-format");
    });
  }

  // -- drawing ---------------------------------------------------------------------------------------------

  function pane(name) {
    var paneName = "planner-" + name;
    if (!map.getPane(paneName)) { map.createPane(paneName).style.zIndex = PANES[name]; }
    return paneName;
  }

  function pctColour(pct) {
    if (pct == null) { return NO_STREETS; }
    for (var i = 0; i < CLASSES.length; i++) {
      if (pct < CLASSES[i].upTo || i === CLASSES.length - 1) { return CLASSES[i].colour; }
    }
    return NO_STREETS;
  }

  function gridStyle(code) {
    var row = coverageByCode[code];
    var selected = code === selectedCode;
    return { color: selected ? SELECTED : "#5d6d7e", weight: selected ? 4 : 1, fillOpacity: 0.55,
             fillColor: pctColour(row ? row.covered_pct : null) };
  }

  function showStreets(answer) {
    P.lastStreets = answer;
    layers.uncovered.clearLayers();
    layers.uncovered.addData(answer);
    P.counts.uncovered = answer.features.length;
    renderSummary(answer.summary);
  }

  function showGrids(grids) {
    coverageByCode = {};
    grids.forEach(function (g) {
      g.points = Object.keys(g.points_by_kind).reduce(function (sum, k) { return sum + g.points_by_kind[k]; }, 0);
      coverageByCode[g.code] = g;
    });
    gridRows = grids;
    layers.grids.eachLayer(function (layer) { layer.setStyle(gridStyle(layer.feature.properties.code)); });
    bindGridPopups();
    renderTable();
  }

  function showPoints(kinds) {
    if (!viewPoints) { return; }
    var wanted = {};
    kinds.forEach(function (k) { wanted[k] = true; });
    layers.points.clearLayers();
    layers.points.addData({ type: "FeatureCollection", features: viewPoints.features.filter(function (f) {
      return f.properties.status === "open" && wanted[f.properties.kind];
    }) });
    P.counts.points = layers.points.getLayers().length;
  }

  function gridPopup(code) {
    var g = coverageByCode[code];
    var shape = gridShapes[code];
    var name = shape ? shape.feature.properties.name : code;
    var lines = ["<strong>" + escapeHtml(name) + "</strong>", escapeHtml(code)];
    if (g) {
      lines.push(escapeHtml(t("col_street_km")) + ": " + fixed(g.street_km, 3));
      lines.push(escapeHtml(t("col_uncovered_km")) + ": " + fixed(g.uncovered_km, 3));
      lines.push(escapeHtml(t("col_covered_pct")) + ": " + fixed(g.covered_pct, 2));
    }
    return lines.join("<br>");
  }

  function bindGridPopups() {
    Object.keys(gridShapes).forEach(function (code) { gridShapes[code].bindPopup(gridPopup(code)); });
  }

  function gapPopup(p) {
    var lines = ["<strong>" + escapeHtml(t(p.type)) + "</strong>",
                 Math.round(p.area_m2).toLocaleString() + " " + escapeHtml(t("m2"))];
    if (p.grids) { lines.push(p.grids.map(escapeHtml).join(", ")); }
    return lines.join("<br>");
  }

  function bindGapPopups() {
    layers.gaps.eachLayer(function (layer) { layer.bindPopup(gapPopup(layer.feature.properties)); });
  }

  function makeLayers() {
    layers.districts = L.geoJSON(null, { pane: pane("districts"), interactive: false,
                                         style: { color: "#1b2631", weight: 3, fill: false } });
    layers.streets = L.geoJSON(null, { pane: pane("streets"), interactive: false,
                                       style: { color: "#7f8c8d", weight: 1, opacity: 0.7 } });
    layers.grids = L.geoJSON(null, {
      pane: pane("grids"),
      style: function (f) { return gridStyle(f.properties.code); },
      onEachFeature: function (f, layer) { gridShapes[f.properties.code] = layer; }
    });
    layers.gaps = L.geoJSON(null, {
      pane: pane("gaps"),
      style: function (f) {
        var gap = f.properties.type === "gap";
        return { color: gap ? GAP : OVERLAP, weight: 3, dashArray: gap ? "6 4" : null,
                 fillColor: gap ? GAP : OVERLAP, fillOpacity: 0.45 };
      }
    });
    layers.uncovered = L.geoJSON(null, {
      pane: pane("uncovered"),
      style: { color: UNCOVERED, weight: 4, opacity: 0.9 },
      onEachFeature: function (f, layer) {
        layer.bindPopup(escapeHtml(f.properties.name) + "<br>" + escapeHtml(t("uncovered_km")) + ": " +
                        f.properties.length_m + " m");
      }
    });
    layers.points = L.geoJSON(null, {
      pane: pane("points"),
      pointToLayer: function (f, latlng) {
        return L.circleMarker(latlng, { pane: pane("points"), radius: 5, color: "#ffffff", weight: 1.5,
                                        fillColor: "#154360", fillOpacity: 0.95 });
      },
      onEachFeature: function (f, layer) {
        layer.bindPopup(escapeHtml(f.properties.name) + "<br>" + escapeHtml(G.kindLabel(f.properties.kind)));
      }
    });
    ["districts", "streets", "grids", "gaps", "uncovered", "points"].forEach(function (name) {
      layers[name].addTo(map);
    });
  }

  function buildLayerControl() {
    if (layerControl) { layerControl.remove(); }
    var overlays = {};
    ["grids", "gaps", "uncovered", "points", "streets", "districts"].forEach(function (name) {
      overlays[escapeHtml(t("layer_" + name))] = layers[name];
    });
    layerControl = L.control.layers(null, overlays, { collapsed: false, position: "topright" }).addTo(map);
  }

  function buildLegend() {
    if (legend) { legend.remove(); }
    legend = L.control({ position: "bottomright" });
    legend.onAdd = function () {
      var div = L.DomUtil.create("div", "planner-legend");
      var rows = ["<strong>" + escapeHtml(t("legend_title")) + "</strong>"];
      var from = 0;
      CLASSES.forEach(function (c) {
        rows.push("<span class=\"swatch\" style=\"background:" + c.colour + "\"></span>" + from + "–" + c.upTo + " %");
        from = c.upTo;
      });
      rows.push("<span class=\"swatch\" style=\"background:" + NO_STREETS + "\"></span>" +
                escapeHtml(t("legend_no_streets")));
      rows.push("<span class=\"line\" style=\"background:" + UNCOVERED + "\"></span>" +
                escapeHtml(t("legend_uncovered")));
      rows.push("<span class=\"swatch gap\" style=\"background:" + GAP + "\"></span>" + escapeHtml(t("legend_gap")));
      rows.push("<span class=\"swatch\" style=\"background:" + OVERLAP + "\"></span>" +
                escapeHtml(t("legend_overlap")));
      div.innerHTML = rows.join("<br>");
      return div;
    };
    legend.addTo(map);
  }

  // -- the panel -------------------------------------------------------------------------------------------

  function renderSummary(s) {
    $("sum-total_km").textContent = fixed(s.total_km, 3);
    $("sum-covered_km").textContent = fixed(s.covered_km, 3);
    $("sum-uncovered_km").textContent = fixed(s.uncovered_km, 3);
    $("sum-covered_pct").textContent = fixed(s.covered_pct, 2);
    var list = $("top-streets");
    list.textContent = "";
    s.uncovered_by_street.slice(0, 10).forEach(function (street) {
      var li = document.createElement("li");
      li.textContent = (street.name || t("no_value")) + " · " + fixed(street.uncovered_km, 3) + " " + t("km");
      list.appendChild(li);
    });
  }

  function renderGapSummary(s) {
    $("sum-gaps").textContent = s.gaps + " · " + Math.round(s.gap_area_m2).toLocaleString() + " " + t("m2");
    $("sum-overlaps").textContent = s.overlaps + " · " + Math.round(s.overlap_area_m2).toLocaleString() + " " +
      t("m2");
    $("sum-slivers").textContent = String(s.sliver_gaps + s.sliver_overlaps);
  }

  function compareRows(a, b) {
    var x = a[sortKey], y = b[sortKey];
    // Grids without streets have no percentage: they go last whichever way the column is sorted.
    if (x == null || y == null) { return x == null ? (y == null ? 0 : 1) : -1; }
    var order = NUMERIC[sortKey] ? x - y : String(x).localeCompare(String(y), G.lang() === "zh" ? "zh-CN" : "en");
    if (order === 0) { order = a.code < b.code ? -1 : (a.code > b.code ? 1 : 0); }
    return sortAscending ? order : -order;
  }

  function sortBy(key) {
    sortAscending = key === sortKey ? !sortAscending : true;
    sortKey = key;
    renderTable();
  }

  function gridName(code) {
    var shape = gridShapes[code];
    return shape ? shape.feature.properties.name : (coverageByCode[code] || {}).name || code;
  }

  function renderTable() {
    var rows = sortKey ? gridRows.slice().sort(compareRows) : gridRows;
    Array.prototype.forEach.call(document.querySelectorAll("#grid-table th[data-key]"), function (th) {
      var key = th.getAttribute("data-key");
      th.setAttribute("aria-sort", key === sortKey ? (sortAscending ? "ascending" : "descending") : "none");
    });
    var body = $("grid-table").querySelector("tbody");
    var html = rows.map(function (g) {
      var cells = ["<td><button type=\"button\" class=\"zoom\" aria-label=\"" +
                   escapeHtml(t("zoom_to_grid", { name: g.name + " " + g.code })) + "\">" + escapeHtml(g.code) +
                   "</button></td>", "<td>" + escapeHtml(g.name) + "</td>"];
      cells.push("<td>" + fixed(g.street_km, 3) + "</td>", "<td>" + fixed(g.covered_km, 3) + "</td>",
                 "<td>" + fixed(g.uncovered_km, 3) + "</td>", "<td>" + fixed(g.covered_pct, 2) + "</td>",
                 "<td>" + g.points + "</td>");
      var selected = g.code === selectedCode ? " class=\"selected\" aria-current=\"true\"" : "";
      return "<tr data-code=\"" + escapeHtml(g.code) + "\"" + selected + ">" + cells.join("") + "</tr>";
    });
    body.innerHTML = html.join("");
  }

  function zoomToGrid(code) {
    var shape = gridShapes[code];
    if (!shape) { return; }
    var previous = selectedCode;
    selectedCode = code;
    if (previous && gridShapes[previous]) { gridShapes[previous].setStyle(gridStyle(previous)); }
    shape.setStyle(gridStyle(code));
    shape.bringToFront();
    map.fitBounds(shape.getBounds(), { animate: false, padding: [24, 24] });
    Array.prototype.forEach.call(document.querySelectorAll("#grid-table tr[data-code]"), function (tr) {
      var on = tr.getAttribute("data-code") === code;
      tr.classList.toggle("selected", on);
      if (on) { tr.setAttribute("aria-current", "true"); } else { tr.removeAttribute("aria-current"); }
    });
    setState(document.body.getAttribute("data-planner-state"), gridName(code) + " " + code);
    // On a narrow screen (or at 200 % zoom) the map is under the panel: bring it into view.
    if (window.matchMedia("(max-width: 60rem)").matches) { map.getContainer().scrollIntoView({ block: "nearest" }); }
  }

  // -- start -----------------------------------------------------------------------------------------------

  function loadStatic() {
    G.getJSON(config.api.districts).then(function (d) {
      layers.districts.addData(d);
      if (!selectedCode && d.features.length) { map.fitBounds(layers.districts.getBounds(), { animate: false }); }
    })
      .catch(function () { /* the outline is decoration; the coverage answers carry the content */ });
    var grids = G.getJSON(config.api.grids).then(function (d) {
      layers.grids.addData(d);
      P.counts.grids = d.features.length;
      bindGridPopups();
    });
    var gaps = G.getJSON(config.api.grid_gaps).then(function (d) {
      P.lastGaps = d;
      layers.gaps.addData(d);
      P.counts.gaps = d.features.length;
      bindGapPopups();
      renderGapSummary(d.summary);
    });
    Promise.all([grids, gaps]).then(function () {
      document.body.setAttribute("data-planner-static", "ready");
    }, function (error) {
      setState("error", t("status_error", { description: error.message }));
    });
  }

  /** The basemap streets and the points of the view; zoomed out too far, what is drawn stays as it is. */
  function loadView() {
    var bounds = map.getBounds();
    if (map.getZoom() < config.limits.data_min_zoom) { return; }
    if (view.bounds && view.bounds.contains(bounds) && !view.truncated) { return; }
    var padded = bounds.pad(0.25);
    var bbox = G.bbox(padded);
    if (view.controller) { view.controller.abort(); }
    view.controller = new AbortController();
    Promise.all([
      G.getJSON(config.api.streets + "?bbox=" + bbox + "&limit=" + config.limits.street_limit,
                { signal: view.controller.signal }),
      G.getJSON(config.api.points + "?bbox=" + bbox + "&limit=" + config.limits.point_limit,
                { signal: view.controller.signal })
    ]).then(function (answers) {
      layers.streets.clearLayers();
      layers.streets.addData(answers[0]);
      P.counts.streets = answers[0].features.length;
      viewPoints = answers[1];
      if (shownQuery) { showPoints(new URLSearchParams(shownQuery).getAll("kind")); }
      view.bounds = padded;
      view.truncated = Boolean(answers[0].truncated || answers[1].truncated);
      document.body.setAttribute("data-planner-view", bbox);
    }).catch(function () { /* the basemap is decoration: the coverage answers carry the content */ });
  }

  function scheduleView() {
    clearTimeout(view.timer);
    view.timer = setTimeout(loadView, 250);
  }

  /** Start from the state in the address (?radius=&kind=&mode=; common.js reads &lang=), so a view can be shared
   *  as a link. */
  function readAddress() {
    var q = new URLSearchParams(window.location.search);
    var radius = Number(q.get("radius"));
    if (q.get("radius") && isFinite(radius) && radius > 0 && radius <= config.max_radius) {
      $("radius-number").value = String(radius);
      $("radius-range").value = String(radius);
    }
    var kinds = q.getAll("kind");
    if (kinds.length) {
      Array.prototype.forEach.call(document.querySelectorAll("input[name=kind]"), function (box) {
        box.checked = kinds.indexOf(box.value) !== -1;
      });
    }
    var wantedMode = q.get("mode") === "walk" ? "walk" : "straight";
    document.querySelector("input[name=mode][value=" + wantedMode + "]").checked = true;
  }

  function writeAddress(key) {
    var q = new URLSearchParams(key);
    if (G.lang() !== "zh") { q.append("lang", G.lang()); }
    window.history.replaceState(null, "", window.location.pathname + "?" + q.toString());
  }

  function start() {
    map = G.createMap();
    P.map = map;
    makeLayers();
    bindForm();
    readAddress();
    applyLanguage();
    map.on("moveend", scheduleView);
    loadStatic();
    scheduleView();
    update();
  }

  window.geoservicePlanner = P;
  start();
})();
