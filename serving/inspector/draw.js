// A drawing pad for digits: white ink on black, as the MNIST digits the classifiers learned
// from are stored, drawn with a mouse, a pen or a finger (pointer events cover all three).

import { context2d, luma } from "./images.js";

const SIZE = 280; // the pad's own resolution: ten pad pixels per model pixel at 28 x 28
const INK_WIDTH = 22; // about two and a half model pixels, as MNIST's strokes
const INK_LEVEL = 16; // grey levels above this count as ink when framing the digit

export class DrawingPad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.onChange = onChange;
    canvas.width = SIZE;
    canvas.height = SIZE;
    this.ctx = context2d(canvas);
    this.last = null;
    this.clear(false);
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
      canvas.addEventListener(type, () => { this.last = null; });
    }
  }

  clear(notify = true) {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, SIZE, SIZE);
    if (notify) this.onChange();
  }

  point(e) {
    const box = this.canvas.getBoundingClientRect();
    return [(e.clientX - box.left) * SIZE / box.width, (e.clientY - box.top) * SIZE / box.height];
  }

  down(e) {
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.last = this.point(e);
    this.stroke(this.last, this.last); // a tap leaves a dot
  }

  move(e) {
    if (this.last === null) return;
    e.preventDefault();
    // coalesced events: the points a fast stroke passed between two animation frames
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const each of events.length ? events : [e]) {
      const next = this.point(each);
      this.stroke(this.last, next, false);
      this.last = next;
    }
    this.onChange();
  }

  stroke(from, to, notify = true) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = INK_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
    if (notify) this.onChange();
  }

  // An uploaded image as a grey drawing: stretched to the pad (as the server stretches), grey
  // as Pillow makes it; invert() then turns dark ink on paper into MNIST's light ink on black.
  // A transparent background reads as paper (white), the usual case for drawn digits.
  load(bitmap) {
    this.ctx.fillStyle = "#fff";
    this.ctx.fillRect(0, 0, SIZE, SIZE);
    this.ctx.drawImage(bitmap, 0, 0, SIZE, SIZE);
    const image = this.ctx.getImageData(0, 0, SIZE, SIZE);
    const d = image.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = d[i + 1] = d[i + 2] = luma(d[i], d[i + 1], d[i + 2]);
      d[i + 3] = 255;
    }
    this.ctx.putImageData(image, 0, 0);
    this.onChange();
  }

  invert() {
    const image = this.ctx.getImageData(0, 0, SIZE, SIZE);
    const d = image.data;
    for (let i = 0; i < d.length; i += 4) d[i] = d[i + 1] = d[i + 2] = 255 - d[i];
    this.ctx.putImageData(image, 0, 0);
    this.onChange();
  }

  // The mean grey level of the pad: above half, the image is most likely dark ink on paper.
  meanLevel() {
    const d = this.ctx.getImageData(0, 0, SIZE, SIZE).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += d[i];
    return sum / (d.length / 4);
  }

  // The drawing as grey levels [size, size]. centre: framed as the MNIST digits were (the
  // ink's bounding box scaled into a 20 x 20 box, aspect kept, then moved so that its centre
  // of mass lies at the middle); otherwise the whole pad scaled down.
  pixels(size, centre) {
    const out = document.createElement("canvas");
    out.width = size;
    out.height = size;
    const ctx = context2d(out);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, size, size);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    const box = centre ? this.inkBox() : null;
    if (centre && box === null) return new Uint8Array(size * size); // nothing drawn
    if (box === null) {
      ctx.drawImage(this.canvas, 0, 0, size, size);
      return greyOf(ctx, size, size);
    }
    const inner = Math.round(size * 20 / 28);
    const scale = inner / Math.max(box.w, box.h);
    const w = Math.max(1, Math.round(box.w * scale));
    const h = Math.max(1, Math.round(box.h * scale));
    const digit = document.createElement("canvas");
    digit.width = w;
    digit.height = h;
    const dctx = context2d(digit);
    dctx.imageSmoothingEnabled = true;
    dctx.imageSmoothingQuality = "high";
    dctx.drawImage(this.canvas, box.x, box.y, box.w, box.h, 0, 0, w, h);
    const grey = greyOf(dctx, w, h);
    const [cx, cy] = centreOfMass(grey, w, h);
    ctx.drawImage(digit, Math.round(size / 2 - cx), Math.round(size / 2 - cy));
    return greyOf(ctx, size, size);
  }

  inkBox() {
    const d = this.ctx.getImageData(0, 0, SIZE, SIZE).data;
    let [x0, y0, x1, y1] = [SIZE, SIZE, -1, -1];
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        if (d[4 * (y * SIZE + x)] > INK_LEVEL) {
          x0 = Math.min(x0, x); x1 = Math.max(x1, x);
          y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        }
      }
    }
    return x1 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1 };
  }
}

function greyOf(ctx, w, h) {
  const d = ctx.getImageData(0, 0, w, h).data;
  const grey = new Uint8Array(w * h);
  for (let i = 0; i < grey.length; i++) grey[i] = d[4 * i];
  return grey;
}

function centreOfMass(grey, w, h) {
  let [sum, sx, sy] = [0, 0, 0];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = grey[y * w + x];
      sum += v; sx += v * (x + 0.5); sy += v * (y + 0.5);
    }
  }
  return sum ? [sx / sum, sy / sum] : [w / 2, h / 2];
}
