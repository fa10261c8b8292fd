"use strict";
// The panel's DOM (src/ui/panel.js) on linkedom: controls built from the server's modes
// (tests/data/modes.json plus the dummy mode), typing → settings, the generic list editor,
// buttons → controller actions, progress, messages and history.
const test = require("node:test");
const assert = require("node:assert/strict");
const { parseHTML } = require("linkedom");

const { builtinModes, dummyModeInfo, panelDom } = require("./helpers.js");
const { parseModes } = require("../src/protocol.js");
const { buildParameters, defaultSettings } = require("../src/settings.js");
const { createStore } = require("../src/state.js");
const { mountPanel, describeProgress, showPreview } = require("../src/ui/panel.js");

const MODES = [...parseModes(builtinModes()), dummyModeInfo()];

function mount({ modes = MODES } = {}) {
  const { document, window } = panelDom();
  const store = createStore({ ...defaultSettings(), prompt: "a fox" }, "");
  store.update({ modes });
  /** @type {string[]} */
  const calls = [];
  const controller = /** @type {any} */ ({
    connect: async () => calls.push("connect"),
    generate: async () => calls.push("generate"),
    cancel: async () => calls.push("cancel"),
    undoResult: async () => calls.push("undo"),
    insertFromHistory: async (/** @type {string} */ id) => calls.push(`insert ${id}`),
    openPsd: async (/** @type {string} */ id) => calls.push(`psd ${id}`),
  });
  /** @type {string[]} */
  const tokens = [];
  const unmount = mountPanel(document.body, { store, controller, saveToken: (token) => tokens.push(token) });
  const $ = (/** @type {string} */ selector) => /** @type {any} */ (document.querySelector(selector));
  const has = (/** @type {string} */ key) => document.querySelector(`#acetate-${CSS(key)}`) !== null;
  const inAdvanced = (/** @type {string} */ key) => $(`#acetate-${CSS(key)}`)?.closest(".advanced") != null;
  const type = (/** @type {string} */ key, /** @type {string} */ value, event = "input") => {
    const input = $(`#acetate-${CSS(key)}`);
    assert.ok(input, `#acetate-${key} exists`);
    input.value = value;
    input.dispatchEvent(new window.Event(event));
  };
  const buttons = () => [...document.querySelectorAll("button")];
  const button = (/** @type {string} */ text) => /** @type {any} */ (buttons().find((b) => b.textContent === text));
  const click = (/** @type {any} */ node) => node.dispatchEvent(new window.Event("click"));
  return { document, window, store, calls, tokens, unmount, $, has, inAdvanced, type, button, click };
}

/** @param {string} key */
function CSS(key) {
  return key.replace(/\./g, "\\.");
}

test("the mode list, labels and help come from the server; options by type, advanced ones apart", () => {
  const ui = mount();
  const options = [...ui.$("#acetate-mode").querySelectorAll("option")];
  assert.deepEqual(options.map((o) => o.getAttribute("value")), MODES.map((m) => m.name));
  assert.equal(options[0].textContent, "Foreground (new transparent layer)");
  assert.equal(ui.document.querySelector(".hint").textContent, "A transparent layer from a prompt.");
  // fg: width/height as number fields with per-family placeholders, decode as a dropdown.
  assert.ok(ui.has("opt-width") && ui.has("opt-height") && !ui.has("opt-strength") && !ui.has("opt-scale"));
  assert.equal(ui.$("#acetate-opt-width").getAttribute("placeholder"), "SDXL 1024 · SD1.5 512");
  assert.equal(ui.$("#acetate-opt-decode").tagName, "SELECT");
  assert.deepEqual([...ui.$("#acetate-opt-decode").querySelectorAll("option")].map((o) => o.textContent), ["Default (tta)", "tta", "fast"]);
  assert.ok(ui.inAdvanced("opt-scheduler") && ui.inAdvanced("opt-layer_weight") && !ui.inAdvanced("opt-steps"));
  assert.ok(!ui.has("opt-control") && !ui.has("opt-controlnet"), "structure options: edited in the Structure section");
  assert.ok(ui.has("opt-layer_prompts.foreground"), "prompts: one field per fixed-name layer");
  assert.equal(ui.$(".advanced").style.display, "none", "Advanced starts collapsed");
  ui.click(ui.button("Advanced ▸"));
  assert.equal(ui.$(".advanced").style.display, "");

  ui.type("mode", "upscale", "change");
  assert.equal(ui.store.state.settings.mode, "upscale");
  assert.ok(!ui.has("opt-width") && ui.has("opt-strength") && ui.has("opt-scale"));
  assert.equal(ui.$("#acetate-opt-scale").getAttribute("placeholder"), "2");
  ui.type("mode", "joint", "change");
  assert.deepEqual(["background", "foreground", "blended"].map((layer) => ui.has(`opt-layer_prompts.${layer}`)), [true, true, true]);
  ui.store.update({ models: [{ name: "tiny-sdxl", family: "sdxl" }], settings: { ...ui.store.state.settings, model: "tiny-sdxl" } });
  assert.match(ui.document.querySelector(".hint").textContent, /Not available for SDXL models: no official SDXL joint model/);
  ui.type("mode", "fg", "change");
  assert.equal(ui.$("#acetate-opt-width").getAttribute("placeholder"), "1024", "the chosen model's family default");
  ui.unmount();
});

