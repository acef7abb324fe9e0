// Building the page from data without ever parsing it as HTML: every text goes in through
// textContent (or a text node), every attribute through setAttribute.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function percent(p) {
  return (100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1) + "%";
}

export function number(x) {
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(1);
  return x.toFixed(Math.abs(x) >= 100 ? 1 : 4);
}

// A small colour scale (viridis's end points and three stops between) for weights in 0..1:
// dark for nothing, yellow for everything, readable on screen and in greyscale.
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

export function heatRGB(w) {
  const t = Math.min(1, Math.max(0, w)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t));
  const f = t - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

export function heat(w) {
  const [r, g, b] = heatRGB(w);
  return `rgb(${r}, ${g}, ${b})`;
}

// An image drop zone with a file chooser; calls onFile(file) with the chosen or dropped file.
export function uploadZone(label, onFile) {
  const input = el("input", { type: "file", accept: "image/*", class: "file" });
  input.addEventListener("change", () => input.files[0] && onFile(input.files[0]));
  const zone = el("label", { class: "drop" }, input, el("span", { text: label }));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
  });
  return zone;
}

// A result area that says whether an answer is on its way ("busy"), shown ("idle"), or failed
// ("error"), and how many answers it has shown: what a person (and a test) waits for.
export function resultArea(className) {
  const area = el("section", { class: "result " + className, "aria-live": "polite",
                               dataset: { state: "idle", answers: "0" } });
  return area;
}

export function answered(area) {
  area.dataset.state = "idle";
  area.dataset.answers = String(Number(area.dataset.answers) + 1);
}

export function failed(area, error, message) {
  area.dataset.state = "error";
  message.textContent = error.status === 401
    ? "The server needs a token: type it in the field at the top of the page."
    : String(error.message || error);
}
