"use strict";
// The Photoshop adapter (src/photoshop.js) on the fake host: reads, inserts, bit depths,
// history, rollback, the modal rule and image-data disposal.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const { createFakePhotoshop } = require("./fakes/photoshop.js");
const { createFakeUxp } = require("./fakes/uxp.js");
const { PLUGIN_DIR, tempDir, testImage } = require("./helpers.js");
const { createHost } = require("../src/photoshop.js");
const { HostProblem } = require("../src/errors.js");

function setup() {
  const { photoshop, world } = createFakePhotoshop();
  const fake = createFakeUxp({ pluginDir: PLUGIN_DIR, tempDir: tempDir("adapter") });
  const host = createHost({ photoshop, uxp: fake.uxp, localStorage: fake.localStorage });
  return { host, world, fake };
}

/** @param {{data: Uint8Array, width: number}} image @param {{left: number, top: number, width: number, height: number}} rect */
function cropImage(image, rect) {
  const out = new Uint8Array(rect.width * rect.height * 4);
  for (let y = 0; y < rect.height; y++) {
    const from = ((rect.top + y) * image.width + rect.left) * 4;
    out.set(image.data.subarray(from, from + rect.width * 4), y * rect.width * 4);
  }
  return out;
}

/** Layer pixels of the fake as 8-bit bytes over a rectangle. */
function layerRegion(doc, layer, rect) {
  const out = [];
  for (let y = rect.top; y < rect.top + rect.height; y++) {
    for (let x = rect.left; x < rect.left + rect.width; x++) {
      for (let c = 0; c < 4; c++) out.push(layer.pixels[(y * doc.width + x) * 4 + c]);
    }
  }
  return out;
}

test("readDocument reads composite, active layer and selection in one modal scope and disposes everything", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 8, height: 6 });
  const background = testImage(8, 6, 3);
  doc.addPixelLayer("Background", background);
  const sticker = testImage(3, 2, 5);
  sticker.data[3] = 0; // one transparent pixel, still inside the layer's bounds
  const layer = doc.addPixelLayer("Sticker", { ...sticker, left: 2, top: 1 });
  doc.setActive(layer);
  const hidden = doc.addPixelLayer("Hidden", { ...testImage(8, 6, 9) });
  hidden._visible = false;
  doc.setActive(layer);
  const mask = new Uint8Array(8 * 6);
  mask[2 * 8 + 3] = 255;
  mask[3 * 8 + 4] = 128;
  doc.select(mask);

  const read = await host.readDocument({ composite: true, layer: true, selection: true });

  assert.deepEqual(read.document, { id: doc.id, name: "Untitled", width: 8, height: 6, bits: 8 });
  assert.deepEqual(read.layer.rect, { left: 2, top: 1, width: 3, height: 2 });
  assert.deepEqual(read.layer.data, sticker.data);
  assert.deepEqual(read.selection.rect, { left: 3, top: 2, width: 2, height: 2 });
  assert.deepEqual(Array.from(read.selection.data), [255, 0, 0, 128]);
  // The composite is the background with the sticker over it (the hidden layer left out).
  const expected = background.data.slice();
  for (let y = 0; y < 2; y++) {
    for (let x = 0; x < 3; x++) {
      const s = (y * 3 + x) * 4;
      if (sticker.data[s + 3] === 255) expected.set(sticker.data.subarray(s, s + 4), ((1 + y) * 8 + 2 + x) * 4);
    }
  }
  assert.deepEqual(read.composite.data, expected);

  assert.deepEqual(world.modalCommands, ["Acetate: read document"]);
  const reads = [...world.callsOf("imaging.getPixels"), ...world.callsOf("imaging.getSelection")];
  assert.equal(reads.length, 3);
  assert.ok(reads.every((call) => call.inModal), "every read happens inside executeAsModal");
  for (const call of world.callsOf("imaging.getPixels")) {
    assert.equal(call.args.componentSize, 8);
    assert.equal(call.args.colorProfile, "sRGB IEC61966-2.1");
    assert.equal(call.args.applyAlpha, false);
  }
  assert.equal(world.liveImageData.size, 0, "every image data disposed");
});

test("readDocument of a 16-bit document returns the same 8-bit values", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 5, height: 4, bits: 16 });
  const image = testImage(5, 4, 7);
  doc.addPixelLayer("Layer", image);
  const read = await host.readDocument({ layer: true, composite: true });
  assert.deepEqual(read.layer.data, image.data);
  assert.deepEqual(read.composite.data, image.data);
});

test("readDocument reports an empty active layer and no selection as null", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 4, height: 4 });
  doc.addPixelLayer("Empty", { data: new Uint8Array(0), width: 0, height: 0 });
  const read = await host.readDocument({ layer: true, selection: true });
  assert.equal(read.layer, null);
  assert.equal(read.selection, null);
  assert.equal(world.callsOf("imaging.getPixels").length, 0);
});

test("readDocument refuses non-RGB documents in plain words", async () => {
  const { host, world } = setup();
  world.addDocument({ width: 4, height: 4, mode: "CMYKColorMode" });
  await assert.rejects(host.readDocument({ composite: true }), (error) => {
    assert.ok(error instanceof HostProblem);
    assert.match(error.message, /RGB documents/);
    return true;
  });
});

function groups() {
  const fg = testImage(3, 2, 1);
  const blended = testImage(4, 3, 2);
  const fg2 = testImage(2, 2, 4);
  return [
    {
      name: "a cat #1",
      layers: [
        { ...fg, name: "foreground", visible: true, left: 1, top: 2 },
        { ...blended, name: "blended", visible: false, left: 0, top: 0 },
      ],
    },
    { name: "a cat #2", layers: [{ ...fg2, name: "foreground", visible: true, left: 5, top: 3 }] },
  ];
}

