"use strict";
// How results go into the document: the fake's putLayerMask (imaging.md) and masks in the
// document's depth; "alpha as an editable mask" (an opaque pixel layer with the decoded RGB, also
// under alpha 0, and a layer mask equal to the alpha); 16-bit results (`bit_depth: 16`,
// `?format=rgba16`) converted exactly to 16-bit documents' 0..32768 and to 32-bit documents'
// linear light, while 8-bit documents stay byte for byte as before. The last tests run the
// panel against the real server.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");

const { createFakePhotoshop } = require("./fakes/photoshop.js");
const { createFakeUxp } = require("./fakes/uxp.js");
const { PLUGIN_DIR, createPlugin, skipWithoutPython, startServer, tempDir, testImage } = require("./helpers.js");
const { ALPHA_MASK_KEY, depthFields, recordedDepth, resultDepth } = require("../src/insertion.js");
const { createHost } = require("../src/photoshop.js");
const { splitAlpha, wireToDocument } = require("../src/pixels.js");

const TIMEOUT = { timeout: 600_000 };

function setup() {
  const { photoshop, world } = createFakePhotoshop();
  const fake = createFakeUxp({ pluginDir: PLUGIN_DIR, tempDir: tempDir("insertion") });
  const host = createHost({ photoshop, uxp: fake.uxp, localStorage: fake.localStorage });
  return { host, world, photoshop };
}

/** One layer's insertion into a new group. @param {any} layer */
const insertionOf = (layer) => ({ layer, rank: [0, 0], siblings: [], group: { id: null, name: "g", rank: [0], siblings: [] } });

/** sRGB-encoded 0..1 → linear light (IEC 61966-2-1), written independently of pixels.js. */
const linear = (/** @type {number} */ c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);

/** A 4×3 RGBA image with varied alpha: 0 (with colour under it), soft and opaque. */
function transparentImage(max = 255) {
  const width = 4;
  const height = 3;
  const data = new (max === 255 ? Uint8Array : Uint16Array)(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    data[p * 4] = Math.round(((p * 37) % 256) * (max / 255));
    data[p * 4 + 1] = Math.round(((p * 91 + 40) % 256) * (max / 255));
    data[p * 4 + 2] = Math.round(((p * 13 + 200) % 256) * (max / 255));
    data[p * 4 + 3] = [0, Math.round(max / 3), max, 1][p % 4];
  }
  return { data, width, height };
}

/** The values of a canvas-sized fake buffer over a rectangle (`channels` per pixel). */
function region(/** @type {ArrayLike<number>} */ values, /** @type {number} */ canvasWidth, /** @type {{left: number, top: number, width: number, height: number}} */ rect, channels) {
  const out = [];
  for (let y = rect.top; y < rect.top + rect.height; y++) {
    for (let x = rect.left; x < rect.left + rect.width; x++) {
      for (let c = 0; c < channels; c++) out.push(values[(y * canvasWidth + x) * channels + c]);
    }
  }
  return out;
}

