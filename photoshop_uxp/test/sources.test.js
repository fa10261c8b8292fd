"use strict";
// Chosen source layers: the main image of fg2bg, bg2fg, img2img, inpaint, upscale (and
// layer_on_artwork) comes from any layer picked in the panel (default: the active layer, or the
// visible canvas for bg2fg), and a mask read from the selection may come from a layer's alpha
// instead. Against the real server: the request carries the picked layer's pixels and the
// layer's alpha as the mask (the result record's image hashes say so), and the active layer is
// never read.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");

const { builtinModes, createPlugin, skipWithoutPython, startServer, testImage, panelDom } = require("./helpers.js");
const { parseModes } = require("../src/protocol.js");
const { placeInto } = require("../src/pixels.js");
const { alphaMask, maskInputs, maskKey, pickedSources, sourceInputs, sourceKey, sourceNeeds, withPickedLayers } = require("../src/sources.js");
const { mountPanel } = require("../src/ui/panel.js");

const TIMEOUT = { timeout: 600_000 };
const SIZE = 64;
const sha256 = (/** @type {Uint8Array} */ data) => crypto.createHash("sha256").update(data).digest("hex");

/** The panel's DOM on linkedom, wired to a plugin (as structure.test.js mounts it). */
function mountOn(/** @type {any} */ plugin) {
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

/** A transparent layer with a soft-edged painted box: alpha 255 inside, 90 on its border. */
function maskLayer() {
  const width = 24;
  const height = 16;
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1;
      data.set([200, 10, 10, edge ? 90 : 255], (y * width + x) * 4);
    }
  }
  return { data, width, height, left: 20, top: 18 };
}

test("which inputs take a picked layer, and what a pick changes in the read", () => {
  const modes = parseModes(builtinModes());
  const picked = modes.filter((mode) => sourceInputs(mode).length > 0).map((mode) => `${mode.name}.${sourceInputs(mode)[0].field}`);
  assert.deepEqual(picked.sort(), ["bg2fg.bg", "fg2bg.fg", "img2img.image", "inpaint.image", "layer_on_artwork.canvas", "upscale.image"]);
  assert.deepEqual(modes.filter((mode) => maskInputs(mode).length > 0).map((mode) => mode.name).sort(), ["decompose", "img2img", "inpaint", "layer_on_artwork"]);
  const bg2fg = /** @type {any} */ (modes.find((mode) => mode.name === "bg2fg"));
  const inputs = bg2fg.inputs.filter((/** @type {any} */ input) => input.field === "bg");
  assert.deepEqual(pickedSources({}, bg2fg, inputs), { layers: {}, inputs }, "no pick: unchanged");
  const choice = pickedSources({ [sourceKey("bg2fg", "bg")]: "12" }, bg2fg, inputs);
  assert.deepEqual(choice.layers, { source: 12 });
  assert.equal(choice.inputs[0].source, "layer", "the canvas input is read from the layer");
  assert.deepEqual(sourceNeeds({ composite: false, layer: true, selection: true }, { source: 12, mask: 3 }), { composite: false, layer: false, selection: false });
  const layer = { data: new Uint8Array([1, 2, 3, 0, 4, 5, 6, 70]), width: 2, height: 1, rect: { left: 3, top: 4, width: 2, height: 1 } };
  assert.deepEqual(alphaMask(layer), { data: new Uint8Array([0, 70]), width: 2, height: 1, rect: layer.rect });
  assert.equal(alphaMask({ ...layer, data: new Uint8Array(8) }), null, "nothing painted: no mask");
  const pixels = withPickedLayers({ layer: null, selection: null, layers: { source: layer, mask: layer } }, { source: 1, mask: 2 });
  assert.equal(pixels.layer, layer);
  assert.deepEqual(pixels.selection?.data, new Uint8Array([0, 70]));
});

