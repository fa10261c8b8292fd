"use strict";
// Structure from a layer through the panel on the fake Photoshop against the real server: the
// Structure section lists the document's layers and the ControlNets that fit the base; a
// picked layer travels as the `control_image` part (read in the mode's frame, over white) with
// `control`, `control_strength` (and `controlnet` when picked); without a layer nothing does.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");

const { spawnSync } = require("node:child_process");
const path = require("node:path");

const { createPlugin, pythonPath, skipWithoutPython, startServer, tempDir, testImage, panelDom } = require("./helpers.js");
const { mountPanel } = require("../src/ui/panel.js");
const { controlImage, fittingControlNets, overWhite, structureFields } = require("../src/structure.js");

const TIMEOUT = { timeout: 600_000 };
const SIZE = 64;

/** The panel's DOM on linkedom (as decompose.test.js mounts it). */
function mountOn(plugin) {
  const { document, window } = panelDom();
  const unmount = mountPanel(document.body, { store: plugin.store, controller: plugin.controller, saveToken: () => {} });
  const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(`acetate-${id}`));
  const type = (/** @type {string} */ id, /** @type {string} */ value, event = "input") => {
    const input = $(id);
    assert.ok(input, `#acetate-${id} exists`);
    input.value = value;
    input.dispatchEvent(new window.Event(event));
  };
  const options = (/** @type {string} */ id) => [...$(id).querySelectorAll("option")].map((o) => [o.getAttribute("value"), o.textContent]);
  return { $, type, options, unmount };
}

/** A black bar and a black box outline on a transparent 40×24 layer at (12, 20). */
function sketch() {
  const width = 40;
  const height = 24;
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bar = y >= 10 && y < 13;
      const box = x < 2 || x >= width - 2 || y < 2 || y >= height - 2;
      data[(y * width + x) * 4 + 3] = bar || box ? 255 : 0;
    }
  }
  return { data, width, height, left: 12, top: 20 };
}

/** The multipart parts of a request body by name (latin1 text, enough to find them). */
function parts(/** @type {Uint8Array} */ body) {
  const text = Buffer.from(body).toString("latin1");
  /** @type {Record<string, string>} */
  const out = {};
  for (const match of text.matchAll(/Content-Disposition: form-data; name="([^"]+)"[^\r]*\r\n(?:[^\r]+\r\n)*\r\n([\s\S]*?)\r\n--/g)) {
    out[match[1]] = match[2];
  }
  return out;
}

test("structure logic: fields only with a layer and a kind, ControlNets by family and tininess", () => {
  const mode = { name: "fg", options: [{ name: "control" }], inputs: [{ field: "control_image" }] };
  const nets = [
    { name: "a", family: "sdxl", tiny: false },
    { name: "b", family: "sdxl", tiny: true },
    { name: "c", family: "sd15", tiny: true },
  ];
  const base = { name: "tiny-sdxl", family: "sdxl", tiny: true };
  assert.deepEqual(fittingControlNets(nets, base), ["b"]);
  const m = /** @type {any} */ (mode);
  assert.deepEqual(structureFields({ control: "canny" }, m, nets, base), {}, "no layer: nothing");
  assert.deepEqual(structureFields({ control: "none", "structure.layer": "7" }, m, nets, base), {});
  assert.deepEqual(structureFields({ control: "image", "structure.layer": "7", control_strength: "0.5", controlnet: "a" }, m, nets, base), {
    control: "image",
    control_strength: 0.5,
  });
  assert.deepEqual(structureFields({ control: "canny", "structure.layer": "7", controlnet: "b" }, m, nets, base), {
    control: "canny",
    control_strength: 1,
    controlnet: "b",
  });
  assert.deepEqual([...overWhite(new Uint8Array([0, 0, 0, 0, 200, 100, 0, 128]))], [255, 255, 255, 255, 227, 177, 127, 255]);
  const image = controlImage({ data: new Uint8Array([0, 0, 0, 255]), width: 1, height: 1, rect: { left: 1, top: 0, width: 1, height: 1 } }, { left: 0, top: 0, width: 2, height: 1 });
  assert.deepEqual([...image.data], [255, 255, 255, 255, 0, 0, 0, 255], "placed in the frame, over white");
});