describe("the fake's putLayerMask (imaging.md)", () => {
  /** @param {8|16|32} bits */
  async function maskData(photoshop, bits, values, width, height) {
    const type = { 8: Uint8Array, 16: Uint16Array, 32: Float32Array }[bits];
    return photoshop.imaging.createImageDataFromBuffer(type.from(values), { width, height, components: 1, chunky: true, colorSpace: "Grayscale", colorProfile: "Gray Gamma 2.2" });
  }

  test("writes a user mask at targetBounds, revealing the rest; replace false keeps the old one; undo restores", async () => {
    const { world, photoshop } = setup();
    const doc = world.addDocument({ width: 4, height: 3 });
    const layer = doc.addPixelLayer("L", testImage(4, 3));
    const data = await maskData(photoshop, 8, [0, 64, 128, 255], 2, 2);
    await photoshop.core.executeAsModal(async () => {
      await photoshop.imaging.putLayerMask({ documentID: doc.id, layerID: layer.id, imageData: data, targetBounds: { left: 1, top: 1 }, commandName: "Mask" });
    }, { commandName: "t" });
    assert.deepEqual([...layer.userMask], [255, 255, 255, 255, 255, 0, 64, 255, 255, 128, 255, 255]);
    assert.equal(doc.history.at(-1).name, "Mask", "its own history state, named by commandName");
    const more = await maskData(photoshop, 8, [7], 1, 1);
    await photoshop.core.executeAsModal(async () => {
      await photoshop.imaging.putLayerMask({ documentID: doc.id, layerID: layer.id, imageData: more, replace: false, targetBounds: { left: 0, top: 0 } });
    }, { commandName: "t" });
    assert.deepEqual([...layer.userMask].slice(0, 7), [7, 255, 255, 255, 255, 0, 64]);
    doc.undo();
    assert.equal(layer.userMask[0], 255, "undo puts the previous mask back");
    const read = await photoshop.imaging.getLayerMask({ documentID: doc.id, layerID: layer.id, sourceBounds: { left: 1, top: 1, right: 3, bottom: 3 } });
    assert.deepEqual([...(await read.imageData.getData())], [0, 64, 128, 255]);
    await Promise.all([data, more, read.imageData].map((item) => item.dispose()));
  });

  test("refuses what Photoshop refuses or leaves undocumented", async () => {
    const { world, photoshop } = setup();
    const doc = world.addDocument({ width: 4, height: 3, bits: 16 });
    const layer = doc.addPixelLayer("L", testImage(4, 3));
    const background = doc.addPixelLayer("Background", testImage(4, 3), { background: true });
    const put = (/** @type {any} */ options) => photoshop.core.executeAsModal(() => photoshop.imaging.putLayerMask(options), { commandName: "t" });
    const deep = await maskData(photoshop, 16, [32768, 0], 2, 1);
    await assert.rejects(photoshop.imaging.putLayerMask({ layerID: layer.id, imageData: deep }), /modal scope/);
    await assert.rejects(put({ imageData: deep }), /layerID is required/);
    await assert.rejects(put({ layerID: 999, imageData: deep }), /no layer/);
    await assert.rejects(put({ layerID: background.id, imageData: deep }), /Background/);
    await assert.rejects(put({ layerID: layer.id, imageData: deep, kind: "vector" }), /only "user"/);
    await assert.rejects(put({ layerID: layer.id, imageData: deep, mode: "x" }), /unknown option mode/);
    await assert.rejects(put({ layerID: layer.id, imageData: deep, targetBounds: { left: 3, top: 0 } }), /outside/);
    await assert.rejects(put({ layerID: layer.id, imageData: deep, targetBounds: { left: 0, top: 0, width: 3, height: 1 } }), /targetBounds/);
    const shallow = await maskData(photoshop, 8, [255, 0], 2, 1);
    await assert.rejects(put({ layerID: layer.id, imageData: shallow }), /8-bit mask data into a 16-bit document/);
    const rgba = await photoshop.imaging.createImageDataFromBuffer(new Uint16Array(8), { width: 2, height: 1, components: 4, colorSpace: "RGB", colorProfile: "sRGB IEC61966-2.1" });
    await assert.rejects(put({ layerID: layer.id, imageData: rgba }), /1-component Grayscale/);
    await deep.dispose();
    await assert.rejects(put({ layerID: layer.id, imageData: deep }), /disposed/);
    await Promise.all([shallow, rgba].map((item) => item.dispose()));
    assert.equal(layer.userMask, null, "nothing was written");
  });

  test("16-bit image data: 0..32768 unless fullRange, both ways", async () => {
    const { photoshop } = setup();
    const full = await photoshop.imaging.createImageDataFromBuffer(new Uint16Array([65535, 0, 1, 32768]), { width: 1, height: 1, components: 4, colorSpace: "RGB", fullRange: true });
    assert.deepEqual([...(await full.getData())], [32768, 0, 1, 16384]);
    assert.deepEqual([...(await full.getData({ fullRange: true }))], [65535, 0, 2, 32768]);
    await assert.rejects(photoshop.imaging.createImageDataFromBuffer(new Uint16Array([32769, 0, 0, 0]), { width: 1, height: 1, components: 4, colorSpace: "RGB" }), /above 32768/);
    await full.dispose();
  });

  test("masks live in the document's depth: 16-bit 0..32768, 32-bit 0..1; the adapter reads them back as 8 bits", async () => {
    for (const bits of /** @type {const} */ ([16, 32])) {
      const { host, world, photoshop } = setup();
      const doc = world.addDocument({ width: 2, height: 1, bits });
      const userMask = new Uint8Array([255, 51]);
      doc.addPixelLayer("Masked", { data: new Uint8Array([10, 20, 30, 255, 40, 50, 60, 255]), width: 2, height: 1 }, { userMask });
      const read = await photoshop.imaging.getLayerMask({ documentID: doc.id, layerID: doc.layers[0].id });
      assert.equal(read.imageData.componentSize, bits);
      assert.deepEqual([...(await read.imageData.getData())], bits === 16 ? [32768, Math.round((51 * 32768) / 255)] : [1, Math.fround(51 / 255)]);
      await read.imageData.dispose();
      const pixels = await host.readDocument({ layer: true });
      assert.deepEqual([...pixels.layer.data].filter((_, i) => i % 4 === 3), [255, 51], `${bits}-bit: mask applied to alpha as coverage`);
    }
  });
});

