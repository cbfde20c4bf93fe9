/* geoservice planner page: asks the coverage API and draws, sums up and lists the answer. No third-party code here.
 *
 * The page's state is what the form says (radius, kinds, mode, what if). Every change asks
 * /api/v1/coverage/streets and /api/v1/coverage/grids for that state; a request for an older state is aborted
 * (AbortController) and its answer dropped, so what is shown always belongs to what the form says. The slider asks
 * while it moves, once it has rested config.debounce_ms. <body data-planner-state> is "loading", "ready" or "error",
 * data-planner-query is the query string the shown result was computed for, data-planner-drawn the query whose
 * result the map has drawn (set in the frame after drawing) and data-planner-charts the query the charts show
 * (tests and bench/bench_planner_slider.py wait on these).
 *
 * Charts (ECharts, drawn on canvas, text never parsed as HTML): covered % against the radius (one call for the whole
 * curve; asked again only when kinds, mode or what-if change), covered % per subdistrict and per community, street
 * length by distance to the nearest point, and the siting gains. The siting panel asks /api/v1/siting for the sites
 * that add most, draws them as numbered markers, and lets a planner accept one as a planned point.
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
  var PLANNED = "#d35400";
  var CHART_BLUE = "#2c7bb6", CHART_GREEN = "#31a354", CHART_GREY = "#95a5a6";
  var PANES = { districts: 405, grids: 410, gaps: 420, streets: 430, uncovered: 440, points: 620 };
  var NUMERIC = { street_km: true, covered_km: true, uncovered_km: true, covered_pct: true, points: true };

  var P = { counts: {} };
  var map;
  var layers = {}, gridShapes = {}, gridRows = [], coverageByCode = {};
  var gridView = { bounds: null, truncated: false };
  var viewPoints = null, layerControl = null, legend = null;
  // The streets and points of the view (with a margin), loaded by bbox like the city map: a big city's whole
  // street and point layers would be megabytes the planner does not need to see at once.
  var view = { bounds: null, truncated: false, timer: null, controller: null };
  var sortKey = null, sortAscending = true, selectedCode = null;
  var seq = 0, shownQuery = null, pendingQuery = null, debounce = null, inflight = null;
  P.aborted = 0;
  // The charts: ECharts instances by name, the data they show (redrawn in place when the language changes), and
  // the requests on their way (aborted when the form moves on).
  var charts = {}, chartData = {}, chartRequests = {}, curveKey = null, curveAnswer = null;
  var siting = { answer: null, query: null, accepted: {}, controller: null };

  // -- text ------------------------------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function fixed(value, digits) { return value == null ? t("no_value") : Number(value).toFixed(digits); }

  function applyLanguage() {
    G.applyLanguage();
    Array.prototype.forEach.call(document.querySelectorAll("button.sort"), function (button) {
      button.setAttribute("aria-label", t("sort_by", { column: t("col_" + button.getAttribute("data-key")) }));
    });
    Array.prototype.forEach.call(document.querySelectorAll("a.export-link[data-what]"), function (a) {
      a.setAttribute("aria-label", t("export_aria", { what: t("export_" + a.getAttribute("data-what")),
                                                     fmt: a.textContent.trim() }));
    });
    Array.prototype.forEach.call(document.querySelectorAll("a.siting-link"), function (a) {
      a.setAttribute("aria-label", t("siting_download_aria", { fmt: a.textContent.trim() }));
    });
    setSitingButton();
    buildLayerControl();
    buildLegend();
    drawCharts();
    renderSiting();
    if (P.lastStreets) { renderSummary(P.lastStreets.summary); }
    if (P.lastGaps) { renderGapSummary(P.lastGaps.summary); bindGapPopups(); }
    renderTable();
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

  /** What if (planned points counted): offered to planners and admins only — the answers show where they stand. */
  function whatIf() { return Boolean($("what-if") && $("what-if").checked); }

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
    // Only when asked, so that the addresses of ordinary views stay as they were.
    if (whatIf()) { q.append("planned", "true"); }
    return q;
  }

  function bindForm() {
    var range = $("radius-range"), number = $("radius-number");
    // While the slider moves: ask once it has rested debounce_ms (a request still on its way is aborted).
    range.addEventListener("input", function () {
      number.value = range.value;
      radiusValue();
      clearTimeout(debounce);
      debounce = setTimeout(update, config.debounce_ms);
    });
    range.addEventListener("change", function () { number.value = range.value; update(); });
    number.addEventListener("input", function () {
      var value = radiusValue();
      if (value !== null) { range.value = String(Math.min(Math.max(value, Number(range.min)), Number(range.max))); }
      clearTimeout(debounce);
      debounce = setTimeout(update, 400);
    });
    number.addEventListener("change", update);
    Array.prototype.forEach.call(document.querySelectorAll("input[name=kind], input[name=mode], #what-if"),
                                 function (el) {
      el.addEventListener("change", update);
    });
    $("kinds-all").addEventListener("click", function () { setAllKinds(true); });
    $("kinds-none").addEventListener("click", function () { setAllKinds(false); });
    $("planner-form").addEventListener("submit", function (event) { event.preventDefault(); update(); });
    $("siting-form").addEventListener("submit", function (event) { event.preventDefault(); runSiting(); });
    $("siting-count").addEventListener("input", setSitingButton);
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (name) { charts[name].resize(); });
    });
    $("lang-switch").addEventListener("click", function () {
      G.switchLanguage();
      applyLanguage();
      if (shownQuery) { writeAddress(shownQuery); updateExportLinks(shownQuery); }
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
    if (key === pendingQuery) { return; }
    if (key === shownQuery) {
      // Back to what is shown (the slider went there and back): what was on its way is no longer wanted.
      if (inflight) {
        inflight.abort();
        P.aborted += 1;
        inflight = null;
        pendingQuery = null;
        ++seq;
        updateExportLinks(key);
        setState("ready", t("status_ready"));
      }
      return;
    }
    // The answer to the state before is no longer wanted: stop its requests (the server's cache still keeps what
    // it finishes).
    if (inflight) { inflight.abort(); P.aborted += 1; }
    var controller = new AbortController();
    inflight = controller;
    pendingQuery = key;
    var mine = ++seq;
    setState("loading", t("status_updating"));
    updateExportLinks(key);
    var askedAt = window.performance.now();
    Promise.all([G.getJSON(config.api.coverage_streets + "?" + key, { signal: controller.signal }),
                 G.getJSON(config.api.coverage_grids + "?" + key, { signal: controller.signal })])
      .then(function (answers) {
        if (mine !== seq) { return; }
        inflight = null;
        pendingQuery = null;
        shownQuery = key;
        // Where the time of an update goes (bench/bench_planner_slider.py reads it): asking, drawing.
        P.timing = { asked: askedAt, answered: window.performance.now() };
        showStreets(answers[0]);
        showGrids(answers[1].grids);
        showPoints(q.getAll("kind"));
        // The map first; the panel's table (thousands of rows on a big city) and the charts once it is drawn.
        markDrawn(key, function () {
          renderTable();
          document.body.setAttribute("data-planner-query", key);
          writeAddress(key);
          if (mine === seq) { setState("ready", t("status_ready")); }
          updateCharts(q);
        });
      }).catch(function (error) {
        if (mine !== seq || (error && error.name === "AbortError")) { return; }
        inflight = null;
        pendingQuery = null;
        setState("error", t("status_error", { description: error.message }));
      });
  }

  /** Leaflet's canvas draws in the next animation frame: mark the map drawn in the frame after that, then(). */
  function markDrawn(key, then) {
    window.requestAnimationFrame(function () {
      window.requestAnimationFrame(function () {
        P.drawnAt = window.performance.now();
        if (P.timing) { P.timing.drawn = P.drawnAt; }
        document.body.setAttribute("data-planner-drawn", key);
        then();
      });
    });
  }

  function updateExportLinks(key) {
    Array.prototype.forEach.call(document.querySelectorAll("a.export-link[data-what]"), function (a) {
      var what = a.getAttribute("data-what");
      // The report is written in the page's language.
      var report = what === "report";
      a.href = (report ? config.report : config.api["coverage_" + what]) + "?" + key + "&f=" +
        a.getAttribute("data-format") + (report && G.lang() !== "zh" ? "&lang=" + G.lang() : "");
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
  }

  function showPoints(kinds) {
    if (!viewPoints) { return; }
    // A new radius leaves the points as they are: redraw them only for new kinds, what-if or view.
    var pointsKey = kinds.join(",") + "|" + whatIf();
    if (viewPoints === P.shownPoints && pointsKey === P.shownPointsKey) { return; }
    P.shownPoints = viewPoints;
    P.shownPointsKey = pointsKey;
    var wanted = {};
    kinds.forEach(function (k) { wanted[k] = true; });
    var counted = { open: true, planned: whatIf() };
    layers.points.clearLayers();
    layers.points.addData({ type: "FeatureCollection", features: viewPoints.features.filter(function (f) {
      return counted[f.properties.status] === true && wanted[f.properties.kind];
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
      onEachFeature: function (f, layer) {
        gridShapes[f.properties.code] = layer;
        // Written when opened: the coverage and the language of that moment, with no rebinding on every update.
        layer.bindPopup(function () { return gridPopup(f.properties.code); });
      }
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
        // A planned point (what if) is hollow: it counts, but it is not there yet.
        var planned = f.properties.status === "planned";
        return L.circleMarker(latlng, { pane: pane("points"), radius: 5, color: planned ? PLANNED : "#ffffff",
                                        weight: planned ? 2.5 : 1.5, fillColor: planned ? "#ffffff" : "#154360",
                                        fillOpacity: 0.95, dashArray: planned ? "2 2" : null });
      },
      onEachFeature: function (f, layer) {
        layer.bindPopup(escapeHtml(f.properties.name) + "<br>" + escapeHtml(G.kindLabel(f.properties.kind)));
      }
    });
    layers.sites = L.layerGroup();
    ["districts", "streets", "grids", "gaps", "uncovered", "points", "sites"].forEach(function (name) {
      layers[name].addTo(map);
    });
  }

  function buildLayerControl() {
    if (layerControl) { layerControl.remove(); }
    var overlays = {};
    ["grids", "gaps", "uncovered", "points", "sites", "streets", "districts"].forEach(function (name) {
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
    if (!shape) {
      fetchGrid(code).then(function (fetched) { if (fetched) { zoomToGrid(code); } }, function () {});
      return;
    }
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

  // -- charts ----------------------------------------------------------------------------------------------

  function chart(name) {
    if (!charts[name]) { charts[name] = window.echarts.init($("chart-" + name), null, { renderer: "canvas" }); }
    return charts[name];
  }

  /** Ask for one chart's data (aborting the request before it for the same chart); resolves with the answer. */
  function askChart(name, url) {
    if (chartRequests[name]) { chartRequests[name].abort(); }
    var controller = new AbortController();
    chartRequests[name] = controller;
    return G.getJSON(url, { signal: controller.signal }).then(function (answer) {
      if (chartRequests[name] === controller) { chartRequests[name] = null; }
      return answer;
    });
  }

  /** The charts for the query the map shows. The curve and the distances do not depend on the radius: they are
   *  asked again only when kinds, mode or what-if change. */
  function updateCharts(q) {
    var key = q.toString();
    var withoutRadius = new URLSearchParams(key);
    withoutRadius.delete("radius");
    if (withoutRadius.toString() !== curveKey) {
      var rest = withoutRadius.toString();
      curveKey = rest;
      curveAnswer = Promise.all([
        askChart("curve", config.api.coverage_curve + "?" + rest).then(function (answer) { chartData.curve = answer; }),
        askChart("distances", config.api.coverage_distances + "?" + rest).then(function (answer) {
          chartData.distances = answer;
        })
      ]);
    }
    // Still on its way for an earlier radius, perhaps: every radius of the same kinds waits for the same answer.
    var wanted = [curveAnswer];
    ["subdistrict", "community"].forEach(function (level) {
      wanted.push(askChart(level, config.api.coverage_areas + "?level=" + level + "&" + key).then(function (answer) {
        chartData[level] = answer.areas;
      }));
    });
    Promise.all(wanted).then(function () {
      if (key !== shownQuery) { return; }
      chartData.radius = Number(q.get("radius"));
      $("charts-status").hidden = true;
      drawCharts();
      document.body.setAttribute("data-planner-charts", key);
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      curveKey = null;  // asked again with the next change
      $("charts-status").textContent = t("charts_status_error", { description: error.message });
      $("charts-status").hidden = false;
    });
  }

  function axisName(key) { return { name: t(key), nameLocation: "middle", nameGap: 28 }; }

  function baseOption() {
    // Tooltips drawn as rich text on the canvas: names from the data are never parsed as HTML.
    return { animation: false, grid: { left: 56, right: 20, top: 16, bottom: 44 },
             tooltip: { trigger: "axis", renderMode: "richText" }, textStyle: { fontSize: 12 } };
  }

  function drawCurve() {
    var answer = chartData.curve;
    if (!answer) { return; }
    var option = baseOption();
    option.xAxis = Object.assign({ type: "value", min: 0, max: answer.curve[answer.curve.length - 1].radius_m },
                                 axisName("axis_radius"));
    option.yAxis = Object.assign({ type: "value", min: 0, max: 100 }, axisName("axis_covered_pct"), { nameGap: 36 });
    option.series = [{
      type: "line", name: t("series_covered_pct"), color: CHART_BLUE, symbolSize: 5,
      data: answer.curve.map(function (c) { return [c.radius_m, c.covered_pct]; }),
      markLine: { symbol: "none", silent: true, lineStyle: { color: PLANNED, type: "dashed" },
                  label: { formatter: t("series_current_radius") + " " + chartData.radius + " m" },
                  data: [{ xAxis: chartData.radius }] }
    }];
    chart("curve").setOption(option, true);
  }

  function drawAreas(name, areas) {
    if (!areas) { return; }
    // One bar per area, weakest on top; the community chart grows with the number of communities.
    var box = $("chart-" + name);
    var height = Math.max(180, areas.length * 18 + 60) + "px";
    if (box.style.height !== height) {
      box.style.height = height;
      if (charts[name]) { charts[name].resize(); }
    }
    var option = baseOption();
    option.grid = { left: 8, right: 20, top: 8, bottom: 40, containLabel: true };
    option.xAxis = Object.assign({ type: "value", min: 0, max: 100 }, axisName("axis_covered_pct"));
    option.yAxis = { type: "category", inverse: true, axisLabel: { fontSize: 11 },
                     data: areas.map(function (a) { return a.name || a.code; }) };
    option.series = [{ type: "bar", name: t("series_covered_pct"), color: CHART_GREEN,
                       data: areas.map(function (a) { return a.covered_pct == null ? "-" : a.covered_pct; }) }];
    chart(name).setOption(option, true);
  }

  function drawDistances() {
    var answer = chartData.distances;
    if (!answer) { return; }
    var option = baseOption();
    var labels = answer.bins.map(function (b) { return b.from_m + "–" + b.to_m; });
    labels.push(t("beyond"));
    var values = answer.bins.map(function (b) { return b.km; });
    values.push({ value: answer.beyond_km, itemStyle: { color: CHART_GREY } });
    option.xAxis = Object.assign({ type: "category", data: labels, axisLabel: { rotate: 60, fontSize: 10 } },
                                 axisName("axis_distance"), { nameGap: 56 });
    option.grid.bottom = 84;
    option.yAxis = Object.assign({ type: "value" }, axisName("axis_km"), { nameGap: 40 });
    option.series = [{ type: "bar", name: t("series_km"), color: CHART_BLUE, data: values }];
    chart("distances").setOption(option, true);
  }

  function drawSitingChart() {
    var answer = siting.answer;
    if (!answer || !answer.features.length) { return; }
    var option = baseOption();
    option.grid.right = 56;
    option.legend = { top: 0, data: [t("series_gain"), t("series_cumulative")] };
    option.grid.top = 32;
    option.xAxis = Object.assign({ type: "category", data: answer.features.map(function (f, i) {
      return String(i + 1);
    }) }, axisName("axis_site"));
    option.yAxis = [Object.assign({ type: "value" }, axisName("axis_gain_km"), { nameGap: 40 }),
                    { type: "value", min: 0, max: 100, name: "%", position: "right" }];
    option.series = [
      { type: "bar", name: t("series_gain"), color: CHART_GREEN,
        data: answer.features.map(function (f) { return f.properties.gain_km; }) },
      { type: "line", name: t("series_cumulative"), color: CHART_BLUE, yAxisIndex: 1,
        data: answer.features.map(function (f) { return f.properties.covered_pct; }) }
    ];
    chart("siting").setOption(option, true);
  }

  function drawCharts() {
    if (!map) { return; }
    drawCurve();
    drawAreas("subdistricts", chartData.subdistrict);
    drawAreas("communities", chartData.community);
    drawDistances();
    drawSitingChart();
  }

  // -- siting ----------------------------------------------------------------------------------------------

  function sitingCount() {
    var value = Number($("siting-count").value);
    return isFinite(value) && value >= 1 && value === Math.floor(value) ? value : null;
  }

  function setSitingButton() {
    var n = sitingCount();
    var button = $("siting-run");
    button.setAttribute("data-i18n-vars", JSON.stringify({ n: n === null ? "N" : n }));
    button.textContent = t("siting_run", { n: n === null ? "N" : n });
    button.disabled = n === null;
  }

  function sitingStatus(text, state) {
    var box = $("siting-status");
    box.hidden = false;
    box.textContent = text;
    document.body.setAttribute("data-siting-state", state);
  }

  /** Ask for the sites that add most for what the form says now (radius, kinds, mode). */
  function runSiting() {
    var q = currentQuery();
    var n = sitingCount();
    if (q === null || n === null) { return; }
    var sq = new URLSearchParams();
    sq.append("radius", q.get("radius"));
    q.getAll("kind").forEach(function (k) { sq.append("kind", k); });
    sq.append("mode", q.get("mode"));
    if (q.get("planned")) { sq.append("planned", q.get("planned")); }
    sq.append("count", String(n));
    var key = sq.toString();
    if (config.can_accept && q.getAll("kind").indexOf($("siting-kind").value) === -1) {
      $("siting-kind").value = q.getAll("kind")[0];  // a new point should be of a kind that counts
    }
    if (siting.controller) { siting.controller.abort(); }
    siting.controller = new AbortController();
    sitingStatus(t("siting_running"), "loading");
    G.getJSON(config.api.siting + "?" + key, { signal: siting.controller.signal }).then(function (answer) {
      siting.controller = null;
      siting.answer = answer;
      siting.query = key;
      siting.accepted = {};
      Array.prototype.forEach.call(document.querySelectorAll("a.siting-link"), function (a) {
        a.href = config.api.siting + "?" + key + "&f=" + a.getAttribute("data-format");
      });
      // A planner who accepts sites may still want the list for a meeting: everyone gets the downloads.
      $("siting-downloads").hidden = false;
      renderSiting();
      document.body.setAttribute("data-siting-query", key);
      document.body.setAttribute("data-siting-state", "ready");
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      siting.controller = null;
      sitingStatus(t("status_error", { description: error.message }), "error");
    });
  }

  function siteIcon(n, accepted) {
    // The number is ours (1..N), not data: the marker's HTML is only that number.
    return L.divIcon({ className: "siting-marker" + (accepted ? " accepted" : ""), html: String(n),
                       iconSize: [26, 26], iconAnchor: [13, 13] });
  }

  /** The sites as numbered markers, the list (with accept buttons for a planner) and the gains chart. */
  function renderSiting() {
    var answer = siting.answer;
    if (!answer || !map) { return; }
    var s = answer.summary;
    sitingStatus(answer.features.length ? t("siting_done", { method: s.method, km: fixed(s.objective_km, 3),
                                                             seconds: fixed(s.seconds, 2) })
                                        : t("siting_none"), "ready");
    layers.sites.clearLayers();
    var list = $("siting-list");
    list.textContent = "";
    answer.features.forEach(function (f, i) {
      var n = i + 1, p = f.properties;
      var coords = f.geometry.coordinates;
      var accepted = siting.accepted[n];
      var marker = L.marker([coords[1], coords[0]], { icon: siteIcon(n, accepted), keyboard: false,
                                                      title: t("siting_marker", { n: n }), zIndexOffset: 1000 });
      marker.bindTooltip(t("siting_site", { n: n, gain: fixed(p.gain_km, 3), pct: fixed(p.covered_pct, 2) }));
      layers.sites.addLayer(marker);
      var li = G.el("li", { "data-site": n },
                    t("siting_site", { n: n, gain: fixed(p.gain_km, 3), pct: fixed(p.covered_pct, 2) }));
      if (accepted) {
        li.appendChild(G.el("span", { "class": "siting-accepted" }, " " + t("siting_accepted", { id: accepted })));
      } else if (config.can_accept) {
        var button = G.el("button", { type: "button", "class": "siting-accept",
                                      "aria-label": t("siting_accept_aria", { n: n }) }, t("siting_accept"));
        button.addEventListener("click", function () { acceptSite(n, f, button); });
        li.appendChild(document.createTextNode(" "));
        li.appendChild(button);
      }
      list.appendChild(li);
    });
    $("siting-chart-figure").hidden = answer.features.length === 0;
    drawSitingChart();
    if (charts.siting) { charts.siting.resize(); }
  }

  /** A planner accepts site n: a new point of the chosen kind with status planned (counted only in what if). */
  function acceptSite(n, feature, button) {
    var kind = $("siting-kind").value;
    var coords = feature.geometry.coordinates;
    button.disabled = true;
    G.send("POST", config.api.point, {
      type: "Feature", geometry: { type: "Point", coordinates: coords },
      properties: { name: t("siting_new_name", { kind: G.kindLabel(kind), n: n, lon: coords[0].toFixed(5),
                                                 lat: coords[1].toFixed(5) }),
                    kind: kind, status: "planned" }
    }).then(function (result) {
      siting.accepted[n] = result.body.id;
      renderSiting();
      document.body.setAttribute("data-siting-accepted", String(result.body.id));
      // The city changed: the what-if answers (and the planned points of the view) are asked again.
      view.bounds = null;
      loadView();
      if (whatIf()) { shownQuery = null; curveKey = null; update(); }
    }).catch(function (error) {
      button.disabled = false;
      sitingStatus(t("status_error", { description: error.message }), "error");
    });
  }

  // -- start -----------------------------------------------------------------------------------------------

  function loadStatic() {
    var districts = G.getJSON(config.api.districts).then(function (d) {
      layers.districts.addData(d);
      if (!selectedCode && d.features.length) { map.fitBounds(layers.districts.getBounds(), { animate: false }); }
    })
      .catch(function () { /* the outline is decoration; the coverage answers carry the content */ });
    // The grids of the view once the view is the district's.
    var grids = districts.then(loadGrids);
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

  /** The grid outlines of the view (with a margin), added to those already drawn: a big city's grids are not all
   *  loaded at once, and a grid seen once stays (its coverage colour follows every answer). */
  function loadGrids() {
    var padded = map.getBounds().pad(0.25);
    if (gridView.bounds && gridView.bounds.contains(padded) && !gridView.truncated) {
      return Promise.resolve();
    }
    return G.getJSON(config.api.grids + "?bbox=" + G.bbox(padded) + "&limit=" + config.grid_limit)
      .then(function (d) {
        layers.grids.addData({ type: "FeatureCollection", features: d.features.filter(function (f) {
          return !gridShapes[f.properties.code];
        }) });
        P.counts.grids = Object.keys(gridShapes).length;
        gridView.bounds = padded;
        gridView.truncated = Boolean(d.truncated);
      });
  }

  /** A grid chosen in the table but not drawn yet (outside the views seen so far): its outline, by its code. */
  function fetchGrid(code) {
    if (gridShapes[code]) { return Promise.resolve(gridShapes[code]); }
    return G.getJSON(config.grid_item + encodeURIComponent(code) + "?f=json").then(function (f) {
      if (!gridShapes[code]) { layers.grids.addData(f); }
      P.counts.grids = Object.keys(gridShapes).length;
      return gridShapes[code];
    });
  }

  /** The basemap streets and the points of the view; zoomed out too far, what is drawn stays as it is. */
  function loadView() {
    var bounds = map.getBounds();
    loadGrids().catch(function () { /* asked again at the next move */ });
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
    if ($("what-if")) { $("what-if").checked = q.get("planned") === "true"; }
  }

  function writeAddress(key) {
    var q = new URLSearchParams(key);
    if (G.lang() !== "zh") { q.append("lang", G.lang()); }
    window.history.replaceState(null, "", window.location.pathname + "?" + q.toString());
  }

  function start() {
    map = G.createMap();
    P.map = map;
    P.layers = layers;
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