test("typing updates the settings; the token goes to secure storage; buttons call the controller", () => {
  const ui = mount();
  assert.equal(ui.$("#acetate-prompt").value, "a fox");
  ui.type("prompt", "a red fox");
  ui.type("seed", "12");
  ui.type("opt-decode", "fast", "change");
  ui.type("opt-steps", "9");
  ui.type("opt-layer_prompts.foreground", "fur");
  assert.equal(ui.store.state.settings.prompt, "a red fox");
  assert.equal(ui.store.state.settings.seed, "12");
  assert.deepEqual(ui.store.state.settings.values, { decode: "fast", steps: "9", "layer_prompts.foreground": "fur" });
  const token = ui.$("input[type=password]");
  token.value = " t0ken ";
  token.dispatchEvent(new ui.window.Event("change"));
  assert.equal(ui.store.state.token, "t0ken");
  assert.deepEqual(ui.tokens, ["t0ken"]);
  ui.click(ui.button("Connect"));
  ui.click(ui.button("Generate"));
  assert.deepEqual(ui.calls, ["connect", "generate"]);
});

test("the generic list editor adds and removes rows between min_items and max_items", () => {
  const ui = mount();
  ui.type("mode", "dummy_parts", "change");
  const rows = () => ui.document.querySelectorAll("#acetate-list-parts .list-row").length;
  assert.equal(rows(), 1, "min_items rows to start with");
  assert.ok(ui.button("Remove").hasAttribute("disabled"), "cannot go below min_items");
  ui.type("list-parts-0-prompt", "a moon");
  ui.click(ui.button("Add to Parts"));
  assert.equal(rows(), 2);
  ui.type("list-parts-1-prompt", "a star");
  ui.type("list-parts-1-seed", "4");
  assert.equal(ui.$("#acetate-list-parts-0-prompt").value, "a moon", "rows keep their text when the editor is rebuilt");
  ui.click(ui.button("Add to Parts"));
  ui.click(ui.button("Add to Parts"));
  assert.equal(rows(), 4);
  assert.ok(ui.button("Add to Parts").hasAttribute("disabled"), "max_items reached");
  ui.click(ui.document.querySelectorAll("#acetate-list-parts .list-remove")[3]);
  ui.click(ui.document.querySelectorAll("#acetate-list-parts .list-remove")[2]);
  assert.equal(rows(), 2);
  const mode = /** @type {any} */ (MODES.find((m) => m.name === "dummy_parts"));
  assert.deepEqual(buildParameters(ui.store.state.settings, mode).parts, [{ prompt: "a moon" }, { prompt: "a star", seed: 4 }]);
  assert.ok(!ui.has("opt-width") && ui.has("opt-steps"));
});

test("a server too old for this panel: the message shows and Generate is disabled", () => {
  const ui = mount({ modes: [] });
  ui.store.update({ connection: { status: "outdated", message: "Server too old — update Acetate (it has no GET /api/modes).", socket: "closed" } });
  assert.match(ui.document.querySelector(".status").textContent, /^Server too old — update Acetate/);
  assert.ok(ui.button("Generate").hasAttribute("disabled"));
  assert.equal(ui.document.querySelector(".hint").textContent, "Connect to a server to see its modes.");
});