describe("alpha as a layer mask and 16-bit results, through the adapter", () => {
  test("alphaMask: an opaque layer with the decoded RGB (also under alpha 0) and a mask equal to the alpha", async () => {
    for (const bits of /** @type {const} */ ([8, 16, 32])) {
      const { host, world } = setup();
      const doc = world.addDocument({ width: 6, height: 5, bits });
      const image = transparentImage();
      const placed = await host.insertLayer(doc.id, insertionOf({ ...image, name: "fg", visible: true, left: 1, top: 2, alphaMask: true }), "Acetate: fg");
      const layer = doc.allLayers().find((item) => item.id === placed.layerId);
      const rect = { left: 1, top: 2, width: 4, height: 3 };
      const max = { 8: 255, 16: 32768, 32: 1 }[bits];
      const colour = (/** @type {number} */ v) => (bits === 8 ? v : bits === 16 ? Math.round((v * 32768) / 255) : Math.fround(linear(v / 255)));
      const got = region(layer.pixels, 6, rect, 4);
      const want = [...image.data].map((v, i) => (i % 4 === 3 ? max : colour(v)));
      assert.deepEqual(got, want, `${bits}-bit: RGB as decoded, alpha full`);
      assert.ok(got[0] + got[1] + got[2] > 0, "colour kept under alpha 0");
      const alpha = [...image.data].filter((_, i) => i % 4 === 3);
      const mask = region(layer.userMask, 6, rect, 1);
      assert.deepEqual(mask, alpha.map((v) => (bits === 8 ? v : bits === 16 ? Math.round((v * 32768) / 255) : Math.fround(v / 255))), `${bits}-bit mask = alpha`);
      assert.equal(region(layer.userMask, 6, { left: 0, top: 0, width: 1, height: 1 }, 1)[0], max, "outside the layer: revealed");
      assert.equal(doc.history.length, 1, "pixels and mask in one history state");
      assert.equal(world.liveImageData.size, 0);
      // What the user sees is what the straight layer showed (masks are coverage).
      doc.setActive(layer);
      const seen = await host.readDocument({ layer: true });
      assert.deepEqual([...seen.layer.data].filter((_, i) => i % 4 === 3), alpha, `${bits}-bit: read back, the mask is the alpha again`);
    }
  });

  test("16-bit wire data: exact 0..32768 in 16-bit documents, linear light in 32-bit ones", async () => {
    const image = transparentImage(65535);
    image.data[0] = 65535;
    image.data[1] = 1;
    image.data[2] = 32768;
    for (const bits of /** @type {const} */ ([16, 32])) {
      for (const alphaMask of [false, true]) {
        const { host, world } = setup();
        const doc = world.addDocument({ width: 4, height: 3, bits });
        const placed = await host.insertLayer(doc.id, insertionOf({ ...image, name: "fg", visible: true, left: 0, top: 0, depth: 16, alphaMask }), "x");
        const layer = doc.allLayers().find((item) => item.id === placed.layerId);
        const convert = (/** @type {number} */ v, /** @type {boolean} */ coverage) =>
          bits === 16 ? Math.round((v * 32768) / 65535) : Math.fround(coverage ? v / 65535 : linear(v / 65535));
        const want = [...image.data].map((v, i) => (i % 4 === 3 ? (alphaMask ? (bits === 16 ? 32768 : 1) : convert(v, true)) : convert(v, false)));
        assert.deepEqual([...layer.pixels], want, `${bits}-bit, alphaMask ${alphaMask}`);
        if (bits === 16) {
          assert.deepEqual([layer.pixels[0], layer.pixels[1], layer.pixels[2]], [32768, 1, 16384], "65535 → 32768, 1 → 1 (rounded), 32768 → 16384");
        }
        if (alphaMask) {
          assert.deepEqual([...layer.userMask], [...image.data].filter((_, i) => i % 4 === 3).map((v) => convert(v, true)));
        } else {
          assert.equal(layer.userMask, null);
        }
      }
    }
  });

  test("pure parts: the depth asked for, the fields sent, the split", () => {
    const mode = /** @type {any} */ ({ options: [{ name: "bit_depth" }] });
    assert.deepEqual([8, 16, 32].map((bits) => resultDepth(mode, /** @type {8|16|32} */ (bits))), [8, 16, 16]);
    assert.equal(resultDepth(/** @type {any} */ ({ options: [] }), 16), 8, "a server without bit_depth: 8 bits");
    assert.deepEqual(depthFields(8), {});
    assert.deepEqual(depthFields(16), { bit_depth: 16 });
    assert.equal(recordedDepth({ bit_depth: 16 }, 8), 8);
    assert.equal(recordedDepth({ bit_depth: 16 }, 32), 16);
    assert.equal(recordedDepth({}, 16), 8);
    const { color, alpha } = splitAlpha(new Uint8Array([1, 2, 3, 0, 4, 5, 6, 9]), 255);
    assert.deepEqual([...color, ...alpha], [1, 2, 3, 255, 4, 5, 6, 255, 0, 9]);
    assert.deepEqual([...wireToDocument(new Uint8Array([1, 2, 3, 4]), 8, 8)], [1, 2, 3, 4], "8 bits to 8 bits: unchanged");
  });
});

