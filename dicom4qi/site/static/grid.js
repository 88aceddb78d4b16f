/* dicom4qi grid filters: plain JavaScript, no server, works from file:// and any static host.
 *
 * The filter lives in the URL's hash (#feature=oblique&tier=quick&status=FAIL&tool=consumer:ohif), so a
 * filtered view can be bookmarked, shared and reloaded. Rows carry data-tier, data-f (features), data-p
 * (producer); cells carry data-c (column index), data-s (status), data-x (change since the previous run) and,
 * on failing cells, data-k: "k" when a known issue explains the failure, "n" when it is new.
 * When the grid spans several pages, window.D4Q_INDEX (data/grid-index.js) holds every row in short form so
 * that each page can say how many rows match on the other pages.
 */
(function () {
  "use strict";
  var KEYS = ["feature", "tier", "status", "tool"];
  var PROBLEM = { FAIL: 1, ERROR: 1, CRASH: 1, TIMEOUT: 1 };
  var CODES = { P: "PASS", F: "FAIL", E: "ERROR", C: "CRASH", T: "TIMEOUT", D: "DISPUTED", U: "UNSUPPORTED", S: "SKIPPED" };
  var CHANGES = { r: "regressed", f: "fixed", c: "changed" };
  var form = document.getElementById("filters");
  var table = document.getElementById("grid");
  if (!form || !table) { return; }
  var cols = JSON.parse(table.getAttribute("data-cols") || "[]");

  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var f = {};
    KEYS.forEach(function (k) { f[k] = params.get(k) || ""; });
    return f;
  }

  function hashOf(f) {
    var params = new URLSearchParams();
    KEYS.forEach(function (k) { if (f[k]) { params.set(k, f[k]); } });
    var text = params.toString();
    return text ? "#" + text : "";
  }

  function statusMatches(status, change, want, known) {
    if (!want) { return true; }
    if (want === "problem") { return !!PROBLEM[status]; }
    if (want === "new") { return !!PROBLEM[status] && known === "n"; }
    if (want === "known") { return !!PROBLEM[status] && known === "k"; }
    if (want === "regressed" || want === "fixed" || want === "changed") { return change === want || (want === "changed" && !!change); }
    return status === want;
  }

  function toolOf(f) {
    if (!f.tool) { return null; }
    var i = f.tool.indexOf(":");
    return { role: f.tool.slice(0, i), name: f.tool.slice(i + 1) };
  }

  /* The columns shown: all, or the write step and the chosen reader's column. */
  function visibleColumns(f) {
    var t = toolOf(f);
    if (!t || t.role === "producer") { return null; }
    var i = cols.indexOf(t.name);
    return i < 0 ? [0] : [0, i];
  }

  /* A row as {tier, p, f: [features], s: [status per column], x: [change per column]}. */
  function rowMatches(r, f, vis) {
    if (f.tier && r.tier !== f.tier) { return false; }
    if (f.feature && r.f.indexOf(f.feature) < 0) { return false; }
    var t = toolOf(f);
    if (t && t.role === "producer" && r.p !== t.name) { return false; }
    if (t && t.role !== "producer") {
      var i = cols.indexOf(t.name);
      if (i < 0 || !r.s[i]) { return false; }
    }
    if (f.status) {
      var idx = vis || r.s.map(function (_, k) { return k; });
      return idx.some(function (k) { return r.s[k] && statusMatches(r.s[k], r.x[k], f.status, r.k[k]); });
    }
    return true;
  }

  function domRow(tr) {
    var s = [], x = [], k = [];
    cols.forEach(function () { s.push(""); x.push(""); k.push(""); });
    Array.prototype.forEach.call(tr.querySelectorAll("td[data-c]"), function (td) {
      var c = Number(td.getAttribute("data-c"));
      s[c] = td.getAttribute("data-s") || "";
      x[c] = td.getAttribute("data-x") || "";
      k[c] = td.getAttribute("data-k") || "";
    });
    return { tier: tr.getAttribute("data-tier") || "", p: tr.getAttribute("data-p") || "",
             f: (tr.getAttribute("data-f") || "").split(" "), s: s, x: x, k: k };
  }

  var rows = Array.prototype.map.call(table.querySelectorAll("tbody tr.r"), function (tr) {
    return { tr: tr, row: domRow(tr), cells: tr.querySelectorAll("td[data-c]") };
  });
  var groups = table.querySelectorAll("tbody tr.group");
  var headers = table.querySelectorAll("thead th[data-c]");

  function ensureOption(select, value) {
    if (!value) { return; }
    for (var i = 0; i < select.options.length; i++) { if (select.options[i].value === value) { return; } }
    var opt = document.createElement("option");
    opt.value = value;
    opt.textContent = value + " (not in these results)";
    select.appendChild(opt);
  }

  function setForm(f) {
    KEYS.forEach(function (k) {
      var el = form.elements.namedItem(k);
      if (el) { ensureOption(el, f[k]); el.value = f[k]; }
    });
  }

  function readForm() {
    var f = {};
    KEYS.forEach(function (k) {
      var el = form.elements.namedItem(k);
      f[k] = el ? el.value : "";
    });
    return f;
  }

  function otherPages(f, vis) {
    var box = document.getElementById("pages-match");
    var index = window.D4Q_INDEX;
    if (!box || !index) { return; }
    var counts = index.pages.map(function () { return 0; });
    index.rows.forEach(function (r) {
      var row = { tier: r[1], p: r[2], f: r[3].split(" "),
                  s: r[4].split("").map(function (c) { return CODES[c] || ""; }),
                  x: r[5].split("").map(function (c) { return CHANGES[c] || ""; }),
                  k: (r[6] || "").split("").map(function (c) { return c === "." ? "" : c; }) };
      if (rowMatches(row, f, vis)) { counts[r[0]] += 1; }
    });
    box.textContent = "";
    index.pages.forEach(function (p, i) {
      var item = document.createElement(i === index.current ? "strong" : "a");
      if (i !== index.current) { item.href = p.href + hashOf(f); }
      item.textContent = "page " + (i + 1) + " (" + p.label + "): " + counts[i] + " row" + (counts[i] === 1 ? "" : "s");
      box.appendChild(item);
      box.appendChild(document.createTextNode(" "));
    });
  }

  function apply(f) {
    var vis = visibleColumns(f);
    Array.prototype.forEach.call(headers, function (th) {
      var c = Number(th.getAttribute("data-c"));
      th.hidden = !!vis && vis.indexOf(c) < 0;
    });
    var perGroup = {};
    var shown = 0;
    rows.forEach(function (item) {
      var ok = rowMatches(item.row, f, vis);
      item.tr.hidden = !ok;
      if (ok) {
        shown += 1;
        var g = item.tr.getAttribute("data-g");
        perGroup[g] = (perGroup[g] || 0) + 1;
      }
      Array.prototype.forEach.call(item.cells, function (td) {
        var c = Number(td.getAttribute("data-c"));
        td.hidden = !!vis && vis.indexOf(c) < 0;
        var st = td.getAttribute("data-s") || "";
        td.classList.toggle("dim", !!f.status && !(st && statusMatches(st, td.getAttribute("data-x") || "", f.status, td.getAttribute("data-k") || "")));
      });
    });
    Array.prototype.forEach.call(groups, function (tr) {
      var n = perGroup[tr.getAttribute("data-g")] || 0;
      tr.hidden = n === 0;
      var th = tr.querySelector("th");
      if (th) { th.colSpan = vis ? vis.length + 2 : cols.length + 2; }
      var count = tr.querySelector(".gcount");
      if (count) { count.textContent = n + " row" + (n === 1 ? "" : "s"); }
    });
    var out = document.getElementById("shown");
    if (out) {
      var active = KEYS.some(function (k) { return !!f[k]; });
      out.textContent = active ? shown + " of " + rows.length + " rows on this page match the filter."
                               : rows.length + " rows on this page.";
    }
    Array.prototype.forEach.call(document.querySelectorAll("a.keep-filter"), function (a) {
      a.href = a.getAttribute("href").replace(/#.*$/, "") + hashOf(f);
    });
    otherPages(f, vis);
  }

  function fromHash() {
    var f = readHash();
    setForm(f);
    apply(f);
  }

  form.addEventListener("change", function () {
    var f = readForm();
    var url = location.href.replace(/#.*$/, "") + hashOf(f);
    history.replaceState(null, "", url);
    apply(f);
  });
  form.addEventListener("reset", function (ev) {
    ev.preventDefault();
    var f = { feature: "", tier: "", status: "", tool: "" };
    setForm(f);
    history.replaceState(null, "", location.href.replace(/#.*$/, ""));
    apply(f);
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
