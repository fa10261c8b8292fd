"use strict";
// Mode `decompose` (Qwen-Image-Layered, the tiny test model) through the panel on the fake
// Photoshop against the real server: the controls come from GET /api/modes (a layer count, where
// the image is read from), options the mode does not read are not sent (the server refuses
// them), and the N layers land as one group bottom → top with the hidden recomposite, each
// byte-exact at its record's offset, right above the source, which is hidden (not deleted);
// "Undo whole result" shows it again.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");

const { createPlugin, skipWithoutPython, startServer, testImage, panelDom } = require("./helpers.js");
const { mountPanel } = require("../src/ui/panel.js");

const TIMEOUT = { timeout: 600_000 };

/** The panel's DOM on linkedom (as dummy.test.js mounts it). */
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
  return { $, type, unmount };
}

/** The document's top-level layers, top first, as [name, visible]. */
const shown = (/** @type {any} */ doc) => doc.tree().map((/** @type {any} */ layer) => [layer.name, layer.visible]);

describe("decompose: split a layer or the canvas into layers", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  test("the active layer: three layers and the hidden recomposite land right above it, byte-exact", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 80, height: 64, name: "Flat" });
    const background = doc.addPixelLayer("Background", testImage(80, 64, 7));
    doc.addPixelLayer("Ink", testImage(20, 10, 3), { left: 5, top: 5 });
    doc.setActive(background);
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    const ui = mountOn(plugin);
    try {
      const option = [...ui.$("mode").querySelectorAll("option")].find((o) => o.getAttribute("value") === "decompose");
      assert.equal(option?.textContent, "Split into layers");
      ui.type("mode", "decompose", "change");
      ui.type("model", "tiny-qwen-image-layered", "change");
      ui.type("prompt", "a flat test picture");
      ui.type("seed", "4");
      ui.type("opt-steps", "2");
      ui.type("opt-layer_count", "3");
      const source = ui.$("opt-source:image");
      assert.deepEqual(
        [...source.querySelectorAll("option")].map((o) => [o.getAttribute("value"), o.textContent]),
        [
          ["layer", "Active layer"],
          ["canvas", "Whole canvas"],
        ],
      );
      await plugin.controller.generate();
      const { message, history } = plugin.store.state;
      assert.equal(message?.kind, "info", message?.text);

      const jobId = history[0].id;
      const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
      assert.equal(record.status, "done");
      assert.equal(record.result.parameters.layer_count, 3);
      assert.equal(record.result.metrics.length, 1);
      assert.match(message?.text ?? "", /The source layer is hidden \(Undo whole result shows it again\)/);
      const [ink, result, source_] = doc.tree();
      assert.deepEqual([ink.name, ink.visible, source_.name, source_.visible], ["Ink", true, "Background", false]);
      assert.deepEqual(result, {
        name: "a flat test picture #1",
        kind: "group",
        visible: true,
        layers: [
          { name: "blended", kind: "pixel", visible: false },
          { name: "layer_3", kind: "pixel", visible: true },
          { name: "layer_2", kind: "pixel", visible: true },
          { name: "layer_1", kind: "pixel", visible: true },
        ],
      });
      const group = doc.allLayers().find((layer) => layer.kind === "group");
      for (const placed of record.result.layers) {
        const layer = group.layers.find((/** @type {any} */ l) => l.name === placed.name);
        const pixels = await fetch(`${server.url}/api/jobs/${jobId}/layers/${placed.file}?format=rgba`);
        const expected = new Uint8Array(await pixels.arrayBuffer());
        const got = new Uint8Array(placed.width * placed.height * 4);
        for (let y = 0; y < placed.height; y++) {
          got.set(layer.pixels.subarray(((placed.top + y) * 80 + placed.left) * 4, ((placed.top + y) * 80 + placed.left + placed.width) * 4), y * placed.width * 4);
        }
        assert.deepEqual(got, expected, `${placed.name} byte-exact at ${placed.left},${placed.top}`);
      }
      // Undo whole result: the group goes and the source shows again, in one history state.
      await plugin.controller.undoResult();
      assert.deepEqual(shown(doc), [
        ["Ink", true],
        ["Background", true],
      ]);
      assert.equal(doc.history.at(-1).name, "Acetate: remove result");
    } finally {
      ui.unmount();
      plugin.controller.disconnect();
    }
  });

  test("the whole canvas: what the canvas shows is hidden, the result goes on top; undo shows exactly that again", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 64, height: 48, name: "Flat" });
    doc.addPixelLayer("Background", testImage(64, 48, 5));
    const sketch = doc.addPixelLayer("Sketch", testImage(64, 48, 9));
    sketch._visible = false; // hidden before (outside a modal scope, as test/photoshop.test.js does)
    doc.addPixelLayer("Ink", testImage(16, 8, 2), { left: 30, top: 20 }); // active
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    const ui = mountOn(plugin);
    try {
      ui.type("mode", "decompose", "change");
      ui.type("model", "tiny-qwen-image-layered", "change");
      ui.type("prompt", "ink over a wash");
      ui.type("opt-steps", "2");
      ui.type("opt-layer_count", "2");
      ui.type("opt-source:image", "canvas", "change");
      await plugin.controller.generate();
      const { message, history } = plugin.store.state;
      assert.equal(message?.kind, "info", message?.text);
      assert.match(message?.text ?? "", /The source layers are hidden \(Undo whole result shows them again\)/);
      const record = await (await fetch(`${server.url}/api/jobs/${history[0].id}`)).json();
      // the canvas was sent (its whole frame), not the active 16×8 layer
      assert.deepEqual(record.result.canvas, { width: 64, height: 48 });
      assert.deepEqual(shown(doc), [
        ["ink over a wash #1", true],
        ["Ink", false],
        ["Sketch", false],
        ["Background", false],
      ]);
      await plugin.controller.undoResult();
      assert.deepEqual(shown(doc), [
        ["Ink", true],
        ["Sketch", false],
        ["Background", true],
      ]);
    } finally {
      ui.unmount();
      plugin.controller.disconnect();
    }
  });
});