describe("results from the real server", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  /**
   * Generate fg on a fresh document of `bits` and return the plugin, the document, the sent
   * request and the job's record.
   * @param {8|16|32} bits
   * @param {Record<string, string>} [values]
   */
  async function run(bits, values = {}) {
    /** @type {string[]} */
    const bodies = [];
    const plugin = createPlugin({
      serverUrl: server.url,
      fetch: (/** @type {string} */ url, /** @type {any} */ init) => {
        if (url.endsWith("/api/jobs") && init?.method === "POST") bodies.push(Buffer.from(init.body).toString("latin1"));
        return fetch(url, init);
      },
    });
    const doc = plugin.world.addDocument({ width: 64, height: 64, bits, name: `${bits}-bit` });
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    plugin.configure({ mode: "fg", model: "tiny-sd15", prompt: "a glass", seed: "5", values: { steps: "1", decode: "fast", width: "64", height: "64", ...values } });
    await plugin.controller.generate();
    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    const request = JSON.parse(/** @type {string} */ (/name="request"\r\n(?:[^\r\n]+\r\n)*\r\n(\{.*?\})\r\n--/s.exec(bodies[0])?.[1]));
    const record = await (await fetch(`${server.url}/api/jobs/${plugin.store.state.history[0].id}`)).json();
    plugin.controller.disconnect();
    return { plugin, doc, request, record };
  }

  /** The server's own bytes of a layer (`format`: rgba or rgba16). */
  async function served(/** @type {string} */ jobId, /** @type {string} */ file, format = "rgba") {
    const response = await fetch(`${server.url}/api/jobs/${jobId}/layers/${file}?format=${format}`);
    assert.equal(response.status, 200);
    const body = Buffer.from(await response.arrayBuffer());
    return format === "rgba" ? new Uint8Array(body) : Uint16Array.from({ length: body.length / 2 }, (_, i) => body.readUInt16LE(i * 2));
  }

  /** The document's layer made from a record's layer. */
  function layerOf(/** @type {any} */ doc, /** @type {any} */ item) {
    return doc.allLayers().find((layer) => layer.kind === "pixel" && layer.name === item.name);
  }

  test("an 8-bit document: no bit_depth sent, every layer byte for byte as the server's RGBA", TIMEOUT, async () => {
    const { doc, request, record } = await run(8);
    assert.ok(!("bit_depth" in request));
    for (const item of record.result.layers) {
      const rect = { left: item.left, top: item.top, width: item.width, height: item.height };
      assert.deepEqual(region(layerOf(doc, item).pixels, 64, rect, 4), [...(await served(record.id, item.file))], item.name);
      assert.equal(layerOf(doc, item).userMask, null);
    }
  });

  test("alpha as a mask: an opaque pixel layer with the server's RGB and a mask equal to its alpha", TIMEOUT, async () => {
    const { plugin, doc, record } = await run(8, { [ALPHA_MASK_KEY]: "true" });
    const fg = record.result.layers.find((/** @type {any} */ item) => item.key === "foreground" || item.name === "foreground");
    assert.ok(fg, JSON.stringify(record.result.layers.map((/** @type {any} */ item) => item.name)));
    const bytes = await served(record.id, fg.file);
    assert.ok(bytes.some((v, i) => i % 4 === 3 && v < 255), "the tiny foreground has transparency to carry");
    const rect = { left: fg.left, top: fg.top, width: fg.width, height: fg.height };
    const layer = layerOf(doc, fg);
    assert.deepEqual(region(layer.pixels, 64, rect, 4), [...bytes].map((v, i) => (i % 4 === 3 ? 255 : v)), "RGB as decoded, alpha 255");
    assert.deepEqual(region(layer.userMask, 64, rect, 1), [...bytes].filter((_, i) => i % 4 === 3), "mask = alpha");
    assert.equal(plugin.world.callsOf("imaging.putLayerMask").length, record.result.layers.length);
  });

  /** Whether the server makes 16-bit results (it declares `bit_depth`). */
  const sixteen = async () => {
    const modes = await (await fetch(`${server.url}/api/modes`)).json();
    return (modes.modes ?? modes).some((/** @type {any} */ mode) => mode.options.some((/** @type {any} */ option) => option.name === "bit_depth"));
  };

  test("a 16-bit document: bit_depth 16 sent, rgba16 converted to 0..32768 exactly; a 32-bit one gets linear light", TIMEOUT, async () => {
    assert.ok(await sixteen(), "the server declares bit_depth");
    for (const bits of /** @type {const} */ ([16, 32])) {
      const { plugin, doc, request, record } = await run(bits);
      assert.equal(request.bit_depth, 16, `${bits}-bit document`);
      assert.equal(record.result.parameters.bit_depth, 16);
      for (const item of record.result.layers) {
        const values = await served(record.id, item.file, "rgba16");
        const rect = { left: item.left, top: item.top, width: item.width, height: item.height };
        const want = [...values].map((v, i) =>
          bits === 16 ? Math.round((v * 32768) / 65535) : Math.fround(i % 4 === 3 ? v / 65535 : linear(v / 65535)),
        );
        assert.deepEqual(region(layerOf(doc, item).pixels, 64, rect, 4), want, `${bits}-bit ${item.name}`);
      }
      // Inserted again from the history: fetched as 16 bits too (the record says bit_depth 16).
      assert.equal(await plugin.controller.connect(), true);
      await plugin.controller.insertFromHistory(record.id);
      assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
      const [again, first] = doc.layers.filter((/** @type {any} */ layer) => layer.kind === "group");
      assert.deepEqual([...again.layers[0].pixels], [...first.layers[0].pixels], `${bits}-bit: the same values from the history`);
      plugin.controller.disconnect();
    }
  });
});
