// The REST calls the page makes: the server's own Open Inference Protocol (KServe v2), as any
// client calls it, with the bearer token the user typed when the server wants one.

const TOKEN_KEY = "smallserve-inspector-token";
const BINARY_HEADER = "Inference-Header-Content-Length";

// The last request sent to each model, as sent: for people debugging the page and for tests
// that repeat a call through the API themselves.
export const lastCalls = {};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 0: no answer at all
  }
}

// sessionStorage: the token lives as long as the tab, is never written to disk by the page and
// is sent only to this origin.
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Paths relative to the page (/inspect/), so the page works behind a proxy's path prefix.
function url(path) {
  return new URL(path, document.baseURI).href;
}

async function call(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", "Bearer " + token());
  let response;
  try {
    response = await fetch(url(path), { ...options, headers, cache: "no-store",
                                        credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "the server cannot be reached (" + e.message + ")");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    throw new ApiError(response.status, "the answer is not JSON: " + text.slice(0, 200));
  }
  if (!response.ok) {
    const message = body && typeof body.error === "string" ? body.error : response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

export function models() {
  return call("api/models");
}

function modelPath(name) {
  return "../v2/models/" + encodeURIComponent(name);
}

// One ModelInfer call. inputs: [{name, datatype, shape, data}] where data is a Uint8Array
// (a UINT8 tensor) or an array of Uint8Array (BYTES elements, e.g. encoded images) sent as
// binary tensor data after the JSON header, or an array of strings (BYTES as JSON text).
// Outputs come back as JSON; the answer's outputs are returned by name.
export async function infer(model, inputs, outputs, parameters = {}) {
  const header = { inputs: [], outputs: outputs.map((name) => ({ name })), parameters };
  const chunks = [];
  for (const input of inputs) {
    const entry = { name: input.name, datatype: input.datatype, shape: input.shape };
    const raw = binaryOf(input);
    if (raw === null) {
      entry.data = input.data;
    } else {
      entry.parameters = { binary_data_size: raw.length };
      chunks.push(raw);
    }
    header.inputs.push(entry);
  }
  lastCalls[model] = { parameters, inputs: inputs.map(describeInput) };
  const head = new TextEncoder().encode(JSON.stringify(header));
  const options = { method: "POST" };
  if (chunks.length) {
    options.body = new Blob([head, ...chunks]);
    options.headers = { "Content-Type": "application/octet-stream",
                        [BINARY_HEADER]: String(head.length) };
  } else {
    options.body = head;
    options.headers = { "Content-Type": "application/json" };
  }
  const answer = await call(modelPath(model) + "/infer", options);
  const byName = {};
  for (const output of answer.outputs || []) byName[output.name] = output;
  return { version: answer.model_version, outputs: byName };
}

// A tensor's bytes as the binary extension wants them, or null to send it as JSON.
function binaryOf(input) {
  if (input.data instanceof Uint8Array) return input.data;
  if (input.datatype === "BYTES" && input.data.every((x) => x instanceof Uint8Array)) {
    // each element: its length as 4 bytes little-endian, then its bytes
    const size = input.data.reduce((n, x) => n + 4 + x.length, 0);
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    let offset = 0;
    for (const element of input.data) {
      view.setUint32(offset, element.length, true);
      out.set(element, offset + 4);
      offset += 4 + element.length;
    }
    return out;
  }
  return null;
}

function describeInput(input) {
  const data = input.data instanceof Uint8Array ? Array.from(input.data)
    : input.data.map((x) => (x instanceof Uint8Array ? { bytes: x.length } : x));
  return { name: input.name, datatype: input.datatype, shape: input.shape, data };
}

// A [n, ...] output's row i as a flat array, with the row's shape.
export function row(output, i = 0) {
  const size = output.shape.slice(1).reduce((a, b) => a * b, 1);
  return output.data.slice(i * size, (i + 1) * size);
}