for (const bits of [8, 16, 32]) {
  test(`insertGroups into a ${bits}-bit document: converted pixels at their offsets, named, grouped, one undo`, async () => {
    const { host, world } = setup();
    const doc = world.addDocument({ width: 8, height: 6, bits });
    doc.addPixelLayer("Background", testImage(8, 6, 9));
    const before = doc.tree();
    const input = groups();

    await host.insertGroups(doc.id, input, "Acetate: Foreground");

    assert.deepEqual(doc.tree(), [
      {
        name: "a cat #2",
        kind: "group",
        visible: true,
        layers: [{ name: "foreground", kind: "pixel", visible: true }],
      },
      {
        name: "a cat #1",
        kind: "group",
        visible: true,
        layers: [
          { name: "blended", kind: "pixel", visible: false },
          { name: "foreground", kind: "pixel", visible: true },
        ],
      },
      ...before,
    ]);
    const convert = (/** @type {number} */ v) => (bits === 8 ? v : bits === 16 ? Math.round((v * 32768) / 255) : Math.fround(v / 255));
    const layers = doc.allLayers();
    const check = (name, groupName, image) => {
      const group = layers.find((l) => l.name === groupName);
      const layer = group.layers.find((l) => l.name === name);
      const rect = { left: image.left, top: image.top, width: image.width, height: image.height };
      assert.deepEqual(layerRegion(doc, layer, rect), Array.from(image.data, convert), `${groupName}/${name}`);
      assert.deepEqual(layer.bounds, { left: rect.left, top: rect.top, right: rect.left + rect.width, bottom: rect.top + rect.height, width: rect.width, height: rect.height });
    };
    check("foreground", "a cat #1", input[0].layers[0]);
    check("blended", "a cat #1", input[0].layers[1]);
    check("foreground", "a cat #2", input[1].layers[0]);

    const puts = world.callsOf("imaging.putPixels");
    assert.equal(puts.length, 3);
    assert.ok(puts.every((call) => call.inModal));
    assert.deepEqual(puts.map((call) => call.args.targetBounds), [
      { left: 1, top: 2, width: 3, height: 2 },
      { left: 0, top: 0, width: 4, height: 3 },
      { left: 5, top: 3, width: 2, height: 2 },
    ]);
    const created = world.callsOf("imaging.createImageDataFromBuffer");
    assert.ok(created.every((call) => call.args.type === { 8: "Uint8Array", 16: "Uint16Array", 32: "Float32Array" }[bits]));
    assert.equal(world.liveImageData.size, 0);
    assert.deepEqual(world.modalCommands, ["Acetate: Foreground"]);

    assert.equal(doc.history.length, 1, "one history state for the whole insertion");
    assert.equal(doc.history[0].name, "Acetate: Foreground");
    doc.undo();
    assert.deepEqual(doc.tree(), before, "one undo removes everything inserted");
  });
}

test("a failed insertion removes the layers created so far and leaves no history state", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 8, height: 6 });
  doc.addPixelLayer("Background", testImage(8, 6, 9));
  const before = doc.tree();
  world.failOn("imaging.putPixels", 3);
  await assert.rejects(host.insertGroups(doc.id, groups(), "Acetate: Foreground"), /injected/);
  assert.deepEqual(doc.tree(), before);
  assert.equal(doc.history.length, 0);
  assert.equal(world.liveImageData.size, 0, "the failed call's image data was disposed too");
  assert.ok(world.callsOf("Layer.delete").length >= 2, "created layers deleted explicitly");
});

test("insertGroups into a closed document is a plain-words error", async () => {
  const { host, world } = setup();
  world.addDocument({ width: 4, height: 4 });
  await assert.rejects(host.insertGroups(999, groups(), "x"), /document was closed/);
});

test("the fake enforces the modal rule: writes outside executeAsModal throw", async () => {
  const { world } = setup();
  const doc = world.addDocument({ width: 4, height: 4 });
  await assert.rejects(doc.createPixelLayer({ name: "x" }), /modal scope/);
});

test("a modal scope held by someone else is retried, then reported", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 4, height: 4 });
  world.busyModal = 2;
  const read = await host.readDocument({ composite: true });
  assert.equal(read.composite.width, 4);
  world.busyModal = 1000;
  await assert.rejects(host.insertGroups(doc.id, [], "x"), (error) => error instanceof HostProblem && /busy/.test(error.message));
});

test("openPsd writes the file to the plugin's temp folder and opens it in a modal scope", async () => {
  const { host, world } = setup();
  const bytes = new Uint8Array([0x38, 0x42, 0x50, 0x53, 0, 1, 2, 3]).buffer; // "8BPS"…
  await host.openPsd(bytes, "acetate-j_1.psd");
  assert.equal(world.opened.length, 1);
  assert.equal(path.basename(world.opened[0]), "acetate-j_1.psd");
  assert.deepEqual(new Uint8Array(fs.readFileSync(world.opened[0])), new Uint8Array(bytes));
  assert.ok(world.callsOf("app.open")[0].inModal);
});

test("storage: settings in localStorage, the token in secure storage, manifest origins", async () => {
  const { host, fake } = setup();
  assert.equal(host.loadSaved(), null);
  host.save({ settings: { prompt: "x" } });
  assert.deepEqual(host.loadSaved(), { settings: { prompt: "x" } });
  assert.equal(await host.loadToken(), "");
  await host.saveToken("sécret");
  assert.equal(await host.loadToken(), "sécret");
  assert.ok(fake.secrets.has("acetate.token"));
  await host.saveToken("");
  assert.equal(await host.loadToken(), "");
  const manifest = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8"));
  assert.deepEqual(await host.allowedOrigins(), manifest.requiredPermissions.network.domains);
});
