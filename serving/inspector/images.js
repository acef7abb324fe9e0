// Images into the pixel contract of the server's image models: UINT8 [1, C, H, W], raw grey
// levels (or RGB values) 0..255, as an 8-bit image file holds them. The server refuses float
// pixels, so nothing here scales to 0..1.

export async function decodeFile(file) {
  try {
    // EXIF orientation applied, as the server (and every viewer) shows a phone photo upright
    return await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) {
    throw new Error("this browser cannot decode " + (file.name || "the file") + " as an image");
  }
}

export function context2d(canvas) {
  return canvas.getContext("2d", { willReadFrequently: true });
}

// Grey level of an RGB pixel as Pillow's convert("L") computes it (ITU-R 601-2 luma, in
// fixed point), so an uploaded colour image is the grey image the server would make of it.
export function luma(r, g, b) {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

// A decoded image stretched to the model's width x height (the server resizes the same way,
// without keeping the aspect ratio) as CHW planes: one grey plane, or R, G and B.
export function pixelsOf(bitmap, channels, height, width) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = context2d(canvas);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const plane = width * height;
  const out = new Uint8Array(channels * plane);
  for (let i = 0; i < plane; i++) {
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    if (channels === 1) {
      out[i] = luma(r, g, b);
    } else {
      out[i] = r;
      out[plane + i] = g;
      out[2 * plane + i] = b;
    }
  }
  return out;
}

// Grey levels [H, W] shown on a canvas of that size (the page scales it up, pixelated).
export function showGrey(canvas, grey, height, width) {
  canvas.width = width;
  canvas.height = height;
  const ctx = context2d(canvas);
  const image = ctx.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    image.data.set([grey[i], grey[i], grey[i], 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

export function geometry(model) {
  const p = model.preprocessing || {};
  return { channels: Number(p.channels || 1), height: Number(p.height || 28),
           width: Number(p.width || 28) };
}
