/* geoservice: the points of a Mapbox Vector Tile (MVT 2.1) read in the page, so that the city map can draw them as
 * Leaflet markers (popups, live badges and the editing hooks work on Leaflet markers). MapLibre GL draws every other
 * layer and decodes those tiles itself; it keeps its decoder to itself, and the maintained decoders on npm
 * (@mapbox/vector-tile, pbf) ship as ES modules only, which the pages' plain scripts cannot load without a bundler.
 * A point layer needs little of the format: this reads the protobuf wire format, layers, keys/values, feature ids
 * and tags, and MoveTo commands (a point feature's geometry); lines and polygons are left alone.
 *
 * window.geoservice.mvt.points(arrayBuffer, layerName) → {extent, features: [{id, x, y, properties}]}: x, y in tile
 * units (0..extent inside the tile; outside it in the tile's buffer); an absent layer gives no features.
 * window.geoservice.mvt.toLonLat(z, tx, ty, extent, x, y) → [lon, lat] (Web Mercator tile coordinates to WGS 84).
 */
(function () {
  "use strict";

  var decoder = new TextDecoder("utf-8");

  function Reader(bytes) { this.buf = bytes; this.pos = 0; }

  // Varints above 2^53 lose precision; ids and counts stay far below it.
  Reader.prototype.varint = function () {
    var result = 0, scale = 1, b;
    do {
      b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      scale *= 128;
    } while (b & 0x80);
    return result;
  };
  Reader.prototype.int64 = function () {
    var v = this.varint();
    return v >= 9223372036854775808 ? v - 18446744073709551616 : v;  // two's complement of a negative int64
  };
  Reader.prototype.zigzag = function () {
    var v = this.varint();
    return v % 2 === 1 ? -(v + 1) / 2 : v / 2;
  };
  Reader.prototype.bytes = function () {
    var length = this.varint();
    var start = this.pos;
    this.pos += length;
    return this.buf.subarray(start, this.pos);
  };
  Reader.prototype.skip = function (wire) {
    if (wire === 0) { this.varint(); } else if (wire === 1) { this.pos += 8; } else if (wire === 2) {
      this.pos += this.varint();
    } else if (wire === 5) { this.pos += 4; } else { throw new Error("MVT: unknown wire type " + wire); }
  };
  Reader.prototype.each = function (fn) {
    while (this.pos < this.buf.length) {
      var key = this.varint();
      fn(key >> 3, key & 7);
    }
  };
  Reader.prototype.packed = function () {
    var r = new Reader(this.bytes()), out = [];
    while (r.pos < r.buf.length) { out.push(r.varint()); }
    return out;
  };

  function value(bytes) {
    var r = new Reader(bytes), v = null;
    var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    r.each(function (field, wire) {
      if (field === 1) { v = decoder.decode(r.bytes()); }
      else if (field === 2) { v = view.getFloat32(r.pos, true); r.pos += 4; }
      else if (field === 3) { v = view.getFloat64(r.pos, true); r.pos += 8; }
      else if (field === 4) { v = r.int64(); }
      else if (field === 5) { v = r.varint(); }
      else if (field === 6) { v = r.zigzag(); }
      else if (field === 7) { v = Boolean(r.varint()); }
      else { r.skip(wire); }
    });
    return v;
  }

  function firstPoint(geometry) {
    // MoveTo (command 1) with count ≥ 1, then zigzag (dx, dy) from (0, 0).
    if (!geometry.length || (geometry[0] & 7) !== 1) { return null; }
    function zz(n) { return n % 2 === 1 ? -(n + 1) / 2 : n / 2; }
    return [zz(geometry[1]), zz(geometry[2])];
  }

  function readLayer(bytes) {
    var r = new Reader(bytes);
    var layer = { name: null, extent: 4096, keys: [], values: [], raw: [] };
    r.each(function (field, wire) {
      if (field === 1) { layer.name = decoder.decode(r.bytes()); }
      else if (field === 2) { layer.raw.push(r.bytes()); }
      else if (field === 3) { layer.keys.push(decoder.decode(r.bytes())); }
      else if (field === 4) { layer.values.push(value(r.bytes())); }
      else if (field === 5) { layer.extent = r.varint(); }
      else { r.skip(wire); }
    });
    return layer;
  }

  function readFeature(bytes, layer) {
    var r = new Reader(bytes), f = { id: null, type: 0, tags: [], geometry: [] };
    r.each(function (field, wire) {
      if (field === 1) { f.id = r.varint(); }
      else if (field === 2) { f.tags = r.packed(); }
      else if (field === 3) { f.type = r.varint(); }
      else if (field === 4) { f.geometry = r.packed(); }
      else { r.skip(wire); }
    });
    if (f.type !== 1) { return null; }
    var at = firstPoint(f.geometry);
    if (!at) { return null; }
    var properties = {};
    for (var i = 0; i + 1 < f.tags.length; i += 2) { properties[layer.keys[f.tags[i]]] = layer.values[f.tags[i + 1]]; }
    return { id: f.id, x: at[0], y: at[1], properties: properties };
  }

  function points(buffer, layerName) {
    var r = new Reader(new Uint8Array(buffer));
    var out = { extent: 4096, features: [] };
    r.each(function (field, wire) {
      if (field !== 3) { r.skip(wire); return; }
      var layer = readLayer(r.bytes());
      if (layer.name !== layerName) { return; }
      out.extent = layer.extent;
      layer.raw.forEach(function (bytes) {
        var f = readFeature(bytes, layer);
        if (f) { out.features.push(f); }
      });
    });
    return out;
  }

  function toLonLat(z, tx, ty, extent, x, y) {
    var n = Math.pow(2, z);
    var wx = (tx + x / extent) / n, wy = (ty + y / extent) / n;
    var lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * wy))) * 180 / Math.PI;
    return [wx * 360 - 180, lat];
  }

  window.geoservice.mvt = { points: points, toLonLat: toLonLat };
}());
