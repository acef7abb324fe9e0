// The attention matrix of a translation as a table: one row per target piece, one column per
// source piece, each cell coloured by its weight (exact value in data-weight, rounded in the
// text). Hovering a target piece highlights its row and shades the source pieces it looked at.

import { el, heat, heatRGB, number, percent } from "./dom.js";

export function heatMap(sources, targets, probabilities, weights) {
  const columns = sources.map((piece, j) => el("th", {
    class: "source", scope: "col", dataset: { col: String(j) }, text: piece }));
  const table = el("table", { class: "heatmap",
                              dataset: { rows: String(targets.length),
                                         cols: String(sources.length) } },
    el("caption", { text: "attention: each row (a target piece) sums to 1 over the source" }),
    el("thead", {}, el("tr", {}, el("th", { class: "corner", text: "target \\ source" }),
                        columns)));
  const body = el("tbody");
  targets.forEach((piece, i) => {
    const head = el("th", { class: "target", scope: "row", dataset: { row: String(i) } },
      el("span", { class: "piece", text: piece }),
      el("small", { text: percent(probabilities[i]) }));
    const tr = el("tr", { dataset: { row: String(i) } }, head);
    weights[i].forEach((w, j) => {
      const cell = el("td", { dataset: { row: String(i), col: String(j), weight: String(w) },
                              title: `${piece} \u2192 ${sources[j]}: ${number(w)}`,
                              text: w.toFixed(2) });
      cell.style.backgroundColor = heat(w);
      cell.style.color = readableOn(w);
      tr.append(cell);
    });
    body.append(tr);
  });
  table.append(body);
  return table;
}

// Shades the source pieces (the table's column heads and any extra chips given) by where
// target row i looked; row null clears.
export function highlight(table, row, extras = []) {
  for (const tr of table.querySelectorAll("tbody tr")) {
    tr.classList.toggle("highlight", row !== null && tr.dataset.row === String(row));
  }
  const cells = row === null ? [] : table.querySelectorAll(`tbody tr[data-row="${row}"] td`);
  const weights = Array.from(cells, (td) => Number(td.dataset.weight));
  for (const group of [table.querySelectorAll("th.source"), extras]) {
    Array.from(group).forEach((node, j) => {
      node.style.backgroundColor = row === null ? "" : heat(weights[j] || 0);
      node.style.color = row === null ? "" : readableOn(weights[j] || 0);
    });
  }
}

function readableOn(w) {
  const [r, g, b] = heatRGB(w);
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff";
}
