// Captioner view: a photo in (sent as its encoded file, which the server decodes), the caption
// out, and for every word the attention over the encoder's grid of image regions drawn over
// the photo. Step through the words with the buttons, the arrow keys or the thumbnails.

import * as api from "./api.js";
import { answered, clear, el, failed, heatRGB, percent, resultArea, uploadZone } from "./dom.js";
import { decodeFile } from "./images.js";

const OUTPUTS = ["caption", "tokens", "token_probabilities", "attention", "caption_lengths"];
const STAGE = 320; // the big view's longest side, in CSS pixels
const THUMB = 96;

export function render(root, model) {
  const decoding = model.decoding || {};
  const beam = el("input", { type: "number", class: "beam-size", min: "1", max: "64",
                             value: String(decoding.default_beam_size || 1) });
  const maxLength = el("input", { type: "number", class: "max-length", min: "0", value: "0" });
  const stage = el("canvas", { class: "stage", tabindex: "0",
                               "aria-label": "the photo with the chosen word's attention" });
  const word = el("p", { class: "current-word" });
  const caption = el("p", { class: "caption" });
  const words = el("p", { class: "words" });
  const strip = el("div", { class: "overlays" });
  const message = el("p", { class: "message", text: "Drop a photo to caption it." });
  const version = el("p", { class: "answered-by" });
  const prev = el("button", { type: "button", text: "\u2190 previous word", disabled: "" });
  const next = el("button", { type: "button", text: "next word \u2192", disabled: "" });
  const result = resultArea("captioner-result");
  result.append(version, caption, words, el("div", { class: "stepper" }, prev, word, next),
                strip, message);

  let current = { bitmap: null, tokens: [], probabilities: [], maps: [], grid: [1, 1] };
  let chosen = 0;
  let file = null;

  async function run() {
    if (!file) return;
    result.dataset.state = "busy";
    try {
      const bitmap = await decodeFile(file);
      const bytes = new Uint8Array(await file.arrayBuffer());
      const parameters = { beam_size: Number(beam.value) || 1 };
      if (Number(maxLength.value) > 0) parameters.max_length = Number(maxLength.value);
      const answer = await api.infer(model.name, [{
        name: "image", datatype: "BYTES", shape: [1], data: [bytes] }], OUTPUTS, parameters);
      const out = answer.outputs;
      const n = out.caption_lengths.data[0];
      const [rows, cols] = out.attention.shape.slice(2);
      const flat = api.row(out.attention);
      current = {
        bitmap,
        tokens: api.row(out.tokens).slice(0, n),
        probabilities: api.row(out.token_probabilities).slice(0, n),
        maps: Array.from({ length: n }, (_, i) => flat.slice(i * rows * cols,
                                                              (i + 1) * rows * cols)),
        grid: [rows, cols],
      };
      version.textContent = "answered by version " + answer.version;
      caption.textContent = out.caption.data[0];
      message.textContent = n ? "" : "The caption has no words.";
      showWords();
      choose(0);
      answered(result);
    } catch (e) {
      failed(result, e, message);
    }
  }

  function showWords() {
    clear(words);
    clear(strip);
    current.tokens.forEach((token, i) => {
      words.append(el("button", { type: "button", class: "word", dataset: { index: String(i) },
                                  text: token, onclick: () => choose(i) }));
      const thumb = el("canvas", { class: "thumb" });
      drawOverlay(thumb, current.bitmap, current.maps[i], current.grid, THUMB);
      strip.append(el("figure", {
        class: "word-overlay", tabindex: "0",
        dataset: { index: String(i), word: token, weights: JSON.stringify(current.maps[i]),
                   rows: String(current.grid[0]), cols: String(current.grid[1]) },
        onclick: () => choose(i),
      }, thumb, el("figcaption", { text: token })));
    });
  }

  function choose(i) {
    const n = current.tokens.length;
    if (!n) {
      clear(word);
      if (current.bitmap) drawOverlay(stage, current.bitmap, null, current.grid, STAGE);
      return;
    }
    chosen = Math.max(0, Math.min(n - 1, i));
    drawOverlay(stage, current.bitmap, current.maps[chosen], current.grid, STAGE);
    stage.dataset.index = String(chosen);
    word.textContent = `${chosen + 1}/${n}: "${current.tokens[chosen]}" ` +
      `(p = ${percent(current.probabilities[chosen])})`;
    for (const node of result.querySelectorAll("[data-index]")) {
      node.classList.toggle("chosen", node.dataset.index === String(chosen));
    }
    prev.disabled = chosen === 0;
    next.disabled = chosen === n - 1;
  }

  prev.addEventListener("click", () => choose(chosen - 1));
  next.addEventListener("click", () => choose(chosen + 1));
  stage.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") choose(chosen - 1);
    if (e.key === "ArrowRight") choose(chosen + 1);
  });

  root.append(el("div", { class: "view captioner" },
    el("div", { class: "input" },
      stage,
      el("div", { class: "controls" },
        el("label", {}, "beam size ", beam),
        el("label", {}, "max length ", maxLength),
        el("button", { type: "button", text: "Caption again", onclick: run })),
      uploadZone("drop a photo here, or choose a file", (f) => { file = f; run(); })),
    result));
}

// The photo under the word's attention: the rows x cols weights drawn as a
// tiny image and scaled up smoothly over the whole photo (the grid covers the image the
// encoder saw, which is the photo stretched to the model's input size).
function drawOverlay(canvas, bitmap, weights, [rows, cols], longest) {
  const scale = longest / Math.max(bitmap.width, bitmap.height);
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = scale < 1; // a small image enlarged keeps its pixels sharp
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  if (!weights) return;
  const peak = Math.max(...weights) || 1;
  const grid = document.createElement("canvas");
  grid.width = cols;
  grid.height = rows;
  const gctx = grid.getContext("2d");
  const image = gctx.createImageData(cols, rows);
  weights.forEach((w, k) => {
    const [r, g, b] = heatRGB(w / peak);
    // unattended regions stay as they are; the attended ones glow
    image.data.set([r, g, b, Math.round(255 * 0.8 * Math.sqrt(w / peak))], 4 * k);
  });
  gctx.putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(grid, 0, 0, canvas.width, canvas.height);
}
