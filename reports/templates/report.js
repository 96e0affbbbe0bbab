// The report's tables: click a header to sort (data-sort holds a cell's raw value: numbers
// sort as numbers, an empty one last), type in a table's box to hide the rows without the
// text. Written for this page; no library, no network.
(function () {
  "use strict";
  function sortValue(cell) {
    if (!cell) { return { missing: true }; }
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { return { text: cell.textContent.trim().toLowerCase() }; }
    if (raw === "") { return { missing: true }; }
    var x = Number(raw);
    return isNaN(x) ? { text: raw.toLowerCase() } : { num: x };
  }
  function compare(a, b) {
    if (a.missing || b.missing) { return (a.missing ? 1 : 0) - (b.missing ? 1 : 0); }
    if (a.num !== undefined && b.num !== undefined) { return a.num - b.num; }
    var s = a.num !== undefined ? String(a.num) : a.text;
    var t = b.num !== undefined ? String(b.num) : b.text;
    return s.localeCompare(t, undefined, { numeric: true });
  }
  function sortBy(table, th, col) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var up = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return { row: row, key: sortValue(row.cells[col]), i: i };
    });
    rows.sort(function (a, b) {
      var c = compare(a.key, b.key);
      if (c !== 0 && !a.key.missing && !b.key.missing && !up) { c = -c; }
      return c || a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead || !table.tHead.rows.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = (th.title ? th.title + " — " : "") + "click to sort";
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, col); }
      });
    });
  });
  document.querySelectorAll("div.tablebox").forEach(function (box) {
    var input = box.querySelector("input.filter");
    var table = box.querySelector("table");
    var shown = box.querySelector(".shown");
    if (!input || !table || !table.tBodies[0]) { return; }
    function apply() {
      var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var rows = table.tBodies[0].rows, n = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var text = row.textContent.toLowerCase();
        var keep = terms.every(function (t) { return text.indexOf(t) >= 0; });
        row.hidden = !keep;
        n += keep ? 1 : 0;
      });
      shown.textContent = terms.length ? n + " of " + rows.length + " rows" : "";
    }
    input.addEventListener("input", apply);
  });
})();