test("connection, models, progress, messages and history are shown", () => {
  const ui = mount();
  assert.match(ui.document.querySelector(".status").textContent, /Not connected/);
  ui.store.update({
    connection: { status: "connected", message: "Connected to Acetate 0.1.0 (cpu)", socket: "open" },
    models: [{ name: "tiny-sd15", tiny: true }, { name: "my-sdxl" }],
  });
  assert.equal(ui.document.querySelector(".status").textContent, "Connected to Acetate 0.1.0 (cpu) · events: live");
  assert.deepEqual([...ui.$("#acetate-model").querySelectorAll("option")].map((o) => o.textContent), ["Server default", "tiny-sd15 (test model)", "my-sdxl"]);
  assert.equal(ui.button("Reconnect") !== undefined, true);

  ui.store.update({ busy: true, job: { id: "j_1", phase: "started", position: null, step: 3, total: 12, etaS: 4.2, preview: null } });
  assert.ok(ui.button("Generate").hasAttribute("disabled"));
  assert.ok(!ui.button("Cancel").hasAttribute("disabled"));
  assert.equal(ui.document.querySelector(".progress-text").textContent, "Step 3 of 12 · about 5 s left");
  assert.equal(ui.document.querySelector(".bar-fill").style.width, "25%");
  ui.button("Cancel").dispatchEvent(new ui.window.Event("click"));
  assert.deepEqual(ui.calls, ["cancel"]);
  assert.equal(ui.button("Undo whole result").style.display, "none", "nothing to undo yet");

  ui.store.update({
    busy: false,
    job: null,
    message: { kind: "error", text: "Cannot reach the Acetate server." },
    history: [
      { id: "j_2", mode: "fg", prompt: "a fox", status: "done", created: 2, offset: { left: 0, top: 0 }, seed: 5 },
      { id: "j_1", mode: "inpaint", prompt: "", status: "cancelled", created: 1, offset: { left: 0, top: 0 } },
    ],
  });
  const message = ui.document.querySelector(".message");
  assert.equal(message.textContent, "Cannot reach the Acetate server.");
  assert.equal(message.getAttribute("class"), "message error");
  const items = [...ui.document.querySelectorAll(".history-item")];
  assert.deepEqual(items.map((item) => item.querySelector("span").textContent), ["Foreground (new transparent layer) · a fox · seed 5 · done", "Inpaint the active layer · (no prompt) · cancelled"]);
  assert.equal(items[1].querySelectorAll("button").length, 0, "only finished jobs can be inserted");
  ui.button("Insert").dispatchEvent(new ui.window.Event("click"));
  ui.button("PSD").dispatchEvent(new ui.window.Event("click"));
  assert.deepEqual(ui.calls, ["cancel", "insert j_2", "psd j_2"]);
  ui.store.update({ landed: { id: "j_2", documentId: 1, groupIds: [5, 6] } });
  assert.equal(ui.button("Undo whole result").style.display, "");
  ui.button("Undo whole result").dispatchEvent(new ui.window.Event("click"));
  assert.deepEqual(ui.calls.at(-1), "undo");
});

