/* geoservice city map: fills folium's layer groups from our GeoJSON API. No third-party code here. */
(function () {
  "use strict";

  var KIND_COLOURS = {
    kiosk: "#c0392b", rest_station: "#2471a3", vendor_point: "#1e8449", melon_point: "#b7950b",
    night_market: "#7d3c98", job_board: "#a04000", parking: "#2e4053", toilet: "#117a65"
  };
  var STREET_WEIGHTS = { trunk: 5, primary: 4, secondary: 3.5, tertiary: 2.5, residential: 1.5 };
  var pending = 0;
  var loaded = {};

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function pointPopup(p) {
    var rows = ["<strong>" + escapeHtml(p.name) + "</strong>",
                escapeHtml(p.kind_label.zh) + " · " + escapeHtml(p.kind_label.en)];
    if (p.amenity_labels.length) {
      rows.push("<ul class=\"amenities\">" + p.amenity_labels.map(function (a) {
        return "<li data-amenity=\"" + escapeHtml(a.code) + "\">" + escapeHtml(a.zh) + " " + escapeHtml(a.en) + "</li>";
      }).join("") + "</ul>");
    }
    if (p.opening_hours) { rows.push("开放时间 Hours: " + escapeHtml(p.opening_hours)); }
    if (p.capacity != null) {
      rows.push("空位 Free places: " + (p.capacity - (p.occupancy || 0)) + " / " + p.capacity);
    }
    if (p.phone) {
      rows.push("电话 Phone: <a href=\"tel:" + escapeHtml(p.phone.replace(/[^0-9+]/g, "")) + "\">" +
                escapeHtml(p.phone) + "</a>");
    }
    if (p.address) { rows.push(escapeHtml(p.address)); }
    return rows.join("<br>");
  }

  var STYLES = {
    district: { options: { style: { color: "#1b2631", weight: 3, fill: false } } },
    grid: {
      options: { style: { color: "#5d6d7e", weight: 1, fillColor: "#aed6f1", fillOpacity: 0.15 } },
      popup: function (p) {
        return "<strong>" + escapeHtml(p.name) + "</strong><br>" + escapeHtml(p.code) + "<br>网格员 " +
          escapeHtml(p.officer_name) + " " + escapeHtml(p.officer_phone) + "<br>" + escapeHtml(p.squad);
      }
    },
    street: {
      options: {
        style: function (f) {
          return { color: "#626567", weight: STREET_WEIGHTS[f.properties.class] || 1, opacity: 0.8 };
        }
      },
      popup: function (p) { return escapeHtml(p.name) + " (" + escapeHtml(p.class) + ")"; }
    },
    point: {
      options: {
        pointToLayer: function (f, latlng, pane) {
          return L.circleMarker(latlng, {
            pane: pane, radius: 7, color: "#ffffff", weight: 2, fillOpacity: 0.95,
            fillColor: KIND_COLOURS[f.properties.kind] || "#000000"
          });
        }
      },
      popup: pointPopup
    }
  };

  function setStatus(text) {
    var el = document.getElementById("map-status");
    if (el) { el.textContent = text; el.hidden = !text; }
  }

  // Draw order does not depend on which response arrives first: each kind of feature has its own pane.
  var PANES = { district: 405, grid: 410, street: 420, point: 630 };

  function ensurePane(map, name) {
    var paneName = "geoservice-" + name;
    if (!map.getPane(paneName)) { map.createPane(paneName).style.zIndex = PANES[name]; }
    return paneName;
  }

  function loadLayer(map, group, url, styleName) {
    var style = STYLES[styleName];
    var pane = ensurePane(map, styleName);
    pending += 1;
    fetch(url, { headers: { Accept: "application/geo+json, application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(url + " answered " + response.status); }
        return response.json();
      })
      .then(function (collection) {
        var options = Object.assign({ pane: pane }, style.options);
        if (options.pointToLayer) {
          var makeMarker = options.pointToLayer;
          options.pointToLayer = function (f, latlng) { return makeMarker(f, latlng, pane); };
        }
        var layer = L.geoJSON(collection, options);
        if (style.popup) {
          layer.bindPopup(function (l) { return style.popup(l.feature.properties); });
        }
        group.addLayer(layer);
        loaded[styleName] = collection.features.length;
      })
      .catch(function (err) { setStatus("加载失败 Failed to load: " + err.message); throw err; })
      .finally(function () {
        pending -= 1;
        if (pending === 0) {
          setStatus("");
          document.body.setAttribute("data-layers-loaded", "true");
        }
      });
  }

  window.geoservice = { loadLayer: loadLayer, loaded: loaded };
}());
