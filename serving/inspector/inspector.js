// The inspector's entry point: the token field, the list of models and one page per model,
// chosen by the address's fragment (#/models/NAME), so a view can be bookmarked.

import * as api from "./api.js";
import * as captioner from "./captioner.js";
import * as classifier from "./classifier.js";
import { clear, el, number } from "./dom.js";
import * as tagger from "./tagger.js";
import * as translator from "./translator.js";

const VIEWS = { classify: classifier, tag: tagger, translate: translator, caption: captioner };
// the figures a practitioner looks at first, when a manifest has them
const HEADLINE_METRICS = ["accuracy", "ece_after", "cross_entropy", "bleu", "chrf", "bleu4",
                          "exact_match", "attention_localisation", "micro_f1", "macro_f1", "map",
                          "precision_at_1", "n_test"];
const SHOWN_METRICS = 4;

// The one name the page puts on window: what it last sent, for debugging and for tests.
globalThis.smallserveInspector = Object.freeze({ lastCalls: api.lastCalls });

const main = document.getElementById("main");
const status = document.getElementById("status");

function route() {
  const match = /^#\/models\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function show() {
  clear(main);
  status.textContent = "loading\u2026";
  main.dataset.view = "loading";
  let listing;
  try {
    listing = await api.models();
  } catch (e) {
    status.textContent = e.status === 401
      ? "This server needs a token: type it in the field above."
      : "Cannot list the models: " + e.message;
    main.dataset.view = "error";
    if (e.status === 401) document.getElementById("token").focus();
    return;
  }
  status.textContent = listing.ready ? "" : "The server is still loading its models.";
  const name = route();
  const model = listing.models.find((m) => m.name === name);
  if (name === null) {
    showModels(listing.models);
  } else if (!model) {
    main.append(el("p", { class: "message", text: `No model named "${name}" is loaded.` }));
    main.dataset.view = "missing";
  } else {
    showModel(model);
  }
}

function showModels(models) {
  document.title = "smallserve inspector";
  main.dataset.view = "models";
  if (!models.length) {
    main.append(el("p", { class: "message", text: "No model is loaded." }));
    return;
  }
  const rows = models.map((m) => el("tr", { class: "model", dataset: { model: m.name } },
    el("td", {}, m.task in VIEWS
      ? el("a", { href: "#/models/" + encodeURIComponent(m.name), text: m.name })
      : el("span", { text: m.name })),
    el("td", { class: "task", text: m.task || "\u2014" }),
    el("td", { class: "version", text: m.served_version === null ? "none"
      : String(m.served_version) }),
    el("td", { class: "loaded", text: (m.loaded_versions || []).join(", ") }),
    el("td", { class: "metrics" }, metrics(m.metrics)),
    el("td", { class: "parity" }, parity(m.parity)),
    el("td", { class: "errors" }, versionErrors(m.version_errors))));
  main.append(el("table", { class: "models" },
    el("thead", {}, el("tr", {}, ["model", "task", "serving", "loaded", "metrics at export",
                                  "parity (ONNX vs PyTorch)", "version errors"]
      .map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows)));
}

function showModel(model) {
  document.title = model.name + " \u2014 smallserve inspector";
  main.dataset.view = model.task;
  main.append(el("header", { class: "model-head", dataset: { model: model.name } },
    el("h2", {}, el("a", { href: "#/", text: "models" }), " / ",
       el("span", { text: model.name })),
    el("p", { class: "facts" },
      el("span", { text: `task ${model.task}` }),
      el("span", { text: `serving version ${model.served_version}` }),
      el("span", {}, "parity ", parity(model.parity))),
    el("div", { class: "metrics" }, el("span", { class: "what", text: "metrics at export " }),
       metrics(model.metrics)),
    el("div", { class: "errors" }, el("span", { class: "what", text: "version errors " }),
       versionErrors(model.version_errors))));
  VIEWS[model.task].render(main, model);
}

// Top-level numeric metrics, the headline ones first; everything in a details box.
function metrics(all) {
  const entries = Object.entries(all || {}).filter(([, v]) => typeof v === "number");
  if (!entries.length) return el("span", { class: "none", text: "none recorded" });
  const rank = (k) => (HEADLINE_METRICS.includes(k) ? HEADLINE_METRICS.indexOf(k) : 99);
  entries.sort((a, b) => rank(a[0]) - rank(b[0]));
  const chips = entries.slice(0, SHOWN_METRICS).map(([k, v]) =>
    el("span", { class: "metric", dataset: { metric: k, value: String(v) } },
       el("b", { text: k }), " " + number(v)));
  return el("span", {}, chips,
    el("details", {}, el("summary", { text: "all metrics" }),
       el("pre", { text: JSON.stringify(all, null, 1) })));
}

function parity(p) {
  if (!p || typeof p.max_abs_diff !== "number") return el("span", { class: "none", text: "\u2014" });
  const within = typeof p.tolerance === "number" ? p.max_abs_diff <= p.tolerance : null;
  return el("span", { class: "parity-value" + (within === false ? " bad" : ""),
                      dataset: { maxAbsDiff: String(p.max_abs_diff) },
                      title: p.criterion || "largest |onnxruntime - PyTorch| at export" },
    "max |diff| " + p.max_abs_diff.toExponential(1) +
    (within === null ? "" : (within ? " \u2264 " : " > ") + p.tolerance.toExponential(0)));
}

function versionErrors(errors) {
  if (!errors || !errors.length) return el("span", { class: "none", text: "none" });
  return el("ul", { class: "version-errors" }, errors.map((e) =>
    el("li", { dataset: { version: String(e.version) } },
       el("b", { text: `version ${e.version}: ` }), el("span", { text: e.reason }))));
}

function setUpToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  input.value = api.token();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    api.setToken(input.value.trim());
    show();
  });
}

setUpToken();
window.addEventListener("hashchange", show);
show();
