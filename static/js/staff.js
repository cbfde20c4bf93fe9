/* geoservice staff page (/staff): the free places of my kiosks, changed with one hand on a phone.
 *
 * Each assigned point (config.point_ids) is read from the API with its ETag. +1, −1 and 满 go to
 * POST /api/v1/points/{id}/occupancy, which the server applies atomically (two staff tapping at once lose nothing);
 * taps on one point are sent one after the other, so they arrive in the order they were made. 关闭/开放 and the
 * notice are PATCHes with If-Match: when someone else changed the point meanwhile (412) the page reads it again, and
 * sends the change once more only if what the user changed is still as they saw it. /api/v1/points/live is asked
 * every few seconds for what others changed. Every text is set as text: a notice is whatever somebody typed.
 */
(function () {
  "use strict";

  var G = window.geoservice;
  var config = G.config;
  var t = G.t, el = G.el;
  var entries = {};  // point id -> {id, props, etag, queue, parts (the card's elements), noticeShown}

  function byId(id) { return document.getElementById(id); }

  function pointUrl(id) { return config.api.point + "/" + id; }

  function setStatus(text, isError) {
    var status = byId("staff-status");
    status.textContent = text || "";
    status.classList.toggle("error", Boolean(isError));
  }

  // ---- showing a point ---------------------------------------------------------------------------------------

  function formatTime(iso) {
    var at = new Date(iso);
    if (isNaN(at.getTime())) { return ""; }
    var locale = G.lang() === "zh" ? "zh-CN" : "en-GB";
    var sameDay = at.toDateString() === new Date().toDateString();
    var options = sameDay ? { hour: "2-digit", minute: "2-digit" }
      : { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" };
    return at.toLocaleString(locale, options);
  }

  function button(cls, key, ariaKey, onPress) {
    var node = el("button", { type: "button", "class": cls }, t(key));
    if (ariaKey) { node.setAttribute("aria-label", t(ariaKey)); }
    node.addEventListener("click", onPress);
    return node;
  }

  function buildCard(entry) {
    var id = entry.id;
    var card = el("li", { "class": "kiosk", "data-point-id": id });
    var parts = { card: card };
    parts.name = card.appendChild(el("h2", { id: "kiosk-name-" + id }));
    card.setAttribute("aria-labelledby", "kiosk-name-" + id);
    parts.state = card.appendChild(el("p", { "class": "state" }));
    var free = card.appendChild(el("p", { "class": "free" }));
    parts.freeLabel = free.appendChild(el("span", { "class": "free-label" }));
    parts.freeNumber = free.appendChild(el("span", { "class": "free-number" }));
    parts.capacity = card.appendChild(el("p", { "class": "capacity" }));
    parts.message = card.appendChild(el("p", { "class": "message", role: "status", "aria-live": "polite" }));
    var taps = card.appendChild(el("div", { "class": "taps" }));
    parts.plus = taps.appendChild(button("plus", "plus_one", "plus_one_aria",
                                         function () { tap(entry, "increment"); }));
    parts.minus = taps.appendChild(button("minus", "minus_one", "minus_one_aria",
                                          function () { tap(entry, "decrement"); }));
    parts.full = taps.appendChild(button("full", "full", "full_aria", function () { tap(entry, "full"); }));
    parts.close = taps.appendChild(button("status close", "close", null,
                                          function () { setPointStatus(entry, "closed"); }));
    parts.open = taps.appendChild(button("status open", "open", null, function () { setPointStatus(entry, "open"); }));
    var form = card.appendChild(el("form", { "class": "notice", novalidate: "" }));
    form.appendChild(el("label", { "for": "notice-" + id, "class": "notice-label" }, t("notice_label")));
    parts.notice = form.appendChild(el("textarea", { id: "notice-" + id, name: "notice", rows: "2",
                                                     "aria-describedby": "notice-error-" + id }));
    parts.noticeError = form.appendChild(el("p", { id: "notice-error-" + id, "class": "field-error", role: "alert" }));
    parts.noticeSave = form.appendChild(el("button", { type: "submit" }, t("notice_save")));
    form.addEventListener("submit", function (event) { event.preventDefault(); saveNotice(entry); });
    parts.live = card.appendChild(el("div", { "class": "live" }));
    parts.lastChange = card.appendChild(el("p", { "class": "last-change" }));
    entry.parts = parts;
    return card;
  }

  function render(entry) {
    var p = entry.props, parts = entry.parts;
    if (!p) { return; }
    parts.name.textContent = p.name;
    parts.state.textContent = t("now_" + p.status);
    parts.state.classList.toggle("closed", p.status !== "open");
    var hasCapacity = p.capacity !== null && p.capacity !== undefined;
    var free = hasCapacity ? p.capacity - (p.occupancy || 0) : null;
    parts.freeLabel.textContent = t("free");
    parts.freeNumber.textContent = hasCapacity ? String(free) : "—";
    parts.freeNumber.classList.toggle("none", free === 0);
    parts.capacity.textContent = hasCapacity ? t("of_capacity", { capacity: p.capacity, occupancy: p.occupancy || 0 })
      : t("no_capacity");
    parts.card.setAttribute("data-free", hasCapacity ? String(free) : "");
    parts.card.setAttribute("data-occupancy", String(p.occupancy == null ? "" : p.occupancy));
    parts.card.setAttribute("data-status", p.status);
    parts.plus.disabled = parts.minus.disabled = parts.full.disabled = !hasCapacity;
    parts.close.setAttribute("aria-pressed", p.status === "closed" ? "true" : "false");
    parts.open.setAttribute("aria-pressed", p.status === "open" ? "true" : "false");
    [["plus", "plus_one", "plus_one_aria"], ["minus", "minus_one", "minus_one_aria"], ["full", "full", "full_aria"],
     ["close", "close"], ["open", "open"]].forEach(function (b) {
      parts[b[0]].textContent = t(b[1]);
      if (b[2]) { parts[b[0]].setAttribute("aria-label", t(b[2])); }
    });
    parts.noticeSave.textContent = t("notice_save");
    parts.card.querySelector(".notice-label").textContent = t("notice_label");
    // The notice field follows the point unless the user is editing it.
    var typing = document.activeElement === parts.notice || parts.notice.value !== (entry.noticeShown || "");
    if (!typing) {
      parts.notice.value = p.notice || "";
      entry.noticeShown = parts.notice.value;
    }
    G.live.render(parts.live, p);
    parts.lastChange.textContent = t("last_change", { time: formatTime(p.live_updated_at) });
  }

  function renderAll() { Object.keys(entries).forEach(function (id) { render(entries[id]); }); }

  function say(entry, text, isError) {
    entry.parts.message.textContent = text || "";
    entry.parts.message.classList.toggle("error", Boolean(isError));
  }

  // ---- reading and writing -----------------------------------------------------------------------------------

  function merge(entry, values) {
    entry.props = Object.assign({}, entry.props || {}, values);
  }

  function load(entry) {
    return G.getFeature(pointUrl(entry.id)).then(function (answer) {
      merge(entry, answer.body.properties);
      entry.etag = answer.etag;
      render(entry);
    });
  }

  /* Writes to one point go one after another (a tap waits for the tap before it). */
  function enqueue(entry, work) {
    entry.queue = (entry.queue || Promise.resolve()).then(work, work);
    entry.pending = (entry.pending || 0) + 1;
    entry.queue.then(function () { entry.pending -= 1; }, function () { entry.pending -= 1; });
    return entry.queue;
  }

  function failed(entry, error, conflictKey) {
    if (error.status === 401) {
      say(entry, t("login_again"), true);
      setStatus(t("login_again"), true);
      window.location.assign("/login?next=" + encodeURIComponent("/staff"));
      return;
    }
    if (error.status === 409 && conflictKey) { say(entry, t(conflictKey), true); return; }
    say(entry, error.network ? error.message : t("error", { description: error.message }), true);
  }

  function tap(entry, op) {
    var conflictKey = op === "decrement" ? "at_zero" : "at_capacity";
    return enqueue(entry, function () {
      return G.send("POST", pointUrl(entry.id) + "/occupancy", { op: op }).then(function (answer) {
        merge(entry, answer.body);
        if (answer.etag) { entry.etag = answer.etag; }
        say(entry, t("saved"));
        render(entry);
        document.body.setAttribute("data-taps", String(Number(document.body.getAttribute("data-taps") || 0) + 1));
      }).catch(function (error) { failed(entry, error, conflictKey); });
    });
  }

  /* PATCH properties with If-Match. On a 412 the point is read again; the change is sent once more when the
     field the user changes still holds what they saw (someone else's change was to something else), and
     otherwise the user sees the new state and decides again. */
  function patch(entry, properties, seen) {
    function attempt(retry) {
      return G.send("PATCH", pointUrl(entry.id), { properties: properties }, { etag: entry.etag })
        .then(function (answer) {
          merge(entry, answer.body.properties || answer.body);
          if (answer.etag) { entry.etag = answer.etag; }
          render(entry);
          return true;
        }, function (error) {
          if (error.status !== 412 && error.status !== 428) { throw error; }
          return load(entry).then(function () {
            var unchanged = Object.keys(seen).every(function (k) { return (entry.props[k] || null) === seen[k]; });
            if (retry && unchanged) { return attempt(false); }
            say(entry, t("changed_elsewhere"), true);
            return false;
          });
        });
    }
    return attempt(true);
  }

  function setPointStatus(entry, status) {
    var seen = { status: entry.props.status };
    return enqueue(entry, function () {
      return patch(entry, { status: status }, seen).then(function (done) {
        if (done) { say(entry, t("saved")); }
      }).catch(function (error) { failed(entry, error); });
    });
  }

  function saveNotice(entry) {
    var text = entry.parts.notice.value.trim();
    var seen = { notice: entry.noticeShown || null };
    entry.parts.noticeError.textContent = "";
    return enqueue(entry, function () {
      return patch(entry, { notice: text || null }, seen).then(function (done) {
        if (!done) { return; }
        entry.parts.notice.value = entry.props.notice || "";
        entry.noticeShown = entry.parts.notice.value;
        say(entry, t("notice_saved"));
        render(entry);
      }).catch(function (error) {
        var errors = (error.errors || []).filter(function (e) { return e.field === "notice"; });
        if (error.status === 400 && errors.length) {
          entry.parts.noticeError.textContent = errors.map(function (e) { return e.reason; }).join("; ");
          return;
        }
        failed(entry, error);
      });
    });
  }

  // ---- what others changed -----------------------------------------------------------------------------------

  function onLive(answer) {
    answer.points.forEach(function (p) {
      var entry = entries[p.id];
      if (!entry || !entry.props || entry.pending) { return; }
      var changed = p.live_updated_at !== entry.props.live_updated_at;
      merge(entry, { occupancy: p.occupancy, capacity: p.capacity, status: p.status, notice: p.notice,
                     live_updated_at: p.live_updated_at });
      render(entry);
      // Someone else wrote: read the point again for its new ETag, so that our next write is not refused.
      if (changed) { enqueue(entry, function () { return load(entry).catch(function () { return null; }); }); }
    });
    document.body.setAttribute("data-live", answer.now);
  }

  // ---- start -------------------------------------------------------------------------------------------------

  function switchLanguage() {
    var url = new URL(window.location.href);
    url.searchParams.set("lang", G.switchLanguage());
    window.history.replaceState(null, "", url.toString());
    G.applyLanguage();
    renderAll();
  }

  function start() {
    byId("lang-switch").addEventListener("click", switchLanguage);
    G.applyLanguage();
    var list = byId("kiosks");
    var loads = config.point_ids.map(function (id) {
      var entry = entries[id] = { id: id };
      list.appendChild(buildCard(entry));
      return load(entry).catch(function (error) {
        if (error.status === 404) { entry.parts.card.remove(); delete entries[id]; return; }
        failed(entry, error);
      });
    });
    Promise.all(loads).then(function () {
      document.body.setAttribute("data-ready", "true");
      if (!config.point_ids.length) { return; }
      G.live.start(function () {
        var ids = Object.keys(entries);
        return ids.length ? "ids=" + ids.join(",") : null;
      }, onLive);
    });
  }

  window.geoserviceStaff = { entries: entries };
  start();
}());
