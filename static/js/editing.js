/* geoservice city map editing (/ for an officer or a planner; loaded after citymap.js, with Leaflet-Geoman).
 *
 * A point's popup gets "编辑" (a form with the fields the user's role may change: config.editor.point_fields), its
 * history, and for a planner "拖动到新位置" (drag the marker; PATCH of the geometry when let go). A planner also
 * adds points and draws grids with Geoman's toolbar, and edits or reshapes a grid from its popup. Every write is read
 * first (GET with its ETag) and sent with If-Match and the page's CSRF token (common.js send); a 412 says that
 * someone else changed the feature, and the form is filled again with what is there now. The API's errors name
 * their fields ({field, reason}) and are shown next to them. The server checks every write whatever this page
 * offers. All text is set as text (names, addresses and notices are typed by people).
 */
(function () {
  "use strict";

  var G = window.geoservice;
  var config = G.config;
  var editor = config.editor;
  if (!editor || !G.city) { return; }
  var t = G.t, el = G.el;
  var city = G.city, map = city.map;
  var TEXTAREA_FIELDS = { notice: true };
  var NUMBER_FIELDS = { capacity: true, occupancy: true };
  var panel = null;
  var current = null;  // what the panel edits: {kind: "point"|"grid", mode: "edit"|"create", key, etag, ...}

  function pointUrl(id) { return config.api.point + "/" + encodeURIComponent(id); }
  function gridUrl(code) { return config.api.grid + "/" + encodeURIComponent(code); }

  // ---- the panel ---------------------------------------------------------------------------------------------

  function buildPanel() {
    panel = el("aside", { id: "edit-panel", "class": "edit-panel", "aria-labelledby": "edit-heading", hidden: "" });
    var head = panel.appendChild(el("div", { "class": "edit-head" }));
    head.appendChild(el("h2", { id: "edit-heading" }));
    var close = head.appendChild(el("button", { type: "button", "class": "edit-close", "data-i18n-aria": "close" },
                                    "×"));
    close.setAttribute("aria-label", t("close"));
    close.addEventListener("click", closePanel);
    panel.appendChild(el("p", { id: "edit-message", "class": "edit-message", role: "status", "aria-live": "polite" }));
    panel.appendChild(el("div", { id: "edit-body" }));
    panel.addEventListener("keydown", function (event) { if (event.key === "Escape") { closePanel(); } });
    L.DomEvent.disableClickPropagation(panel);
    L.DomEvent.disableScrollPropagation(panel);
    document.body.appendChild(panel);
  }

  /* The panel's fixed labels carry data-i18n: the city map's language switch relabels them in place. */
  function openPanel(headingKey) {
    panel.querySelector("#edit-heading").setAttribute("data-i18n", headingKey);
    panel.querySelector("#edit-heading").textContent = t(headingKey);
    message("");
    panel.querySelector("#edit-body").textContent = "";
    panel.hidden = false;
    return panel.querySelector("#edit-body");
  }

  function closePanel() {
    if (current && current.cleanup) { current.cleanup(); }
    current = null;
    panel.hidden = true;
    document.body.removeAttribute("data-editing");
  }

  function message(text, kind) {
    var box = panel.querySelector("#edit-message");
    box.textContent = text || "";
    box.className = "edit-message" + (kind ? " " + kind : "");
    if (kind) { document.body.setAttribute("data-edit-result", kind); }
  }

  // ---- forms -------------------------------------------------------------------------------------------------

  function optionLabel(field, code) {
    if (field === "kind") { return G.kindLabel(code); }
    if (field === "status") { return t("status_" + code); }
    return code;
  }

  function fieldControl(field, value) {
    var id = "edit-" + field;
    var wrap = el("div", { "class": "field", "data-field": field });
    var errorId = id + "-error";
    var control;
    if (field === "amenities") {
      control = el("fieldset", { id: id, "aria-describedby": errorId });
      control.appendChild(el("legend", { "data-i18n": "field_amenities" }, t("field_amenities")));
      editor.amenities.forEach(function (a) {
        var label = control.appendChild(el("label", { "class": "check" }));
        var box = label.appendChild(el("input", { type: "checkbox", name: "amenities", value: a.code }));
        box.checked = (value || []).indexOf(a.code) !== -1;
        label.appendChild(document.createTextNode(" " + a[G.lang()]));
      });
      wrap.appendChild(control);
    } else {
      wrap.appendChild(el("label", { "for": id, "data-i18n": "field_" + field }, t("field_" + field)));
      if (field === "kind" || field === "status") {
        control = el("select", { id: id, name: field });
        var codes = field === "kind" ? config.kinds.map(function (k) { return k.code; }) : editor.statuses;
        codes.forEach(function (code) {
          var option = control.appendChild(el("option", field === "kind" ? { value: code, "data-kind-label": code }
            : { value: code, "data-i18n": "status_" + code }, optionLabel(field, code)));
          option.selected = code === value;
        });
      } else if (TEXTAREA_FIELDS[field]) {
        control = el("textarea", { id: id, name: field, rows: "2" });
        control.value = value == null ? "" : String(value);
      } else {
        control = el("input", { id: id, name: field, type: NUMBER_FIELDS[field] ? "number" : "text",
                                autocomplete: "off" });
        if (NUMBER_FIELDS[field]) { control.setAttribute("min", "0"); control.setAttribute("step", "1"); }
        control.value = value == null ? "" : String(value);
      }
      control.setAttribute("aria-describedby", errorId);
      wrap.appendChild(control);
    }
    wrap.appendChild(el("p", { id: errorId, "class": "field-error", "data-error-for": field }));
    return wrap;
  }

  function buildForm(fields, properties, onSubmit) {
    var form = el("form", { "class": "edit-form", novalidate: "" });
    fields.forEach(function (field) { form.appendChild(fieldControl(field, properties[field])); });
    form.appendChild(el("p", { "class": "field-error", "data-error-for": "geometry" }));
    var buttons = form.appendChild(el("div", { "class": "edit-buttons" }));
    buttons.appendChild(el("button", { type: "submit", "class": "primary", "data-i18n": "save" }, t("save")));
    var cancel = buttons.appendChild(el("button", { type: "button", "data-i18n": "cancel" }, t("cancel")));
    cancel.addEventListener("click", closePanel);
    form.addEventListener("submit", function (event) { event.preventDefault(); onSubmit(form); });
    return form;
  }

  /* The form's values as the API takes them: numbers, a list of amenities, and null for an empty field. */
  function readForm(form, fields) {
    var values = {};
    fields.forEach(function (field) {
      if (field === "amenities") {
        values.amenities = Array.prototype.filter.call(form.querySelectorAll("input[name=amenities]"),
          function (box) { return box.checked; }).map(function (box) { return box.value; });
        return;
      }
      var control = form.querySelector("[name=" + field + "]");
      if (!control || control.disabled) { return; }
      var text = control.value.trim();
      if (text === "") { values[field] = null; return; }
      values[field] = NUMBER_FIELDS[field] && /^-?\d+$/.test(text) ? Number(text) : text;
    });
    return values;
  }

  function changedValues(values, before) {
    var changed = {};
    Object.keys(values).forEach(function (field) {
      if (JSON.stringify(values[field]) !== JSON.stringify(before[field] == null ? null : before[field])) {
        changed[field] = values[field];
      }
    });
    return changed;
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll("[data-error-for]"), function (p) { p.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (c) {
      c.removeAttribute("aria-invalid");
    });
  }

  /* The API's errors next to their fields; errors about fields the form does not show go to the message line. */
  function showErrors(form, error) {
    var loose = [];
    (error.errors || []).forEach(function (e) {
      var field = String(e.field || "").split(".").pop();
      var slot = form.querySelector("[data-error-for='" + CSS.escape(field) + "']");
      if (!slot) { loose.push((e.field ? e.field + ": " : "") + e.reason); return; }
      slot.textContent = slot.textContent ? slot.textContent + "; " + e.reason : e.reason;
      var control = form.querySelector("#edit-" + CSS.escape(field));
      if (control) { control.setAttribute("aria-invalid", "true"); }
    });
    message(loose.length ? t("error", { description: loose.join("; ") }) : t("fix_fields"), "error");
  }

  /* What a failed write tells the user; a 412 reloads the feature (reload()) into the form. */
  function writeFailed(form, error, reload) {
    if (error.status === 400 && error.errors && error.errors.length) { showErrors(form, error); return; }
    if (error.status === 412) {
      reload().then(function () { message(t("stale_write"), "conflict"); });
      return;
    }
    if (error.status === 401 || error.status === 403) {
      message(t("not_allowed", { description: error.message }), "error");
      return;
    }
    message(error.network ? error.message : t("error", { description: error.message }), "error");
  }

  function saved(key) {
    message(t(key), "saved");
    city.reloadView();
  }

  // ---- points ------------------------------------------------------------------------------------------------

  function editPoint(id) {
    map.closePopup();
    return G.getFeature(pointUrl(id)).then(function (answer) {
      current = { kind: "point", mode: "edit", key: id, etag: answer.etag, feature: answer.body };
      showPointForm();
    }).catch(function (error) {
      openPanel("edit_point");
      message(t("error", { description: error.message }), "error");
    });
  }

  function showPointForm() {
    var state = current;
    var body = openPanel(state.mode === "create" ? "new_point" : "edit_point");
    var props = state.feature.properties;
    if (state.mode === "edit") { body.appendChild(el("p", { "class": "edit-subject" }, props.name)); }
    var fields = editor.point_fields;
    var form = buildForm(fields, props, function () { savePoint(form, fields); });
    if (state.mode === "edit" && editor.planner) { form.appendChild(deleteButton()); }
    body.appendChild(form);
    document.body.setAttribute("data-editing", "point-" + (state.key || "new"));
    var first = form.querySelector("input, select, textarea");
    if (first) { first.focus(); }
  }

  function savePoint(form, fields) {
    var state = current;
    clearErrors(form);
    var values = readForm(form, fields);
    message(t("saving"));
    var request;
    if (state.mode === "create") {
      request = G.send("POST", config.api.point, { type: "Feature", geometry: state.feature.geometry,
                                                   properties: values });
    } else {
      var changes = changedValues(values, state.feature.properties);
      if (!Object.keys(changes).length) { message(t("saved"), "saved"); return; }
      request = G.send("PATCH", pointUrl(state.key), { properties: changes }, { etag: state.etag });
    }
    request.then(function (answer) {
      if (state.mode === "create") {
        state.cleanup();
        state.mode = "edit";
        state.cleanup = null;
      }
      state.feature = answer.body;
      state.key = answer.body.id != null ? answer.body.id : state.key;
      state.etag = answer.etag;
      showPointForm();
      saved("saved");
    }).catch(function (error) {
      writeFailed(form, error, function () {
        return G.getFeature(pointUrl(state.key)).then(function (answer) {
          state.feature = answer.body;
          state.etag = answer.etag;
          showPointForm();
        });
      });
    });
  }

  /* Two steps, both in the page (no confirm() dialog): 删除, then 确认删除. */
  function deleteButton() {
    var button = el("button", { type: "button", "class": "danger" }, t("delete"));
    button.addEventListener("click", function () {
      if (button.getAttribute("data-armed") !== "true") {
        button.setAttribute("data-armed", "true");
        button.textContent = t("delete_confirm");
        return;
      }
      var state = current;
      var url = state.kind === "point" ? pointUrl(state.key) : gridUrl(state.key);
      G.send("DELETE", url, undefined, { etag: state.etag }).then(function () {
        panel.querySelector("#edit-body").textContent = "";
        message(t("deleted"), "saved");
        if (state.kind === "grid") { city.reloadGrids(); } else { city.reloadView(); }
      }).catch(function (error) {
        writeFailed(panel.querySelector("form"), error, function () {
          return state.kind === "point" ? editPoint(state.key) : editGrid(state.key);
        });
      });
    });
    return button;
  }

  /* A planner drags the marker; when it is let go the new position is saved (If-Match from a fresh read). The
     view keeps its markers meanwhile (city.holdView), so the marker in hand is the one drawn. */
  function startMove(id) {
    map.closePopup();
    var body = openPanel("move_point");
    body.appendChild(el("p", { "class": "edit-hint", "data-i18n": "move_hint" }, t("move_hint")));
    G.getFeature(pointUrl(id)).then(function (answer) {
      var marker = city.marker(id);
      if (!marker) { throw new Error(t("zoom_in_for_data")); }
      var start = marker.getLatLng();
      city.holdView(true);
      var state = current = { kind: "point", mode: "move", key: id, etag: answer.etag, cleanup: function () {
        if (marker.dragging) { marker.dragging.disable(); }
        marker.off("dragend", dropped);
        city.holdView(false);
      } };
      function dropped() {
        var at = marker.getLatLng();
        var geometry = { type: "Point", coordinates: [Number(at.lng.toFixed(7)), Number(at.lat.toFixed(7))] };
        marker.dragging.disable();
        G.send("PATCH", pointUrl(id), { geometry: geometry }, { etag: state.etag }).then(function (saved) {
          state.etag = saved.etag;
          document.body.setAttribute("data-moved", id + "@" + geometry.coordinates.join(","));
          message(t("moved"), "saved");
        }).catch(function (error) {
          marker.setLatLng(start);
          if (error.status === 412) { message(t("stale_write"), "conflict"); return; }
          var reasons = (error.errors || []).map(function (e) { return e.reason; }).join("; ");
          message(t("error", { description: reasons || error.message }), "error");
        }).finally(function () {
          marker.off("dragend", dropped);
          city.holdView(false);
        });
      }
      marker.dragging.enable();
      marker.on("dragend", dropped);
      document.body.setAttribute("data-editing", "move-" + id);
    }).catch(function (error) { message(t("error", { description: error.message }), "error"); });
  }

  // ---- grids (planner) ---------------------------------------------------------------------------------------

  function editGrid(code, layer) {
    map.closePopup();
    return G.getFeature(gridUrl(code)).then(function (answer) {
      if (current && current.cleanup) { current.cleanup(); }
      current = { kind: "grid", mode: "edit", key: code, etag: answer.etag, feature: answer.body, layer: layer };
      showGridForm();
    }).catch(function (error) {
      openPanel("edit_grid");
      message(t("error", { description: error.message }), "error");
    });
  }

  function showGridForm() {
    var state = current;
    var body = openPanel(state.mode === "create" ? "new_grid" : "edit_grid");
    var fields = editor.grid_fields.filter(function (f) { return state.mode === "create" || f !== "code"; });
    if (state.mode === "edit") {
      body.appendChild(el("p", { "class": "edit-subject" }, state.feature.properties.name + " " + state.key));
    }
    var form = buildForm(fields, state.feature.properties, function () { saveGrid(form, fields); });
    if (state.mode === "edit") {
      var reshape = el("button", { type: "button", "class": "reshape", "data-i18n": "reshape_grid" },
                       t("reshape_grid"));
      reshape.addEventListener("click", function () { startReshape(state); });
      form.insertBefore(reshape, form.querySelector(".edit-buttons"));
      form.appendChild(deleteButton());
    }
    body.appendChild(form);
    document.body.setAttribute("data-editing", "grid-" + (state.key || "new"));
  }

  function startReshape(state) {
    if (!state.layer || state.reshaping) { return; }
    state.reshaping = true;
    state.layer.pm.enable({ allowSelfIntersection: false });
    message(t("reshape_hint"));
    var previous = state.cleanup;
    state.cleanup = function () {
      if (state.layer.pm.enabled()) { state.layer.pm.disable(); }
      if (previous) { previous(); }
      city.reloadGrids();  // an unsaved shape goes back to what the server has
    };
  }

  function saveGrid(form, fields) {
    var state = current;
    clearErrors(form);
    var values = readForm(form, fields);
    message(t("saving"));
    var request;
    if (state.mode === "create") {
      // Full precision: toGeoJSON() would round every corner to 6 decimals.
      request = G.send("POST", config.api.grid, { type: "Feature", properties: values,
                                                  geometry: state.layer.toGeoJSON(false).geometry });
    } else {
      var body = { properties: changedValues(values, state.feature.properties) };
      if (state.reshaping) { body.geometry = state.layer.toGeoJSON(false).geometry; }
      request = G.send("PATCH", gridUrl(state.key), body, { etag: state.etag });
    }
    request.then(function (answer) {
      if (state.layer && state.layer.pm.enabled()) { state.layer.pm.disable(); }
      if (state.mode === "create") { map.removeLayer(state.layer); }
      state.cleanup = null;
      current = null;
      message(t("saved"), "saved");
      panel.querySelector("#edit-body").textContent = "";
      city.reloadGrids();
      city.reloadView();
      document.body.setAttribute("data-grid-saved", answer.body.id || (answer.body.properties || {}).code || "");
    }).catch(function (error) {
      writeFailed(form, error, function () {
        return G.getFeature(gridUrl(state.key)).then(function (answer) {
          state.feature = answer.body;
          state.etag = answer.etag;
          showGridForm();
        });
      });
    });
  }

  // ---- history -----------------------------------------------------------------------------------------------

  function changedFields(entry) {
    var before = (entry.before && (entry.before.properties || entry.before)) || {};
    var after = (entry.after && (entry.after.properties || entry.after)) || {};
    var names = Object.keys(Object.assign({}, before, after)).filter(function (k) {
      return k !== "updated_at" && k !== "live_updated_at" &&
        JSON.stringify(before[k]) !== JSON.stringify(after[k]);
    });
    var beforeGeom = entry.before && entry.before.geometry, afterGeom = entry.after && entry.after.geometry;
    if (beforeGeom && afterGeom && JSON.stringify(beforeGeom) !== JSON.stringify(afterGeom)) {
      names.push("geometry");
    }
    return names.map(function (k) {
      var key = "field_" + k;
      return t(key) === key ? k : t(key).replace(/（.*|\s\(.*/, "");
    });
  }

  function formatWhen(iso) {
    var at = new Date(iso);
    return isNaN(at.getTime()) ? String(iso || "") : at.toLocaleString(G.lang() === "zh" ? "zh-CN" : "en-GB");
  }

  function showHistory(box, url, reload) {
    box.textContent = t("loading");
    G.getJSON(url + "/history").then(function (answer) {
      var rows = answer.versions;
      box.textContent = "";
      if (!rows.length) { box.appendChild(el("p", {}, t("history_empty"))); return; }
      var list = box.appendChild(el("ol", { "class": "history-list", reversed: "" }));
      rows.forEach(function (entry) {
        var li = list.appendChild(el("li", { "data-version": entry.version }));
        var who = entry.user + (entry.address ? " (" + entry.address + ")" : "");
        li.appendChild(el("span", { "class": "history-when" }, formatWhen(entry.at)));
        li.appendChild(document.createTextNode(" · " + who + " · " + t("op_" + entry.operation)));
        var fields = changedFields(entry);
        if (fields.length) {
          li.appendChild(el("span", { "class": "history-fields" }, " · " + t("changed_fields", {
            fields: fields.join(G.lang() === "zh" ? "、" : ", ")
          })));
        }
        if (editor.planner && entry.before) {
          var revert = li.appendChild(el("button", { type: "button", "class": "revert" }, t("revert")));
          revert.addEventListener("click", function () {
            // If-Match from a fresh read (none when the feature was deleted: a revert brings it back).
            G.getFeature(url).then(function (read) { return read.etag; }, function (error) {
              if (error.status === 404) { return null; }
              throw error;
            }).then(function (etag) {
              return G.send("POST", url + "/revert", { version: entry.version }, { etag: etag });
            }).then(function () {
              box.textContent = t("reverted");
              reload();
            }).catch(function (error) { box.textContent = t("error", { description: error.message }); });
          });
        }
      });
    }).catch(function (error) { box.textContent = t("error", { description: error.message }); });
  }

  function historyButton(box, url, reload) {
    var section = el("div", { "class": "history" });
    var button = el("button", { type: "button", "class": "history-button" }, t("history"));
    button.addEventListener("click", function () { showHistory(section, url, reload); });
    box.appendChild(button);
    box.appendChild(section);
  }

  // ---- what the popups offer ----------------------------------------------------------------------------------

  city.hooks.pointPopup.push(function (box, p, marker) {
    var actions = box.appendChild(el("div", { "class": "edit-actions" }));
    if (editor.planner || p.squad === editor.squad) {
      var edit = actions.appendChild(el("button", { type: "button", "class": "edit-point" }, t("edit")));
      edit.addEventListener("click", function () { editPoint(p.id); });
    } else {
      actions.appendChild(el("p", { "class": "edit-note" }, t("not_in_squad")));
    }
    if (editor.planner && marker) {
      var move = actions.appendChild(el("button", { type: "button", "class": "move-point" }, t("move_point")));
      move.addEventListener("click", function () { startMove(p.id); });
    }
    historyButton(box, pointUrl(p.id), function () { city.reloadView(); });
  });

  city.hooks.gridPopup.push(function (box, p, layer) {
    if (editor.planner) {
      var actions = box.appendChild(el("div", { "class": "edit-actions" }));
      var edit = actions.appendChild(el("button", { type: "button", "class": "edit-grid" }, t("edit")));
      edit.addEventListener("click", function () { editGrid(p.code, layer); });
    }
    historyButton(box, gridUrl(p.code), function () { city.reloadGrids(); });
  });

  // ---- a planner's drawing tools (Leaflet-Geoman) --------------------------------------------------------------

  function geomanLanguage() { map.pm.setLang(G.lang() === "zh" ? "zh" : "en"); }

  function startDrawingTools() {
    if (!editor.planner || !map.pm) { return; }
    geomanLanguage();
    map.pm.addControls({
      position: "topleft", drawMarker: true, drawPolygon: true, drawCircleMarker: false, drawPolyline: false,
      drawRectangle: false, drawCircle: false, drawText: false, editMode: false, dragMode: false,
      cutPolygon: false, removalMode: false, rotateMode: false
    });
    // A grid's corners snap to its neighbours' (no slivers of gap or overlap); a new point goes where it is
    // clicked, not onto a nearby street.
    map.pm.setGlobalOptions({ allowSelfIntersection: false, snappable: true });
    map.pm.Draw.Marker.setOptions({ snappable: false });
    map.on("pm:create", function (event) {
      if (current && current.cleanup) { current.cleanup(); }
      var layer = event.layer;
      if (event.shape === "Marker") {
        var at = layer.getLatLng();
        current = {
          kind: "point", mode: "create", etag: null, layer: layer,
          feature: { geometry: { type: "Point", coordinates: [Number(at.lng.toFixed(7)), Number(at.lat.toFixed(7))] },
                     properties: { status: "open", amenities: [] } },
          cleanup: function () { map.removeLayer(layer); }
        };
        showPointForm();
      } else if (event.shape === "Polygon") {
        current = { kind: "grid", mode: "create", etag: null, layer: layer, feature: { properties: {} },
                    cleanup: function () { map.removeLayer(layer); } };
        showGridForm();
      }
    });
    map.getContainer().querySelector(".lang-switch").addEventListener("click", geomanLanguage);
  }

  buildPanel();
  startDrawingTools();
  G.editing = {
    editPoint: editPoint, editGrid: editGrid, startMove: startMove, state: function () { return current; }
  };
  document.body.setAttribute("data-editor", editor.role);
}());