describe("structure from a layer", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    // The tiny ControlNets are listed once built (a fresh server builds models on first need).
    const models = path.join(tempDir("structure"), "models");
    const script = "import sys; from pathlib import Path; from acetate.engine.tiny.bases import ensure_tiny_models; ensure_tiny_models(Path(sys.argv[1]))";
    const built = spawnSync(/** @type {string} */ (pythonPath()), ["-c", script, models], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });
    assert.equal(built.status, 0, built.stderr);
    server = await startServer({ args: ["--models-dir", models] });
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  test("a sketch layer steers fg: the control image part and fields reach the server", TIMEOUT, async () => {
    /** @type {Uint8Array[]} */
    const bodies = [];
    const plugin = createPlugin({
      serverUrl: server.url,
      fetch: (/** @type {string} */ url, /** @type {any} */ init) => {
        if (url.endsWith("/api/jobs") && init?.method === "POST") bodies.push(init.body);
        return fetch(url, init);
      },
    });
    const doc = plugin.world.addDocument({ width: SIZE, height: SIZE, name: "Sketched" });
    const background = doc.addPixelLayer("Background", testImage(SIZE, SIZE, 5));
    const ink = doc.addPixelLayer("Sketch", sketch());
    doc.setActive(background);
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    const ui = mountOn(plugin);
    try {
      ui.type("mode", "fg", "change");
      ui.type("model", "tiny-sdxl", "change");
      ui.type("prompt", "a house");
      ui.type("seed", "3");
      ui.type("opt-steps", "1");
      ui.type("opt-width", String(SIZE));
      ui.type("opt-height", String(SIZE));
      assert.equal(ui.$("opt-control"), null, "no generic control: the Structure section edits it");
        assert.deepEqual(ui.options("structure-controlnet"), [["", "Default"], ["tiny-controlnet-sdxl", "tiny-controlnet-sdxl"]]);
      ui.type("model", "tiny-sd15", "change");
      assert.deepEqual(ui.options("structure-controlnet"), [["", "Default"], ["tiny-controlnet-sd15", "tiny-controlnet-sd15"]]);
      ui.type("model", "tiny-sdxl", "change");
      const layers = ui.options("structure-layer");
      assert.deepEqual(layers[0], ["", "None"]);
      assert.ok(layers.some(([id, name]) => id === String(ink.id) && name === "Sketch"), JSON.stringify(layers));

      // No layer: nothing about structure is sent.
      await plugin.controller.generate();
      assert.notEqual(plugin.store.state.message?.kind, "error", plugin.store.state.message?.text);
      let sent = parts(bodies.at(-1) ?? new Uint8Array());
      assert.ok(!("control_image" in sent));
      assert.ok(!("control" in JSON.parse(sent.request)));

      ui.type("structure-layer", String(ink.id), "change");
      assert.equal(plugin.store.state.settings.values.control, "canny", "a picked layer switches none to edges");
      ui.type("structure-strength", "0.8");
      ui.type("structure-controlnet", "tiny-controlnet-sdxl", "change");
      await plugin.controller.generate();
      assert.notEqual(plugin.store.state.message?.kind, "error", plugin.store.state.message?.text);
      sent = parts(bodies.at(-1) ?? new Uint8Array());
      const request = JSON.parse(sent.request);
      assert.deepEqual([request.control, request.control_strength, request.controlnet], ["canny", 0.8, "tiny-controlnet-sdxl"]);
      assert.ok("control_image" in sent, Object.keys(sent).join(", "));
      assert.deepEqual([sent.control_image_width, sent.control_image_height], [String(SIZE), String(SIZE)]);
      // What was sent: the sketch placed in the canvas frame, over white.
      const { data, left, top, width, height } = sketch();
      const expected = controlImage({ data, width, height, rect: { left, top, width, height } }, { left: 0, top: 0, width: SIZE, height: SIZE });
      assert.equal(expected.data[((20 + 11) * SIZE + 30) * 4], 0, "the bar is black");
      assert.equal(expected.data[(5 * SIZE + 5) * 4], 255, "the rest is white");
      const record = await (await fetch(`${server.url}/api/jobs/${plugin.store.state.history[0].id}`)).json();
      assert.equal(record.status, "done");
      const parameters = record.result.parameters;
      assert.deepEqual([parameters.control, parameters.control_strength, parameters.controlnet], ["canny", 0.8, "tiny-controlnet-sdxl"]);
      assert.equal(parameters.control_image.sha256, crypto.createHash("sha256").update(expected.data).digest("hex"));
    } finally {
      ui.unmount();
      await plugin.controller.disconnect?.();
    }
  });
});