describe("chosen source layers against the real server", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  /** A plugin with a document of three layers: Backdrop (opaque), Source (opaque box), Mask (soft alpha), Active on top. */
  async function prepared() {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: SIZE, height: SIZE, name: "Sources" });
    const backdrop = doc.addPixelLayer("Backdrop", testImage(SIZE, SIZE, 2));
    const source = doc.addPixelLayer("Source", { ...testImage(40, 32, 7), left: 16, top: 8 });
    const mask = doc.addPixelLayer("Mask", maskLayer());
    const active = doc.addPixelLayer("Active", { ...testImage(16, 16, 9), left: 0, top: 0 });
    doc.setActive(active);
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    return { plugin, doc, backdrop, source, mask, active };
  }

  /** The record of the panel's last job. */
  async function lastRecord(/** @type {any} */ plugin) {
    assert.notEqual(plugin.store.state.message?.kind, "error", plugin.store.state.message?.text);
    const record = await (await fetch(`${server.url}/api/jobs/${plugin.store.state.history[0].id}`)).json();
    assert.equal(record.status, "done", JSON.stringify(record.error));
    return record;
  }

  /** getPixels calls that read a layer, by id. */
  const readIds = (/** @type {any} */ world) => world.callsOf("imaging.getPixels").map((call) => call.args.layerID).filter((id) => id !== undefined);

  test("the pickers: every mode that reads an image from a layer or the canvas, the document's layers, kept per mode", TIMEOUT, async () => {
    const { plugin, source } = await prepared();
    const ui = mountOn(plugin);
    try {
      for (const [mode, field, first] of [
        ["fg2bg", "fg", "The active layer"],
        ["bg2fg", "bg", "The visible canvas"],
        ["img2img", "image", "The active layer"],
        ["inpaint", "image", "The active layer"],
        ["upscale", "image", "The active layer"],
      ]) {
        ui.type("mode", mode, "change");
        assert.deepEqual(ui.options(`pick-source-${field}`), [["", first], ...plugin.host.activeDocument().layers.map((/** @type {any} */ item) => [String(item.id), item.name])], mode);
      }
      ui.type("mode", "inpaint", "change");
      assert.deepEqual(ui.options("pick-mask-mask")[0], ["", "The selection"]);
      ui.type("pick-source-image", String(source.id), "change");
      assert.equal(plugin.store.state.settings.values[sourceKey("inpaint", "image")], String(source.id));
      ui.type("mode", "img2img", "change");
      assert.equal(ui.$("pick-source-image").value, "", "another mode keeps its own choice");
      ui.type("mode", "inpaint", "change");
      assert.equal(ui.$("pick-source-image").value, String(source.id));
    } finally {
      ui.unmount();
      plugin.controller.disconnect();
    }
  });

  test("inpaint: the picked layer is the image, another layer's alpha the mask; the active layer is not read", TIMEOUT, async () => {
    const { plugin, source, mask, active } = await prepared();
    plugin.configure({
      mode: "inpaint",
      model: "tiny-sd15",
      prompt: "a window",
      seed: "3",
      values: { steps: "1", decode: "fast", [sourceKey("inpaint", "image")]: String(source.id), [maskKey("inpaint", "mask")]: String(mask.id) },
    });
    await plugin.controller.generate();
    const record = await lastRecord(plugin);
    const frame = { left: 16, top: 8, width: 40, height: 32 };
    const parameters = record.result.parameters;
    assert.equal(parameters.image.sha256, sha256(testImage(40, 32, 7).data), "the Source layer's pixels");
    const painted = maskLayer();
    const alpha = Uint8Array.from({ length: painted.width * painted.height }, (_, p) => painted.data[p * 4 + 3]);
    const expected = placeInto(alpha, { left: painted.left, top: painted.top, width: painted.width, height: painted.height }, frame, 1);
    assert.deepEqual([parameters.mask.width, parameters.mask.height], [40, 32]);
    assert.equal(parameters.mask.sha256, sha256(expected), "the Mask layer's alpha (soft edge kept) in the image's frame");
    assert.ok(!readIds(plugin.world).includes(active.id), "the active layer was not read");
    assert.equal(plugin.world.callsOf("imaging.getSelection").length, 0, "nor the selection");
    // The result lands at the picked layer's frame.
    const group = plugin.world.documents[0].layers[0];
    assert.equal(group.kind, "group");
    plugin.controller.disconnect();
  });

  test("bg2fg: a picked layer replaces the visible canvas as the background", TIMEOUT, async () => {
    const { plugin, backdrop, active } = await prepared();
    plugin.configure({
      mode: "bg2fg",
      model: "tiny-sd15",
      prompt: "a cat",
      seed: "4",
      values: { steps: "1", decode: "fast", [sourceKey("bg2fg", "bg")]: String(backdrop.id) },
    });
    await plugin.controller.generate();
    const record = await lastRecord(plugin);
    assert.equal(record.result.parameters.bg.sha256, sha256(testImage(SIZE, SIZE, 2).data), "the Backdrop layer alone, not the composite");
    assert.equal(plugin.world.callsOf("imaging.getPixels").filter((call) => call.args.layerID === undefined).length, 0, "no composite read");
    assert.ok(!readIds(plugin.world).includes(active.id));
    // Back on the default: the visible canvas (Active over the others) as before.
    plugin.configure({ values: { [sourceKey("bg2fg", "bg")]: "" } });
    await plugin.controller.generate();
    const again = await lastRecord(plugin);
    assert.notEqual(again.result.parameters.bg.sha256, record.result.parameters.bg.sha256);
    plugin.controller.disconnect();
  });

  test("a picked layer that was deleted is a plain-words error naming its role", TIMEOUT, async () => {
    const { plugin, doc, source } = await prepared();
    plugin.configure({ mode: "img2img", model: "tiny-sd15", prompt: "x", values: { steps: "1", [sourceKey("img2img", "image")]: String(source.id) } });
    await plugin.photoshop.core.executeAsModal(async () => source.delete(), { commandName: "delete" });
    assert.ok(!doc.allLayers().includes(source));
    await plugin.controller.generate();
    assert.equal(plugin.store.state.message?.kind, "error");
    assert.match(plugin.store.state.message?.text ?? "", /source layer is no longer in the document/);
    plugin.controller.disconnect();
  });
});
