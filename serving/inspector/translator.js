// Translator view: a sentence in; the translation, each target piece with its probability,
// and the attention over the source pieces as a heat map. Beam size and maximum length are the
// request's parameters (0: the model's own limit).

import * as api from "./api.js";
import { answered, clear, el, failed, percent, resultArea } from "./dom.js";
import { heatMap, highlight } from "./heatmap.js";

const OUTPUTS = ["translation", "target_pieces", "source_pieces", "token_probabilities",
                 "attention", "target_lengths", "source_lengths"];

export function render(root, model) {
  const decoding = model.decoding || {};
  const text = el("textarea", { class: "source-text", rows: "2", maxlength: "4096",
                                placeholder: "a sentence to translate", spellcheck: "false" });
  const beam = el("input", { type: "number", class: "beam-size", min: "1", max: "64",
                             value: String(decoding.default_beam_size || 1) });
  const maxLength = el("input", { type: "number", class: "max-length", min: "0", value: "0" });
  const go = el("button", { type: "submit", text: "Translate" });
  const translation = el("p", { class: "translation" });
  const pieces = el("p", { class: "target-pieces" });
  const map = el("div", { class: "heatmap-box" });
  const message = el("p", { class: "message" });
  const version = el("p", { class: "answered-by" });
  const result = resultArea("translator-result");
  result.append(version, translation, pieces, map, message);

  async function translate(e) {
    if (e) e.preventDefault();
    if (!text.value.trim()) {
      message.textContent = "Type a sentence first.";
      return;
    }
    result.dataset.state = "busy";
    go.disabled = true;
    try {
      const parameters = { beam_size: Number(beam.value) || 1 };
      if (Number(maxLength.value) > 0) parameters.max_length = Number(maxLength.value);
      const answer = await api.infer(model.name, [{
        name: "text", datatype: "BYTES", shape: [1], data: [text.value] }], OUTPUTS, parameters);
      show(answer);
      message.textContent = "";
      answered(result);
    } catch (err) {
      failed(result, err, message);
    } finally {
      go.disabled = false;
    }
  }

  function show(answer) {
    const out = answer.outputs;
    const t = out.target_lengths.data[0];
    const s = out.source_lengths.data[0];
    const targets = api.row(out.target_pieces).slice(0, t);
    const sources = api.row(out.source_pieces).slice(0, s);
    const probabilities = api.row(out.token_probabilities).slice(0, t);
    const flat = api.row(out.attention);
    const width = out.attention.shape[2]; // padded source length of the batch
    const weights = targets.map((_, i) => flat.slice(i * width, i * width + s));
    version.textContent = "answered by version " + answer.version;
    translation.textContent = out.translation.data[0];
    const table = heatMap(sources, targets, probabilities, weights);
    clear(pieces).append(...targets.map((piece, i) => {
      const chip = el("span", { class: "piece-chip", tabindex: "0", dataset: { row: String(i) } },
        el("span", { class: "piece", text: piece }),
        el("small", { text: percent(probabilities[i]) }));
      hoverable(chip, table, i);
      return chip;
    }));
    for (const head of table.querySelectorAll("th.target")) {
      hoverable(head, table, Number(head.dataset.row));
    }
    clear(map).append(table);
  }

  root.append(el("div", { class: "view translator" },
    el("form", { class: "input", onsubmit: translate },
      text,
      el("div", { class: "controls" },
        el("label", {}, "beam size ", beam),
        el("label", {}, "max length ", maxLength),
        go)),
    result));
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) translate(e);
  });
}

function hoverable(node, table, row) {
  for (const on of ["mouseenter", "focus"]) node.addEventListener(on, () => highlight(table, row));
  for (const off of ["mouseleave", "blur"]) node.addEventListener(off, () => highlight(table, null));
}
