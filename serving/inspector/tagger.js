// Tagger view: an image in, one independent probability per label out, each against the
// threshold its label was given at training time (a label is tagged at or above it).

import * as api from "./api.js";
import { showBars } from "./bars.js";
import { answered, el, failed, resultArea, uploadZone } from "./dom.js";
import { decodeFile, geometry, pixelsOf } from "./images.js";

const DEFAULT_THRESHOLD = 0.5;

export function render(root, model) {
  const { channels, height, width } = geometry(model);
  const inputName = model.inputs && model.inputs[0] ? model.inputs[0].name : "pixels";
  const labels = model.labels || [];
  const thresholds = labels.map((_, i) => (model.thresholds && model.thresholds[i] !== undefined
    ? model.thresholds[i] : DEFAULT_THRESHOLD));
  const shown = el("canvas", { class: "photo" });
  const tags = el("p", { class: "tags" });
  const bars = el("ol", { class: "bars" });
  const message = el("p", { class: "message", text: "Drop an image to tag it." });
  const version = el("p", { class: "answered-by" });
  const result = resultArea("tagger-result");
  result.append(version, tags, bars, message);

  async function upload(file) {
    result.dataset.state = "busy";
    try {
      const bitmap = await decodeFile(file);
      drawPhoto(shown, bitmap);
      const pixels = pixelsOf(bitmap, channels, height, width);
      const answer = await api.infer(model.name, [{
        name: inputName, datatype: "UINT8", shape: [1, channels, height, width], data: pixels,
      }], ["probabilities"]);
      const p = api.row(answer.outputs.probabilities);
      const on = labels.filter((_, i) => p[i] >= thresholds[i]);
      tags.textContent = on.length ? "tagged: " + on.join(", ") : "no label reaches its threshold";
      message.textContent = "";
      version.textContent = "answered by version " + answer.version;
      showBars(bars, labels, p, thresholds);
      answered(result);
    } catch (e) {
      failed(result, e, message);
    }
  }

  root.append(el("div", { class: "view tagger" },
    el("div", { class: "input" }, shown, uploadZone("drop an image here, or choose a file", upload)),
    result));
}

export function drawPhoto(canvas, bitmap, longest = 320) {
  const scale = longest / Math.max(bitmap.width, bitmap.height);
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = scale < 1;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
}
