"use strict";
// A mode no file of the plugin knows: `dummy_parts` (tests/support/dummy_mode.py), loaded into
// the real server with ACETATE_EXTRA_MODES. The panel builds its controls from GET /api/modes,
// the generic list editor makes two parts, and the layers land in the fake Photoshop as their
// layer_ready events arrive, ordered as the mode declares them.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");

const { createPlugin, skipWithoutPython, startServer, testImage, panelDom } = require("./helpers.js");
const { mountPanel } = require("../src/ui/panel.js");

const TIMEOUT = { timeout: 600_000 };

/** The panel's DOM on linkedom, driving the plugin's real store and controller. */
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
  const button = (/** @type {string} */ text) => /** @type {any} */ ([...document.querySelectorAll("button")].find((b) => b.textContent === text));
  const click = (/** @type {any} */ node) => node.dispatchEvent(new window.Event("click"));
  return { document, $, type, button, click, unmount };
}

describe("a mode the plugin has never heard of (ACETATE_EXTRA_MODES)", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer({ env: { ACETATE_EXTRA_MODES: "tests.support.dummy_mode" } });
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  test("dummy_parts: the list editor makes two parts; layers land as they arrive, grouped and ordered", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 96, height: 80, name: "Art" });
    doc.addPixelLayer("Background", testImage(96, 80, 5));
    const before = doc.tree();
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    const ui = mountOn(plugin);
    try {

      const modeOption = [...ui.$("mode").querySelectorAll("option")].find((o) => o.getAttribute("value") === "dummy_parts");
      assert.equal(modeOption?.textContent, "Parts over the canvas (test mode)");
      ui.type("mode", "dummy_parts", "change");
      ui.type("model", "tiny-sd15", "change");
      ui.type("prompt", "");
      ui.type("seed", "3");
      ui.type("opt-steps", "12");
      ui.type("opt-decode", "fast", "change");
      ui.type("list-parts-0-prompt", "a moon");
      ui.click(ui.button("Add to Parts"));
      ui.type("list-parts-1-prompt", "a star");
      ui.type("list-parts-1-seed", "9");

      // When `done` arrives, which layers are already in the document?
      /** @type {string[]|null} */
      let atDone = null;
      const deliver = plugin.controller.onEvent.bind(plugin.controller);
      plugin.controller.onEvent = (/** @type {any} */ event) => {
        if (event.type === "done") atDone = doc.allLayers().map((layer) => layer.name);
        deliver(event);
      };
      await plugin.controller.generate();
      const { message, history } = plugin.store.state;
      assert.equal(message?.kind, "info", message?.text);
      assert.equal(message?.text, "Added 3 layers in 1 group.");

      const jobId = history[0].id;
      const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
      assert.deepEqual(record.result.parameters.parts.map((/** @type {any} */ part) => [part.prompt, part.seed ?? null]), [["a moon", null], ["a star", 9]]);
      assert.deepEqual(doc.tree(), [
        {
          name: "Parts over the canvas (test mode) #1",
          kind: "group",
          visible: true,
          layers: [
            { name: "blended", kind: "pixel", visible: false },
            { name: "part_1", kind: "pixel", visible: true },
            { name: "part_0", kind: "pixel", visible: true },
          ],
        },
        ...before,
      ]);
      assert.ok(atDone !== null && /** @type {string[]} */ (atDone).includes("part_0"), `part_0 was in before done (had ${JSON.stringify(atDone)})`);
      // Placement: every layer at the position its record gives (the canvas is the frame).
      const group = doc.allLayers().find((layer) => layer.kind === "group");
      for (const placed of record.result.layers) {
        const layer = group.layers.find((/** @type {any} */ l) => l.name === placed.name);
        const pixels = await fetch(`${server.url}/api/jobs/${jobId}/layers/${placed.file}?format=rgba`);
        const expected = new Uint8Array(await pixels.arrayBuffer());
        const got = new Uint8Array(placed.width * placed.height * 4);
        for (let y = 0; y < placed.height; y++) {
          got.set(layer.pixels.subarray(((placed.top + y) * 96 + placed.left) * 4, ((placed.top + y) * 96 + placed.left + placed.width) * 4), y * placed.width * 4);
        }
        assert.deepEqual(got, expected, `${placed.name} byte-exact at ${placed.left},${placed.top}`);
      }
      assert.equal(doc.history.length, 3, "one history state per layer");
      assert.ok(plugin.requests.every((request) => !request.inModal), "no request while Photoshop was modal");
      ui.click(ui.button("Undo whole result"));
      for (let i = 0; i < 100 && plugin.store.state.landed; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(doc.tree(), before);
    } finally {
      ui.unmount();
      plugin.controller.disconnect();
    }
  });
});
