"use strict";
// The panel's DOM (src/ui/panel.js) on linkedom: controls per mode, typing → settings,
// buttons → controller actions, progress, messages and history.
const test = require("node:test");
const assert = require("node:assert/strict");
const { parseHTML } = require("linkedom");

const { defaultSettings } = require("../src/settings.js");
const { createStore } = require("../src/state.js");
const { mountPanel, describeProgress } = require("../src/ui/panel.js");

function mount() {
  const { document, window } = parseHTML("<html><body></body></html>");
  // UXP implements HTMLSelectElement.value as browsers do; linkedom does not.
  Object.defineProperty(window.HTMLSelectElement.prototype, "value", {
    get() {
      const options = [...this.querySelectorAll("option")];
      return (options.find((o) => o.hasAttribute("selected")) ?? options[0])?.getAttribute("value") ?? "";
    },
    set(value) {
      for (const option of this.querySelectorAll("option")) {
        if (option.getAttribute("value") === value) option.setAttribute("selected", "");
        else option.removeAttribute("selected");
      }
    },
  });
  const store = createStore({ ...defaultSettings(), prompt: "a fox" }, "");
  /** @type {string[]} */
  const calls = [];
  const controller = /** @type {any} */ ({
    connect: async () => calls.push("connect"),
    generate: async () => calls.push("generate"),
    cancel: async () => calls.push("cancel"),
    insertFromHistory: async (/** @type {string} */ id) => calls.push(`insert ${id}`),
    openPsd: async (/** @type {string} */ id) => calls.push(`psd ${id}`),
  });
  /** @type {string[]} */
  const tokens = [];
  const unmount = mountPanel(document.body, { store, controller, saveToken: (token) => tokens.push(token) });
  const $ = (/** @type {string} */ selector) => /** @type {any} */ (document.querySelector(selector));
  const shown = (/** @type {string} */ key) => $(`#acetate-${key}`).parentNode.style.display !== "none";
  const type = (/** @type {string} */ key, /** @type {string} */ value, event = "input") => {
    const input = $(`#acetate-${key}`);
    input.value = value;
    input.dispatchEvent(new window.Event(event));
  };
  const buttons = () => [...document.querySelectorAll("button")];
  const button = (/** @type {string} */ text) => /** @type {any} */ (buttons().find((b) => b.textContent === text));
  return { document, window, store, calls, tokens, unmount, $, shown, type, button };
}

test("every mode is offered and each shows only its inputs", () => {
  const ui = mount();
  const modes = [...ui.$("#acetate-mode").querySelectorAll("option")].map((o) => o.getAttribute("value"));
  assert.deepEqual(modes, ["fg", "fg2bg", "bg2fg", "joint", "img2img", "inpaint", "layer_on_artwork", "upscale"]);
  assert.ok(ui.shown("width") && ui.shown("prompt") && !ui.shown("strength") && !ui.shown("scale") && !ui.shown("fgPrompt"));
  ui.type("mode", "upscale", "change");
  assert.equal(ui.store.state.settings.mode, "upscale");
  assert.ok(!ui.shown("width") && ui.shown("strength") && ui.shown("scale"));
  assert.match(ui.document.querySelector(".hint").textContent, /opens as a new document/);
  ui.type("mode", "joint", "change");
  assert.ok(ui.shown("fgPrompt") && ui.shown("bgPrompt") && ui.shown("blendPrompt") && ui.shown("width"));
  ui.unmount();
});

test("typing updates the settings; the token goes to secure storage; buttons call the controller", () => {
  const ui = mount();
  assert.equal(ui.$("#acetate-prompt").value, "a fox");
  ui.type("prompt", "a red fox");
  ui.type("seed", "12");
  ui.type("decode", "fast", "change");
  assert.equal(ui.store.state.settings.prompt, "a red fox");
  assert.equal(ui.store.state.settings.seed, "12");
  assert.equal(ui.store.state.settings.decode, "fast");
  const token = ui.$("input[type=password]");
  token.value = " t0ken ";
  token.dispatchEvent(new ui.window.Event("change"));
  assert.equal(ui.store.state.token, "t0ken");
  assert.deepEqual(ui.tokens, ["t0ken"]);
  ui.button("Connect").dispatchEvent(new ui.window.Event("click"));
  ui.button("Generate").dispatchEvent(new ui.window.Event("click"));
  assert.deepEqual(ui.calls, ["connect", "generate"]);
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
  assert.deepEqual(items.map((item) => item.querySelector("span").textContent), ["Foreground · a fox · seed 5 · done", "Inpaint · (no prompt) · cancelled"]);
  assert.equal(items[1].querySelectorAll("button").length, 0, "only finished jobs can be inserted");
  ui.button("Insert").dispatchEvent(new ui.window.Event("click"));
  ui.button("PSD").dispatchEvent(new ui.window.Event("click"));
  assert.deepEqual(ui.calls, ["cancel", "insert j_2", "psd j_2"]);
});

test("progress wording for every phase", () => {
  const base = { id: "j", position: null, step: 0, total: 0, etaS: null, preview: null };
  assert.equal(describeProgress({ ...base, phase: "reading" }), "Reading the document…");
  assert.equal(describeProgress({ ...base, phase: "queued", position: 2 }), "Waiting in the queue (position 2)…");
  assert.equal(describeProgress({ ...base, phase: "started" }), "Loading the model…");
  assert.equal(describeProgress({ ...base, phase: "inserting" }), "Adding the layers…");
});
