// Click a header to sort its table by that column: ascending, then descending. Numbers
// (a cell's data-sort) sort as numbers; text ("–", "ref") comes after them either way.
function sortKey(cell) {
  return cell.dataset.sort === undefined ? cell.textContent.trim() : Number(cell.dataset.sort);
}

function compareRows(column, ascending) {
  return (one, other) => {
    const a = sortKey(one.cells[column]);
    const b = sortKey(other.cells[column]);
    if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
    const order = typeof a === "number" ? a - b : a.localeCompare(b, undefined, { numeric: true });
    return ascending ? order : -order;
  };
}

function sortTable(table, header, column) {
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("thead th").forEach((th) => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  body.append(...Array.from(body.rows).sort(compareRows(column, ascending)));
}

document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((header, column) => {
    header.querySelector("button").addEventListener("click", () => sortTable(table, header, column));
  });
});
