/* geoservice city map (/): vector tiles (streets, grids, districts drawn by MapLibre GL; points decoded into
 * Leaflet markers and clusters), popups, search, legend, permalink, language switch, and live occupancy, status and
 * notices (asked every few seconds). No third-party code here. The page's configuration comes from
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
  // MapLibre's canvas above the basemap; the close-up grid outlines above it; markers in Leaflet's marker pane.
  var PANES = { vector: 380, pointTiles: 390, grids: 410, gridLabels: 625 };

  function startCityMap() {
    var map = G.createMap();
    var groups = {};
    var statusKey = null;
    var hintKey = null;
    var coverage = {};
    var coverageLoaded = false;
    var view = { serial: 0, move: 0 };
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
      if (pointTiles) { reloadPoints(); }  // marker and cluster titles are in the language
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

    // -- streets, grids and districts: vector tiles drawn by MapLibre GL inside the Leaflet map --------------
    // Leaflet keeps the controls, popups and markers; MapLibre (through @maplibre/maplibre-gl-leaflet) draws the
    // tiles on the GPU, so a city of any size costs the same per view. Its zoom is Leaflet's minus one (512-px
    // tiles). No text layers: MapLibre's labels need a glyph server, so labels are Leaflet's (grid codes).
    var gl = null;
    var vector = null;
    var VECTOR_LAYERS = { grids: ["grids-fill", "grids-line"], districts: ["districts-line"],
                          streets: ["streets-line"] };

    // MapLibre's worker may not fetch: a worker runs under its own script's Content-Security-Policy, and our
    // static files allow no connections. Its tile requests come back to the page through this protocol.
    var PROTOCOL = "geoservice-tiles";

    function tileUrl(layer) { return PROTOCOL + "://" + layer + "/{z}/{x}/{y}"; }

    function fetchVectorTile(request, abort) {
      var url = config.tiles.url + "/" + request.url.slice(PROTOCOL.length + 3) + ".mvt";
      return fetch(url, { headers: { Accept: "application/vnd.mapbox-vector-tile" }, signal: abort.signal })
        .then(function (response) {
          if (response.status === 204) { return { data: new ArrayBuffer(0) }; }
          if (!response.ok) { throw new Error(response.status + " " + response.statusText + ": " + url); }
          return response.arrayBuffer().then(function (data) { return { data: data }; });
        });
    }

    function glZoom(leafletZoom) { return leafletZoom - 1; }

    /* The coverage class of a grid from its feature-state (joined by code once /api/v1/coverage/grids answered):
       the legend's classes, highest first; no state or no streets is grey. */
    function coverageFill() {
      var pct = ["coalesce", ["feature-state", "pct"], -1];
      var classes = config.coverage_classes;
      var expression = ["case", ["<", pct, 0], config.no_streets_colour];
      classes.slice(0, -1).forEach(function (c) { expression.push([">=", pct, c[0]], c[1]); });
      expression.push(classes[classes.length - 1][1]);
      return expression;
    }

    function coverageOpacity() {
      // Until the coverage has arrived a grid is an outline only (grey would claim "no streets").
      return coverageLoaded ? ["step", ["zoom"], 0.5, glZoom(config.grid_label_min_zoom), 0.2] : 0;
    }

    function vectorStyle() {
      var close = glZoom(config.grid_label_min_zoom);
      var source = function (layer, extra) {
        return L.extend({ type: "vector", tiles: [tileUrl(layer)], maxzoom: config.tiles.maxzoom }, extra || {});
      };
      return {
        version: 8,
        sources: {
          grids: source("grids", { minzoom: config.tiles.grids_minzoom, promoteId: "code" }),
          districts: source("districts"),
          streets: source("streets")
        },
        layers: [
          { id: "grids-fill", type: "fill", source: "grids", "source-layer": "grids",
            paint: { "fill-color": coverageFill(), "fill-opacity": coverageOpacity() } },
          { id: "grids-line", type: "line", source: "grids", "source-layer": "grids",
            paint: { "line-color": ["step", ["zoom"], "#566573", close, "#1b2631"],
                     "line-width": ["step", ["zoom"], 0.8, close, 2.5], "line-opacity": 0.9 } },
          { id: "districts-line", type: "line", source: "districts", "source-layer": "districts",
            paint: { "line-color": "#17202a", "line-width": 3.5 } },
          { id: "streets-line", type: "line", source: "streets", "source-layer": "streets",
            paint: { "line-color": "#5f6a6a", "line-opacity": 0.85,
                     "line-width": ["match", ["get", "class"], "trunk", 5, "primary", 4, "secondary", 3.5,
                                    "tertiary", 2.5, "residential", 1.5, 1.2] } }
        ]
      };
    }

    function addVectorLayers() {
      maplibregl.setWorkerUrl(config.tiles.worker);
      maplibregl.addProtocol(PROTOCOL, fetchVectorTile);
      vector = L.maplibreGL({
        pane: ensurePane("vector"), style: vectorStyle(), interactive: false, fadeDuration: 0,
        renderWorldCopies: false,
        // No margin around the view: without a GPU (SwiftShader, old phones) every pixel of the canvas costs, and
        // MapLibre follows a pan as it happens anyway.
        padding: 0
      }).addTo(map);
      gl = vector.getMaplibreMap();
      gl.on("error", function (event) {
        if (!event.error || event.error.name !== "AbortError") { failed(event.error); }
      });
    }

    function setVectorVisible(key, visible) {
      (VECTOR_LAYERS[key] || []).forEach(function (id) {
        gl.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
      });
    }

    function vectorVisible(key) { return map.hasLayer(groups[key]); }

    // Grid coverage for the whole city is slower on a big city: the outlines are drawn first, and the fill is
    // joined by code (MapLibre feature-state) when it arrives.
    function loadCoverage() {
      G.getJSON(config.api.coverage_grids).then(function (body) {
        coverage = {};
        body.grids.forEach(function (g) {
          coverage[g.code] = g;
          gl.setFeatureState({ source: "grids", sourceLayer: "grids", id: g.code },
                             { pct: g.covered_pct == null ? -1 : g.covered_pct });
        });
        coverageLoaded = true;
        gl.setPaintProperty("grids-fill", "fill-opacity", coverageOpacity());
        document.body.setAttribute("data-coverage-loaded", "true");
      }).catch(failed);
    }

    /* A click on the map (no marker under it): the street under the pointer, else the grid. Grids close up are
       Leaflet outlines with their own popups (below). */
    function vectorClick(event) {
      // A planner drawing with Leaflet-Geoman clicks corners, not grids.
      if (!gl || (map.pm && map.pm.globalDrawModeEnabled())) { return; }
      var at = gl.project([event.latlng.lng, event.latlng.lat]);
      var near = [[at.x - 4, at.y - 4], [at.x + 4, at.y + 4]];
      var streets = vectorVisible("streets") ? gl.queryRenderedFeatures(near, { layers: ["streets-line"] }) : [];
      if (streets.length) {
        var s = streets[0].properties;
        var box = el("div", { "class": "street-popup" });
        box.appendChild(el("strong", {}, s.name));
        box.appendChild(el("br"));
        box.appendChild(document.createTextNode(t("street_class") + ": " + s["class"]));
        L.popup().setLatLng(event.latlng).setContent(box).openOn(map);
        return;
      }
      var grids = vectorVisible("grids") ? gl.queryRenderedFeatures(at, { layers: ["grids-fill"] }) : [];
      if (grids.length) { openGridAt(grids[0].properties.code, event.latlng); }
    }

    /* A grid's popup from its full record (officer, phones): the grid layer asked for a point-sized box there. */
    function openGridAt(code, latlng) {
      var overlay = gridOverlays[code];
      if (overlay) { overlay.fire("click", { latlng: latlng }, true); return; }
      var d = 1e-7;
      var bbox = [latlng.lng - d, latlng.lat - d, latlng.lng + d, latlng.lat + d].map(function (n) {
        return n.toFixed(7);
      }).join(",");
      G.getJSON(config.api.grids + "?bbox=" + bbox).then(function (collection) {
        var hit = collection.features.filter(function (f) { return f.properties.code === code; })[0];
        if (hit) { L.popup().setLatLng(latlng).setContent(gridPopup(hit.properties, null)).openOn(map); }
      }).catch(failed);
    }

    // -- grids close up: Leaflet outlines of the grids in view, with their codes --------------------------------
    // From grid_label_min_zoom on (a few grids in view), the grids there are asked by view: they carry the code
    // labels, the popups with the editing hooks, and the outlines a planner reshapes and snaps new grids to.
    var gridOverlays = {};
    var gridLayer = null;
    var gridLabels = L.layerGroup();
    var gridView = { bounds: null, controller: null };

    function updateGrids(force) {
      if (map.getZoom() < config.grid_label_min_zoom) {
        if (gridLayer) { groups.grids.removeLayer(gridLayer); gridLayer = null; }
        gridOverlays = {};
        gridLabels.clearLayers();
        gridView.bounds = null;
        return Promise.resolve();
      }
      var bounds = map.getBounds();
      if (force !== true && gridView.bounds && gridView.bounds.contains(bounds)) {
        drawGridLabels();
        return Promise.resolve();
      }
      var padded = bounds.pad(0.25);
      if (gridView.controller) { gridView.controller.abort(); }
      gridView.controller = new AbortController();
      return G.getJSON(config.api.grids + "?bbox=" + G.bbox(padded), { signal: gridView.controller.signal })
        .then(function (collection) {
          if (gridLayer) { groups.grids.removeLayer(gridLayer); }
          gridOverlays = {};
          gridLayer = L.geoJSON(collection, {
            pane: ensurePane("grids"), interactive: false,
            style: { color: "#1b2631", weight: 2.5, opacity: 0.9, fill: false },
            onEachFeature: function (f, layer) {
              tag(layer, "grids");
              gridOverlays[f.properties.code] = layer;
            }
          });
          gridLayer.bindPopup(function (layer) { return gridPopup(layer.feature.properties, layer); });
          groups.grids.addLayer(gridLayer);
          gridView.bounds = padded;
          drawGridLabels();
        }).catch(failed);
    }

    function drawGridLabels() {
      gridLabels.clearLayers();
      if (!gridLayer) { return; }
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

    // -- points: the points tiles, decoded here into Leaflet markers ---------------------------------------------
    // Clusters (count > 1) are one marker with the count and the share of each kind, and zoom in when pressed.
    // Single points are today's markers; what their popups, badges and night-market hours show (hours,
    // amenities, grid and squad, free places, open now) is not in the tile: close up (a tile of single points
    // only, from the tiles' cluster_max_zoom on) the points layer is asked for the tile's box once; elsewhere a popup
    // asks for its point when opened.
    var markersById = {};
    var activeKinds = {};
    var pointTiles = null;
    var markers = L.layerGroup();
    var tileStates = {};
    var reloading = false;

    function kindsQuery() {
      var codes = config.kinds.map(function (k) { return k.code; });
      var on = codes.filter(function (code) { return activeKinds[code]; });
      if (on.length === codes.length) { return ""; }
      return "kinds=" + on.join(",");
    }

    // Up to the tiles' cluster_max_zoom a points tile is shown 512 px wide (the tile of the zoom above, as MapLibre
    // shows its tiles): a quarter of the requests for a view, clusters on 64-px cells. Past it, the map's own zoom
    // at 256 px: every point a marker of its own — from the zoom where a dense city (a million points) puts a few
    // hundred markers in a view, not thousands (each marker is DOM the page builds).
    function pointTileSize(zoom) { return zoom <= config.tiles.cluster_max_zoom ? 512 : 256; }

    function pointTileAddress(coords) {
      var z = pointTileSize(coords.z) === 512 ? coords.z - 1 : coords.z;
      return { z: z, x: coords.x, y: coords.y };
    }

    function pointTileUrl(address) {
      var query = kindsQuery();
      return config.tiles.url + "/points/" + address.z + "/" + address.x + "/" + address.y + ".mvt" +
        (query ? "?" + query : "");
    }

    function tileBox(address) {
      var nw = G.mvt.toLonLat(address.z, address.x, address.y, 1, 0, 0);
      var se = G.mvt.toLonLat(address.z, address.x, address.y, 1, 1, 1);
      return [nw[0], se[1], se[0], nw[1]];
    }

    function clusterMarker(p, latlng) {
      var parts = config.kinds.filter(function (k) { return p["n_" + k.code]; }).map(function (k) {
        return { code: k.code, n: p["n_" + k.code] };
      }).sort(function (a, b) { return b.n - a.n; });
      var stops = [], from = 0;
      parts.forEach(function (part) {
        var to = from + 360 * part.n / p.count;
        stops.push(G.KIND_COLOURS[part.code] + " " + from.toFixed(1) + "deg " + to.toFixed(1) + "deg");
        from = to;
      });
      var size = p.count < 10 ? 30 : p.count < 100 ? 36 : p.count < 1000 ? 42 : 48;
      var title = p.count + " · " + parts.map(function (part) {
        return kindLabel(part.code) + " " + part.n;
      }).join(G.lang() === "zh" ? "，" : ", ");
      var marker = L.marker(latlng, {
        title: title, alt: title, keyboard: true, pmIgnore: true,
        icon: L.divIcon({
          className: "poi-cluster", iconSize: [size, size],
          html: "<span class=\"cluster-ring\" style=\"background: conic-gradient(" + stops.join(", ") + ")\">" +
            "<b>" + Number(p.count) + "</b></span>"
        })
      });
      marker.cluster = { count: p.count, kinds: parts.reduce(function (o, part) { o[part.code] = part.n; return o; },
                                                             {}) };
      tag(marker, "clusters");
      marker.on("click", function () {
        map.setView(latlng, Math.min(map.getZoom() + 2, map.getMaxZoom()));
      });
      return marker;
    }

    function loadPointTile(state) {
      var address = state.address;
      if (!config.kinds.some(function (k) { return activeKinds[k.code]; })) { return Promise.resolve(); }
      var url = pointTileUrl(address);
      state.url = url;
      return fetch(url, { headers: { Accept: "application/vnd.mapbox-vector-tile" },
                          cache: reloading ? "no-cache" : "default" })
        .then(function (response) {
          if (response.status === 204) { return null; }
          if (!response.ok) { throw new Error(response.status + " " + response.statusText); }
          return response.arrayBuffer();
        }).then(function (body) {
          if (state.unloaded || !body) { return; }
          var decoded = G.mvt.points(body, "points");
          var singles = 0;
          decoded.features.forEach(function (f) {
            var lonlat = G.mvt.toLonLat(address.z, address.x, address.y, decoded.extent, f.x, f.y);
            var p = f.properties;
            if (p.count > 1) {
              state.clustered = true;
              var cluster = clusterMarker(p, [lonlat[1], lonlat[0]]);
              cluster.tileState = state;
              state.group.addLayer(cluster);
              return;
            }
            singles += 1;
            var marker = pointMarker({ type: "Feature", id: p.id, properties: p,
                                       geometry: { type: "Point", coordinates: lonlat } });
            marker.tileState = state;
            state.ids.push(p.id);
            state.group.addLayer(marker);
          });
          state.bytes = body.byteLength;
          if (state.coords.z === tileZoom()) { markers.addLayer(state.group); }
          // The tile counts as loaded once its points' records are in: popups and badges are then complete.
          if (singles && !state.clustered && address.z >= config.tiles.cluster_max_zoom) {
            return loadDetails(state);
          }
        });
    }

    function tileZoom() { return Math.round(map.getZoom()); }

    /* The full records of a close-up tile's points (the points layer for the tile's box), into its markers. */
    function loadDetails(state) {
      var box = tileBox(state.address).map(function (n) { return n.toFixed(7); }).join(",");
      return G.getJSON(config.api.points + "?bbox=" + box + "&limit=" + config.limits.point_limit)
        .then(function (collection) {
          if (state.unloaded) { return; }
          collection.features.forEach(function (f) {
            var marker = markersById[f.properties.id];
            if (marker && marker.tileState === state) { detail(marker, f); }
          });
          state.detailed = true;
        }).catch(failed);
    }

    function detail(marker, feature) {
      var p = feature.properties;
      var c = feature.geometry.coordinates;
      marker.feature = feature;
      marker.detailed = true;
      marker.setLatLng([c[1], c[0]]);
      // Only a kiosk's icon changes with its record (the badge); a new icon is a new DOM node, and close up in a
      // big city there are thousands.
      if (p.kind === "kiosk" && p.free_places != null) { marker.setIcon(pointIcon(p)); }
      marker.options.title = marker.options.alt = markerTitle(p);
      if (marker._icon) { marker._icon.title = marker.options.title; }
      if (p.kind === "kiosk" && p.capacity != null) { marker.liveBadge = p.free_places + "|" + isStale(p); }
      if (p.kind === "night_market" && p.opening_hours && !marker.getTooltip()) {
        marker.bindTooltip(el("span", {}, formatHours(p.opening_hours)), {
          permanent: true, direction: "bottom", offset: [0, 14], className: "night-hours"
        });
      }
      if (marker.isPopupOpen()) { marker.setPopupContent(pointPopup(p, marker)); }
    }

    /* A single point of a clustered tile: its record is asked when its popup opens (a point-sized box). */
    function detailOne(marker) {
      var at = marker.getLatLng(), d = 2e-6;
      var box = [at.lng - d, at.lat - d, at.lng + d, at.lat + d].map(function (n) { return n.toFixed(7); }).join(",");
      G.getJSON(config.api.points + "?bbox=" + box).then(function (collection) {
        var hit = collection.features.filter(function (f) { return f.properties.id === marker.feature.id; })[0];
        if (hit) { detail(marker, hit); }
      }).catch(failed);
    }

    function makePointTiles() {
      var PointTiles = L.GridLayer.extend({
        createTile: function (coords, done) {
          var tile = document.createElement("div");
          var state = tile.geoservice = { coords: coords, group: L.layerGroup(), ids: [], clustered: false };
          state.address = pointTileAddress(coords);
          tileStates[coords.x + ":" + coords.y + ":" + coords.z] = state;
          loadPointTile(state).then(function () { done(null, tile); }, function (err) {
            failed(err);
            done(err, tile);
          });
          return tile;
        },
        // By the zoom the grid is laid out for (Leaflet's own, during a zoom animation the new one): the tiles are
        // empty boxes, only their addresses matter.
        getTileSize: function () {
          var size = pointTileSize(this._tileZoom !== undefined ? this._tileZoom : tileZoom());
          return L.point(size, size);
        }
      });
      // Tiles are asked when a move ends (not while dragging), for the view only: a pan asks for the new tiles.
      pointTiles = new PointTiles({ updateWhenIdle: true, updateWhenZooming: false, keepBuffer: 1,
                                    noWrap: true, pane: ensurePane("pointTiles") });
      pointTiles.on("tileunload", function (event) {
        var state = event.tile.geoservice;
        state.unloaded = true;
        markers.removeLayer(state.group);
        delete tileStates[state.coords.x + ":" + state.coords.y + ":" + state.coords.z];
        state.ids.forEach(function (id) {
          if (markersById[id] && markersById[id].tileState === state) { delete markersById[id]; }
        });
      });
      pointTiles.addTo(map);
      markers.addTo(map);
    }

    // Markers of the tiles of another zoom (kept by Leaflet until the new ones are in) leave at once.
    function showTileZoom() {
      var z = tileZoom();
      Object.keys(tileStates).forEach(function (key) {
        var state = tileStates[key];
        if (state.coords.z === z) { markers.addLayer(state.group); } else { markers.removeLayer(state.group); }
      });
    }

    function reloadPoints() {
      if (viewHeld) { return; }
      reloading = true;  // revalidated with the server: an edit changes the data version, so the tile
      markersById = {};
      pointTiles.redraw();
      reloading = false;
      awaitView();
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

    function pointMarker(feature) {
      var p = feature.properties;
      var coords = feature.geometry.coordinates;
      var marker = L.marker([coords[1], coords[0]], {
        title: markerTitle(p), alt: markerTitle(p), keyboard: true, riseOnHover: true, icon: pointIcon(p),
        pmIgnore: true  // for Leaflet-Geoman (editors): moved by the editing panel, and nothing snaps to it
      });
      marker.feature = feature;
      tag(marker, p.kind);
      marker.bindPopup(function () {
        if (!marker.detailed) {
          detailOne(marker);
          return el("div", { "class": "point-popup-loading" }, t("loading"));
        }
        return pointPopup(marker.feature.properties, marker);
      }, { maxWidth: 320, minWidth: 220 });
      markersById[p.id] = marker;
      return marker;
    }

    // Whichever view load finishes first completes the initial load (a user may move before it answers).
    function viewLoaded() {
      view.serial += 1;
      document.body.setAttribute("data-view-serial", String(view.serial));
      document.body.setAttribute("data-view", "ready");
      if (firstViewPending) {
        firstViewPending = false;
        if (statusKey === "loading") { setStatus(null); }
        document.body.setAttribute("data-layers-loaded", "true");
        document.dispatchEvent(new CustomEvent("geoservice:drawn", { detail: { first: true } }));
      } else {
        document.dispatchEvent(new CustomEvent("geoservice:drawn", { detail: { first: false } }));
      }
    }

    // While an editor drags a marker the drawn markers stay (a reload would replace the one in hand).
    var viewHeld = false;

    /* A view is drawn when the points tiles for it are in (and their markers added) and MapLibre is idle (its
       tiles drawn): what the page's tests and bench/bench_map_paint.py wait for ("geoservice:drawn"). */
    function awaitView() {
      var move = view.move = (view.move || 0) + 1;
      var pending = 3;
      document.body.setAttribute("data-view", "loading");
      function part(name) {
        if (name) { performance.mark("geoservice:" + name + ":" + move); }
        pending -= 1;
        if (pending === 0 && move === view.move) { viewLoaded(); }
      }
      if (pointTiles.isLoading()) {
        pointTiles.once("load", function () { part("points"); });
      } else { part("points"); }
      updateGrids().then(function () { part(null); });
      // The binding moves MapLibre on a throttle (32 ms): ask for a frame after that, then wait for idle.
      window.setTimeout(function () {
        gl.once("idle", function () { part("vector"); });
        gl.triggerRepaint();
      }, 40);
    }

    function moved() {
      writeHash();
      showTileZoom();
      awaitView();
    }

    // -- live occupancy, status and notices ------------------------------------------------------------------
    var liveSince = null;

    /* Changes since the last answer (the API looks a little further back, for changes committed just after
       it); before the first, since the newest change among the points drawn (nothing is asked until points are
       drawn: a change before they were read is in what was read). */
    function liveQuery() {
      if (liveSince === null) {
        var times = Object.keys(markersById).map(function (id) {
          return Date.parse(markersById[id].feature.properties.live_updated_at) || 0;
        }).filter(Boolean);
        if (!times.length) { return null; }
        liveSince = Math.max.apply(null, times);
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
      // Whether a point is open now depends on its hours too, which only the server reads: ask for the records.
      if (statusChanged) {
        Object.keys(tileStates).forEach(function (key) {
          if (tileStates[key].detailed) { loadDetails(tileStates[key]); }
        });
      }
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
    // One entry per layer of the control: districts, grids, streets (MapLibre layers shown or hidden; the grids'
    // entry also holds the close-up outlines and labels) and one per point kind (the points tiles asked again
    // with ?kinds= for the kinds on).
    function addLayerControl() {
      var overlays = {};
      LAYER_KEYS.forEach(function (key) {
        groups[key] = tag(L.featureGroup().addTo(map), key);
        overlays["<span data-i18n=\"layer_" + key + "\">" + escapeHtml(t("layer_" + key)) + "</span>"] = groups[key];
      });
      config.kinds.forEach(function (kind) {
        activeKinds[kind.code] = true;
        groups[kind.code] = tag(L.layerGroup().addTo(map), kind.code);
        overlays[kindSwatch(kind.code) + "<span data-kind-label=\"" + kind.code + "\">" +
                 escapeHtml(kindLabel(kind.code)) + "</span>"] = groups[kind.code];
      });
      L.control.layers(null, overlays, { collapsed: false, position: "topright" }).addTo(map);
      map.on("overlayadd overlayremove", function (event) {
        var key = event.layer.options.geoserviceLayer, on = event.type === "overlayadd";
        if (VECTOR_LAYERS[key]) {
          setVectorVisible(key, on);
          awaitView();
        } else if (Object.prototype.hasOwnProperty.call(activeKinds, key)) {
          activeKinds[key] = on;
          reloadPoints();
        }
      });
    }

    // -- start ------------------------------------------------------------------------------------------------
    addLayerControl();
    // Controls first in the tab order: otherwise a keyboard user tabs through every marker to reach them.
    map.getContainer().insertBefore(map._controlContainer, map.getContainer().firstChild);
    addLocate();
    addPanel();
    addLegend();
    restoreHash();
    writeHash();
    applyLanguage();
    setStatus("loading");
    addVectorLayers();
    makePointTiles();
    groups.grids.addLayer(gridLabels);
    map.on("moveend", moved);
    map.on("click", vectorClick);
    awaitView();
    gl.once("load", loadCoverage);
    window.addEventListener("hashchange", restoreHash);
    G.live.start(liveQuery, applyLive);
    G.city = {
      map: map, gl: gl, groups: groups, markers: markers, pointTiles: pointTiles, hooks: hooks,
      setStatus: setStatus, tileStates: tileStates,
      marker: function (id) { return markersById[id]; },
      reloadView: reloadPoints,
      holdView: function (held) {
        viewHeld = held;
        if (!held) { reloadPoints(); }
      },
      reloadGrids: function () {
        gl.getSource("grids").setTiles([tileUrl("grids")]);
        updateGrids(true);
        loadCoverage();
      }
    };
  }

  startCityMap();
}());
