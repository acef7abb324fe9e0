// Probability bars: one row per label, with the exact value kept in data-probability (the
// text shows it rounded) and, for taggers, the label's threshold marked on its bar.

import { clear, el, percent } from "./dom.js";

export function showBars(list, labels, probabilities, thresholds = null) {
  clear(list);
  const top = probabilities.indexOf(Math.max(...probabilities));
  probabilities.forEach((p, i) => {
    const threshold = thresholds ? thresholds[i] : null;
    const fill = el("span", { class: "fill" });
    fill.style.width = (100 * p).toFixed(2) + "%";
    const bar = el("span", { class: "bar" }, fill);
    if (threshold !== null) {
      const mark = el("span", { class: "threshold", title: "threshold " + threshold });
      mark.style.left = (100 * threshold).toFixed(2) + "%";
      bar.append(mark);
    }
    const on = threshold === null ? i === top : p >= threshold;
    const label = labels[i] === undefined ? String(i) : labels[i];
    list.append(el("li", {
      class: "bar-row" + (on ? " on" : ""),
      dataset: { label, probability: String(p),
                 ...(threshold === null ? {} : { threshold: String(threshold) }) },
    }, el("span", { class: "label", text: label }), bar,
    el("span", { class: "value", text: percent(p) + (threshold === null ? ""
      : (on ? " \u2265 " : " < ") + percent(threshold)) })));
  });
}
