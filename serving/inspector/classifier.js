// Classifier view: draw a digit (or drop an image) and watch every label's probability move
// as you draw. At most one call is in flight; the newest drawing is sent when it answers.

import * as api from "./api.js";
import { showBars } from "./bars.js";
import { answered, el, failed, resultArea, uploadZone } from "./dom.js";
import { DrawingPad } from "./draw.js";
import { decodeFile, geometry, showGrey } from "./images.js";

export function render(root, model) {
  const { channels, height, width } = geometry(model);
  const inputName = model.inputs && model.inputs[0] ? model.inputs[0].name : "pixels";
  const padCanvas = el("canvas", { class: "pad", "aria-label": "drawing pad" });
  const preview = el("canvas", { class: "preview", title: "what the model is sent" });
  const centre = el("input", { type: "checkbox", checked: "" });
  const invert = el("input", { type: "checkbox" });
  const bars = el("ol", { class: "bars" });
  const message = el("p", { class: "message" });
  const version = el("p", { class: "answered-by" });
  const result = resultArea("classifier-result");
  result.append(version, bars, message);

  let dirty = false;
  let busy = false;
  const pad = new DrawingPad(padCanvas, changed);

  function changed() {
    dirty = true;
    result.dataset.state = "busy";
    pump();
  }

  async function pump() {
    if (busy || !dirty) return;
    dirty = false;
    busy = true;
    const grey = pad.pixels(width, centre.checked && width === height);
    showGrey(preview, grey, height, width);
    // a colour model gets the grey drawing in each of its channels
    const pixels = new Uint8Array(channels * grey.length);
    for (let c = 0; c < channels; c++) pixels.set(grey, c * grey.length);
    try {
      const answer = await api.infer(model.name, [{
        name: inputName, datatype: "UINT8", shape: [1, channels, height, width], data: pixels,
      }], ["probabilities"]);
      message.textContent = "";
      version.textContent = "answered by version " + answer.version;
      showBars(bars, model.labels || [], api.row(answer.outputs.probabilities));
      if (!dirty) answered(result);
    } catch (e) {
      failed(result, e, message);
    } finally {
      busy = false;
      if (dirty) pump();
    }
  }

  async function upload(file) {
    try {
      const bitmap = await decodeFile(file);
      pad.load(bitmap);
      // MNIST digits are light on black: a light photo is most likely dark ink on paper
      invert.checked = pad.meanLevel() > 127;
      if (invert.checked) pad.invert();
    } catch (e) {
      failed(result, e, message);
    }
  }

  invert.addEventListener("change", () => pad.invert());
  centre.addEventListener("change", changed);

  root.append(el("div", { class: "view classifier" },
    el("div", { class: "input" },
      padCanvas,
      el("div", { class: "controls" },
        el("button", { type: "button", text: "Clear", onclick: () => pad.clear() }),
        el("label", {}, centre, " centre like MNIST"),
        el("label", {}, invert, " invert"),
        el("span", { class: "preview-box" }, preview,
           el("small", { text: `${width}\u00d7${height} sent` }))),
      uploadZone("or drop an image here, or choose a file", upload)),
    result));
  changed(); // the empty pad's answer: a baseline to compare the drawing with
}
