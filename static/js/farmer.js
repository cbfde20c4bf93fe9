/* geoservice farmer finder (/farmer): the nearest rest points to where you are, walking, in Chinese or English.
   common.js builds the Leaflet map from the page's configuration; this script asks our own API and draws the
   answers. The cards' free places, open state and notices follow /api/v1/points/live (asked every few seconds for
   the points shown), with how long ago they changed. No third-party code; every text is set as text. */
(function () {
  "use strict";

  var G = window.geoservice;
  var config = G.config;
  var t = G.t;

  var STREET_WEIGHTS = { trunk: 4, primary: 3.5, secondary: 3, tertiary: 2.5, residential: 1.5 };
  // Below this zoom a view holds too many streets to fetch for an offline basemap; the last ones stay drawn.
  var STREETS_MIN_ZOOM = 14;
  var GEOLOCATION_TIMEOUT_MS = 15000;
  // Farther than this from the nearest street, the walking distance leaves out a noticeable stretch.
  var FAR_FROM_STREET_M = 200;

  var state = {
    map: null, spot: null, spotGrid: null, filters: {}, features: [], selected: -1,
    query: null, searches: 0, layers: {}, streetsBox: null, streetsSeq: 0
  };

  function byId(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function setStatus(key, vars) {
    var status = byId("status");
    status.setAttribute("data-i18n", key);
    status.setAttribute("data-i18n-vars", JSON.stringify(vars || {}));
    status.textContent = t(key, vars);
  }

  /* Walking distance and time as a farmer reads them: whole metres, km with one decimal, whole minutes. */
  function formatDistance(metres) {
    if (metres < 1000) { return t("metres", { n: Math.round(metres) }); }
    return t("kilometres", { n: (metres / 1000).toFixed(1) });
  }

  function formatMinutes(minutes) { return Math.max(1, Math.round(minutes)); }

  function telHref(phone) { return "tel:" + String(phone).replace(/[^0-9+]/g, ""); }

  // ---- language -------------------------------------------------------------------------------------------

  function applyLanguage() {
    G.applyLanguage();
    renderSpotGrid();
    renderResults();
  }

  function switchLanguage() {
    var url = new URL(window.location.href);
    url.searchParams.set("lang", G.switchLanguage());
    window.history.replaceState(null, "", url.toString());
    applyLanguage();
  }

  // ---- where the farmer is --------------------------------------------------------------------------------

  function locate() {
    if (!navigator.geolocation) { geolocationFailed(); return; }
    setStatus("locating");
    navigator.geolocation.getCurrentPosition(function (position) {
      setSpot(position.coords.longitude, position.coords.latitude, { fly: true });
    }, geolocationFailed, { enableHighAccuracy: true, timeout: GEOLOCATION_TIMEOUT_MS, maximumAge: 60000 });
  }

  function geolocationFailed() {
    setStatus("geo_failed");
    byId("use-centre").hidden = false;
    state.map.getContainer().classList.add("awaiting-tap");
    document.body.setAttribute("data-geolocation", "failed");
  }

  function setSpot(lon, lat, options) {
    state.spot = { lon: Number(lon.toFixed(6)), lat: Number(lat.toFixed(6)) };
    state.map.getContainer().classList.remove("awaiting-tap");
    var latlng = [state.spot.lat, state.spot.lon];
    if (state.layers.spot) { state.layers.spot.setLatLng(latlng); } else {
      state.layers.spot = L.circleMarker(latlng, {
        radius: 11, color: "#ffffff", weight: 4, fillColor: "#0044cc", fillOpacity: 1, className: "farmer-spot"
      }).addTo(state.map);
    }
    if (options && options.fly) { state.map.setView(latlng, Math.max(state.map.getZoom(), 16)); }
    search();
    loadSpotGrid();
  }

  function loadSpotGrid() {
    var spot = state.spot;
    G.getJSON(config.api.grid_at + "?lon=" + spot.lon + "&lat=" + spot.lat, { notFoundIsNull: true }).then(function (grid) {
      if (spot !== state.spot) { return; }
      state.spotGrid = grid ? grid.properties : false;
      renderSpotGrid();
    }).catch(showNetworkError);
  }

  function renderSpotGrid() {
    var box = byId("spot-grid");
    box.textContent = "";
    if (state.spotGrid === null) { box.hidden = true; return; }
    box.hidden = false;
    if (state.spotGrid === false) { box.appendChild(el("p", {}, t("no_grid"))); return; }
    var g = state.spotGrid;
    box.appendChild(el("p", {}, t("your_grid", { grid: g.name, squad: g.squad_name || "" })));
    if (g.squad_phone) { box.appendChild(callLink("call-squad spot-squad", g.squad_name, g.squad_phone, "squad")); }
  }

  // ---- the search -----------------------------------------------------------------------------------------

  function queryParams() {
    var params = new URLSearchParams({ lon: state.spot.lon, lat: state.spot.lat, k: config.results });
    Object.keys(config.base_query).forEach(function (name) { params.set(name, config.base_query[name]); });
    var amenities = [];
    Object.keys(config.filters).forEach(function (code) {
      if (!state.filters[code]) { return; }
      var wanted = config.filters[code];
      Object.keys(wanted).forEach(function (name) {
        if (name === "amenity") { amenities = amenities.concat(wanted.amenity); } else { params.set(name, wanted[name]); }
      });
    });
    amenities.filter(function (a, i) { return amenities.indexOf(a) === i; })
      .forEach(function (a) { params.append("amenity", a); });
    return params;
  }

  function search() {
    if (!state.spot) { return; }
    var params = queryParams();
    var searchNo = ++state.searches;
    state.query = params.toString();
    document.body.removeAttribute("data-results");
    setStatus("searching");
    G.getJSON(config.api.nearest + "?" + state.query).then(function (collection) {
      if (searchNo !== state.searches) { return; }  // a newer spot or filter has been chosen meanwhile
      state.features = collection.features;
      state.selected = -1;
      if (state.features.length) {
        setStatus("found", { n: state.features.length });
        select(0, { fit: true });
      } else {
        setStatus("no_results");
        clearRoute();
      }
      renderResults();
      drawResultMarkers();
      document.body.setAttribute("data-results", String(state.features.length));
      if (state.live) { state.live.tick(); }  // the nearest answer carries no notice or age: ask at once
    }).catch(showNetworkError);
  }

  function showNetworkError() { setStatus("error_network"); }

  function toggleFilter(button) {
    var code = button.getAttribute("data-filter");
    state.filters[code] = !state.filters[code];
    button.setAttribute("aria-pressed", state.filters[code] ? "true" : "false");
    search();
  }

  // ---- results --------------------------------------------------------------------------------------------

  function callLink(cls, name, phone, who) {
    var key = who === "squad" ? "call_squad" : "call_point";
    var vars = { name: name, squad: name, phone: phone };
    var link = el("a", { "class": "button " + cls, href: telHref(phone), "aria-label": t(key + "_aria", vars) },
      t(key, vars));
    return link;
  }

  function navLink(cls, app, href, name) {
    return el("a", {
      "class": "button nav " + cls, href: href, target: "_blank", rel: "noopener noreferrer",
      "aria-label": t("navigate_aria", { app: t(app), name: name })
    }, t("navigate_" + app));
  }

  /* The API's route runs from the spot straight onto the nearest street (its second vertex), then along the
     streets. Far from any street that first leg is not along a street, so the farmer is told how long it is. */
  function offStreetMetres(feature) {
    var route = feature.properties.route;
    if (!route || route.coordinates.length < 2) { return 0; }
    var start = route.coordinates[1];
    return state.map.distance([state.spot.lat, state.spot.lon], [start[1], start[0]]);
  }

  function resultCard(feature, index) {
    var p = feature.properties;
    var card = el("li", {
      "class": "result" + (index === state.selected ? " selected" : ""), "data-id": p.id,
      "data-walk-m": p.walk_distance_m, "data-walk-minutes": p.walk_minutes
    });
    card.appendChild(el("h3", {}, (index + 1) + ". " + p.name));
    var kind = el("p", { "class": "kind" }, p.kind_label[G.lang()] + " · ");
    kind.appendChild(el("span", { "class": "open-state" }));
    card.appendChild(kind);
    card.appendChild(el("p", { "class": "walk" }, t("walk", {
      distance: formatDistance(p.walk_distance_m), minutes: formatMinutes(p.walk_minutes)
    })));
    var offStreet = offStreetMetres(feature);
    if (offStreet > FAR_FROM_STREET_M) {
      card.appendChild(el("p", { "class": "far-from-street" }, t("far_from_street", {
        distance: formatDistance(offStreet)
      })));
    }
    card.appendChild(el("p", { "class": "free" }));
    card.appendChild(el("div", { "class": "live" }));
    fillLive(card, p);
    if (p.amenity_labels.length) {
      card.appendChild(el("p", { "class": "amenities" }, p.amenity_labels.map(function (a) {
        return a[G.lang()];
      }).join(" · ")));
    }
    var actions = el("div", { "class": "actions" });
    var show = el("button", {
      type: "button", "class": "button show-route", "aria-pressed": index === state.selected ? "true" : "false"
    }, t(index === state.selected ? "route_shown" : "show_route"));
    show.addEventListener("click", function () {
      select(index, { fit: true });
      renderResults();
      // The cards are rebuilt: keep keyboard focus on the button just pressed.
      byId("results").children[index].querySelector(".show-route").focus();
    });
    actions.appendChild(show);
    if (p.phone) { actions.appendChild(callLink("call-point", p.name, p.phone, "point")); }
    if (p.grid && p.grid.squad_phone) {
      actions.appendChild(callLink("call-squad", p.grid.squad_name, p.grid.squad_phone, "squad"));
    }
    actions.appendChild(navLink("nav-amap", "amap", p.navigation.amap, p.name));
    actions.appendChild(navLink("nav-baidu", "baidu", p.navigation.baidu, p.name));
    card.appendChild(actions);
    return card;
  }

  /* The parts of a card that change while it is shown: open state, free places, notice and age. */
  function fillLive(card, p) {
    var open = p.open_now && (p.status === undefined || p.status === "open");
    var state = card.querySelector(".open-state");
    state.className = "open-state " + (open ? "open" : "closed");
    state.textContent = p.status && p.status !== "open" ? t("status_" + p.status) : t(open ? "open_now" : "closed_now");
    var free = card.querySelector(".free");
    free.hidden = p.capacity === null || p.capacity === undefined;
    free.textContent = free.hidden ? ""
      : t("free_places", { free: p.capacity - (p.occupancy || 0), capacity: p.capacity });
    card.setAttribute("data-free", free.hidden ? "" : String(p.capacity - (p.occupancy || 0)));
    if (p.live_updated_at) { G.live.render(card.querySelector(".live"), p); }
  }

  function applyLive(answer) {
    var byId = {};
    answer.points.forEach(function (live) { byId[live.id] = live; });
    var cards = document.querySelectorAll("#results > li");
    state.features.forEach(function (feature, index) {
      var live = byId[feature.properties.id];
      if (!live) { return; }
      var p = feature.properties;
      ["occupancy", "capacity", "status", "notice", "live_updated_at"].forEach(function (k) { p[k] = live[k]; });
      p.free_places = p.capacity == null ? null : p.capacity - (p.occupancy || 0);
      if (cards[index]) { fillLive(cards[index], p); }
    });
    document.body.setAttribute("data-live", answer.now);
  }

  function liveQuery() {
    if (!state.features.length) { return null; }
    return "ids=" + state.features.map(function (f) { return f.properties.id; }).join(",");
  }

  function renderResults() {
    var list = byId("results");
    list.textContent = "";
    state.features.forEach(function (feature, index) { list.appendChild(resultCard(feature, index)); });
  }

  function drawResultMarkers() {
    if (state.layers.results) { state.map.removeLayer(state.layers.results); }
    state.layers.results = L.layerGroup(state.features.map(function (feature, index) {
      var c = feature.geometry.coordinates;
      var marker = L.marker([c[1], c[0]], {
        icon: L.divIcon({ className: "farmer-result-icon", html: String(index + 1), iconSize: [34, 34] }),
        title: feature.properties.name, alt: feature.properties.name, keyboard: true
      });
      marker.on("click", function () { select(index, { fit: false }); renderResults(); });
      return marker;
    })).addTo(state.map);
  }

  function clearRoute() {
    if (state.layers.route) { state.map.removeLayer(state.layers.route); state.layers.route = null; }
  }

  function select(index, options) {
    state.selected = index;
    clearRoute();
    var feature = state.features[index];
    var route = feature.properties.route;
    var latlngs = route ? route.coordinates.map(function (c) { return [c[1], c[0]]; }) : [];
    var c = feature.geometry.coordinates;
    // The route runs between the snapped positions on the street: join it to the spot and to the point.
    var path = [[state.spot.lat, state.spot.lon]].concat(latlngs, [[c[1], c[0]]]);
    state.layers.route = L.layerGroup([
      L.polyline(path, { color: "#ffffff", weight: 12, opacity: 0.9, interactive: false }),
      L.polyline(path, { color: "#c2185b", weight: 7, opacity: 1, className: "farmer-route", interactive: false })
    ]).addTo(state.map);
    if (options && options.fit) { state.map.fitBounds(L.latLngBounds(path), { padding: [30, 30], maxZoom: 17 }); }
  }

  // ---- offline basemap: our own streets for the current view -------------------------------------------------

  function loadStreets() {
    var map = state.map;
    if (map.getZoom() < STREETS_MIN_ZOOM) { return; }
    if (state.streetsBox && state.streetsBox.contains(map.getBounds())) { return; }
    var box = map.getBounds().pad(0.3);
    var seq = ++state.streetsSeq;
    G.getJSON(config.api.streets + "?bbox=" + G.bbox(box)).then(function (collection) {
      if (seq !== state.streetsSeq) { return; }
      if (state.layers.streets) { map.removeLayer(state.layers.streets); }
      state.layers.streets = L.geoJSON(collection, {
        pane: "farmer-streets", renderer: state.streetRenderer, interactive: false,
        style: function (f) { return { color: "#5f6368", weight: STREET_WEIGHTS[f.properties["class"]] || 1.2 }; }
      }).addTo(map);
      state.streetsBox = box;
      document.body.setAttribute("data-streets-loaded", String(collection.features.length));
    }).catch(showNetworkError);
  }

  function startOfflineBasemap(map) {
    map.createPane("farmer-streets").style.zIndex = 350;
    state.streetRenderer = L.canvas({ pane: "farmer-streets", padding: 0.3 });
    map.on("moveend", loadStreets);
    loadStreets();
  }

  // ---- start ------------------------------------------------------------------------------------------------

  function start() {
    var map = G.createMap();
    state.map = map;
    document.querySelectorAll("[data-filter]").forEach(function (button) {
      state.filters[button.getAttribute("data-filter")] = button.getAttribute("aria-pressed") === "true";
      button.addEventListener("click", function () { toggleFilter(button); });
    });
    map.on("click", function (e) { setSpot(e.latlng.lng, e.latlng.lat); });
    byId("find").addEventListener("click", locate);
    byId("use-centre").addEventListener("click", function () {
      var centre = map.getCenter();
      setSpot(centre.lng, centre.lat);
    });
    byId("lang-switch").addEventListener("click", switchLanguage);
    if (!config.basemap) { startOfflineBasemap(map); }
    state.live = G.live.start(liveQuery, applyLive);
    applyLanguage();
    document.body.setAttribute("data-ready", "true");
  }

  window.geoserviceFarmer = { state: state };
  start();
}());