test("scene: objects from the selected layer group (or typed rows with boxes), the background generated on request", () => {
  const ui = mount();
  ui.type("mode", "scene", "change");
  const source = ui.$("#acetate-list-from\\:objects");
  assert.ok(source, "a choice where the objects come from");
  assert.deepEqual([...source.querySelectorAll("option")].map((o) => o.textContent), ["The selected layer group", "Rows typed here"]);
  assert.match(ui.$("#acetate-list-objects").textContent, /one layer per object: the layer's name is its prompt/);
  assert.ok(!ui.has("list-objects-0-prompt"), "no rows while the group is the source");
  const generate = ui.$("#acetate-opt-without\\:bg");
  assert.equal(generate.getAttribute("type"), "checkbox");
  assert.match(generate.closest("label").textContent, /Generate the background \(instead of the canvas\)/);
  generate.checked = true;
  generate.dispatchEvent(new ui.window.Event("change"));
  assert.equal(ui.store.state.settings.values["without:bg"], "true");
  assert.ok(ui.has("opt-layer_prompts.background"), "the background's prompt field");
  source.value = "rows";
  source.dispatchEvent(new ui.window.Event("change"));
  assert.ok(ui.has("list-objects-0-prompt") && ui.has("list-objects-0-region"), "typed rows, a region per row");
  ui.type("list-objects-0-region", "10, 20, 30, 40");
  assert.deepEqual(buildParameters(ui.store.state.settings, MODES.find((m) => m.name === "scene")).objects, [{ region: { left: 10, top: 20, width: 30, height: 40 } }]);
});

test("history: a failed or cancelled job that kept layers can be inserted (no PSD)", () => {
  const ui = mount();
  ui.store.update({
    history: [{ id: "j_3", mode: "scene", prompt: "a street", status: "error", created: 3, offset: { left: 0, top: 0 }, layers: 2 }],
  });
  const [item] = [...ui.document.querySelectorAll(".history-item")];
  assert.deepEqual([...item.querySelectorAll("button")].map((b) => b.textContent), ["Insert"]);
  ui.button("Insert").dispatchEvent(new ui.window.Event("click"));
  assert.deepEqual(ui.calls, ["insert j_3"]);
});

test("progress wording for every phase", () => {
  const base = { id: "j", position: null, step: 0, total: 0, etaS: null, preview: null };
  assert.equal(describeProgress({ ...base, phase: "reading" }), "Reading the document…");
  assert.equal(describeProgress({ ...base, phase: "queued", position: 2 }), "Waiting in the queue (position 2)…");
  assert.equal(describeProgress({ ...base, phase: "started" }), "Loading the model…");
  assert.equal(describeProgress({ ...base, phase: "inserting" }), "Adding the layers…");
});

test("macOS token field: text while focused (UXP cannot read password values there), password again on blur", () => {
  const ui = mount();
  const token = ui.$("input[type=password]");
  token.dispatchEvent(new ui.window.Event("focus"));
  assert.equal(token.getAttribute("type"), "text");
  token.value = "s3cret";
  token.dispatchEvent(new ui.window.Event("blur"));
  assert.equal(token.getAttribute("type"), "password");
  assert.equal(ui.store.state.token, "s3cret");
  assert.deepEqual(ui.tokens, ["s3cret"], "saved once, read while it was a text field");
});

test("labels wrap their controls (UXP has no <label for>)", () => {
  const ui = mount();
  assert.equal(ui.document.querySelectorAll("label[for]").length, 0);
  const controls = [...ui.document.querySelectorAll("input, select, textarea")];
  assert.ok(controls.length > 5);
  for (const control of controls) {
    assert.equal(control.closest("label") !== null, true, `${control.getAttribute("id") ?? control.tagName} is inside its label`);
  }
});

test("connection details show the Origin and Sec-Fetch-* headers the server saw", () => {
  const ui = mount();
  ui.store.update({ connection: { status: "connected", message: "Connected", socket: "open", seen: { origin: "null", sec_fetch_site: null, sec_fetch_mode: "cors" } } });
  assert.equal(ui.document.querySelector(".details").textContent, 'Server saw: Origin "null" · Sec-Fetch-Site none · Sec-Fetch-Mode "cors"');
  ui.store.update({ connection: { status: "connected", message: "Connected", socket: "open", seen: null } });
  assert.match(ui.document.querySelector(".details").textContent, /did not report/);
});

test("previews fall back when ImageBlob rejects a MIME type (it documents image/jpg), else none is shown", () => {
  const { document } = parseHTML("<html><body><img></body></html>");
  const image = document.querySelector("img");
  /** @type {string[]} */
  const tried = [];
  const saved = { ImageBlob: globalThis.ImageBlob, create: URL.createObjectURL, revoke: URL.revokeObjectURL };
  try {
    URL.createObjectURL = () => "blob:1";
    URL.revokeObjectURL = () => {};
    globalThis.ImageBlob = class {
      constructor(_data, /** @type {{type: string}} */ { type }) {
        tried.push(type);
        if (!["image/png", "image/jpg"].includes(type)) throw new Error(`unsupported type ${type}`);
      }
    };
    assert.equal(showPreview(image, new ArrayBuffer(4), ""), "blob:1");
    assert.deepEqual(tried, ["image/jpeg", "image/jpg"]);
    assert.equal(image.getAttribute("src"), "blob:1");
    globalThis.ImageBlob = class {
      constructor() {
        throw new Error("no ImageBlob support");
      }
    };
    assert.equal(showPreview(image, new ArrayBuffer(4), "blob:1"), "");
    assert.equal(image.style.display, "none");
  } finally {
    globalThis.ImageBlob = saved.ImageBlob;
    URL.createObjectURL = saved.create;
    URL.revokeObjectURL = saved.revoke;
  }
});
