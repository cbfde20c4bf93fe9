// The small map of the OGC API's HTML pages: the features of the page (embedded as JSON in #ogc-features), drawn
// and framed. A file rather than an inline script, so that the pages' Content-Security-Policy allows no inline
// script at all.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("ogc-features").textContent);
  var map = L.map("map", {attributionControl: false});
  var layer = L.geoJSON(data, {
    pointToLayer: function (feature, latlng) { return L.circleMarker(latlng, {radius: 5}); }
  }).addTo(map);
  var bounds = layer.getBounds();
  if (bounds.isValid()) { map.fitBounds(bounds, {maxZoom: 17}); } else { map.setView([0, 0], 1); }
})();
