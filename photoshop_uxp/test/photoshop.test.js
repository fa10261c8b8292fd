"use strict";
// The Photoshop adapter (src/photoshop.js) on the fake host: reads, layer-by-layer inserts
// (through the controller's Landing), bit depths, history, rollback, the modal rule and
// image-data disposal.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const { createFakePhotoshop } = require("./fakes/photoshop.js");
const { createFakeUxp } = require("./fakes/uxp.js");
const { PLUGIN_DIR, builtinModes, tempDir, testImage } = require("./helpers.js");
const { Landing } = require("../src/landing.js");
const { createHost } = require("../src/photoshop.js");
const { parseModes } = require("../src/protocol.js");
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

  // visibleTopIds: what the canvas shows, top first (the hidden layer left out).
  const visibleTopIds = [layer.id, doc.layers.at(-1).id];
  assert.deepEqual(read.document, {
    id: doc.id,
    name: "Untitled",
    width: 8,
    height: 6,
    bits: 8,
    activeLayer: { id: layer.id, topId: layer.id, kind: "pixel", rect: { left: 2, top: 1, width: 3, height: 2 } },
    visibleTopIds,
    // every layer, top first: what the Structure section offers
    layers: [
      { id: hidden.id, name: "Hidden" },
      { id: layer.id, name: "Sticker" },
      { id: doc.layers.at(-1).id, name: "Background" },
    ],
  });
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

const MODES = parseModes(builtinModes());
const JOINT = /** @type {any} */ (MODES.find((m) => m.name === "joint"));

/**
 * A result landing through the real `Landing` and host, on layers served from memory.
 * @param {any} host @param {any} doc @param {Record<string, any>} images file → {data, width, height, left, top}
 */
function landing(host, doc, images, { prompt = "a cat", mode = JOINT, jobId = "j_1" } = {}) {
  const client = /** @type {any} */ ({ layerPixels: async (/** @type {string} */ _job, /** @type {string} */ file) => images[file] });
  const document = { id: doc.id, name: doc.name, width: doc.width, height: doc.height, bits: doc.bits };
  return new Landing({ client, host, mode, modeName: mode.name, document, offset: { left: 0, top: 0 }, prompt, jobId });
}

/** @param {string} name @param {number} batch @param {any} image @param {boolean} [visible] */
function record(name, batch, image, visible = true) {
  const file = batch === 0 ? `${name}.png` : `${name}_${batch}.png`;
  return { name, batch_index: batch, file, left: image.left, top: image.top, width: image.width, height: image.height, visible };
}

function joint() {
  /** @type {Record<string, any>} */
  const images = {};
  /** @type {any[]} */
  const records = [];
  [["background", 1], ["foreground", 2], ["blended", 3]].forEach(([name, seed], i) => {
    for (const batch of [0, 1]) {
      const image = { ...testImage(2 + i, 2, Number(seed) + batch * 10), left: i + batch, top: batch };
      const item = record(String(name), batch, image, name !== "blended");
      images[item.file] = image;
      records.push(item);
    }
  });
  return { images, records };
}

for (const bits of [8, 16, 32]) {
  test(`layers land one by one into a ${bits}-bit document: converted, grouped per batch item, in the declared order whatever the arrival order`, async () => {
    const { host, world } = setup();
    const doc = world.addDocument({ width: 8, height: 6, bits });
    doc.addPixelLayer("Background", testImage(8, 6, 9));
    const before = doc.tree();
    const { images, records } = joint();
    const arrival = [records[4], records[3], records[0], records[2], records[1], records[5]]; // blended#0, fg#1, bg#0, fg#0, bg#1, blended#1
    const land = landing(host, doc, images);
    for (const item of arrival) land.add(item);
    await land.settle();

    const group = (/** @type {string} */ name) => ({
      name,
      kind: "group",
      visible: true,
      layers: [
        { name: "blended", kind: "pixel", visible: false },
        { name: "foreground", kind: "pixel", visible: true },
        { name: "background", kind: "pixel", visible: true },
      ],
    });
    assert.deepEqual(doc.tree(), [group("a cat #2"), group("a cat #1"), ...before]);
    // 32-bit: linear light (IEC 61966-2-1 curve on colour, alpha v / 255), written independently here.
    const linear = (/** @type {number} */ c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    const convert = (/** @type {number} */ v, /** @type {number} */ i) =>
      bits === 8 ? v : bits === 16 ? Math.round((v * 32768) / 255) : Math.fround(i % 4 === 3 ? v / 255 : linear(v / 255));
    for (const item of records) {
      const groupLayer = doc.allLayers().find((l) => l.name === `a cat #${item.batch_index + 1}`);
      const layer = groupLayer.layers.find((l) => l.name === item.name);
      const image = images[item.file];
      const rect = { left: image.left, top: image.top, width: image.width, height: image.height };
      const got = layerRegion(doc, layer, rect);
      const want = Array.from(image.data, convert);
      assert.ok(got.every((v, i) => Math.abs(v - want[i]) <= (bits === 32 ? 1e-6 : 0)), item.file);
    }
    if (bits === 32) {
      assert.ok(world.callsOf("imaging.createImageDataFromBuffer").every((call) => call.args.colorProfile === "sRGB IEC61966-2.1"), "the base profile, without (Linear RGB Profile)");
    }
    const puts = world.callsOf("imaging.putPixels");
    assert.equal(puts.length, 6);
    assert.ok(puts.every((call) => call.inModal));
    assert.ok(world.callsOf("Layer.move").every((call) => call.inModal));
    assert.equal(world.liveImageData.size, 0);
    assert.deepEqual(doc.history.map((state) => state.name), arrival.map((item) => `Acetate: ${item.name} (a cat #${item.batch_index + 1})`), "one named history state per layer");
    assert.deepEqual(world.modalCommands, doc.history.map((state) => state.name));

    // One Undo removes the last layer that arrived (blended of item 2); the rest stays.
    doc.undo();
    assert.deepEqual(doc.tree()[0].layers.map((/** @type {any} */ l) => l.name), ["foreground", "background"]);
    // "Undo whole result": every group of the result in one history state.
    const removed = await host.removeLayers(doc.id, land.groupIds, "Acetate: remove result");
    assert.equal(removed, 2);
    assert.deepEqual(doc.tree(), before);
    assert.equal(doc.history.at(-1).name, "Acetate: remove result");
    doc.undo();
    assert.equal(doc.tree().length, 3, "undoing the removal brings both groups back");
  });
}

test("a second result lands at the top level even when the active layer is inside the first one's group", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 8, height: 6 });
  doc.addPixelLayer("Background", testImage(8, 6, 9));
  const { images, records } = joint();
  const first = landing(host, doc, images, { prompt: "one" });
  first.add(records[0]);
  await first.settle();
  doc.setActive(doc.allLayers().find((l) => l.name === "background"));
  const second = landing(host, doc, images, { prompt: "two", jobId: "j_2" });
  second.add(records[2]);
  await second.settle();
  assert.deepEqual(doc.tree().map((/** @type {any} */ l) => l.name), ["two #1", "one #1", "Background"]);
});

test("a result's group removed by the user: the next layer of that item starts a new group", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 8, height: 6 });
  const { images, records } = joint();
  const land = landing(host, doc, images);
  land.add(records[0]);
  await land.settle();
  await host.removeLayers(doc.id, land.groupIds, "x");
  land.add(records[2]);
  await land.settle();
  assert.deepEqual(doc.tree(), [{ name: "a cat #1", kind: "group", visible: true, layers: [{ name: "foreground", kind: "pixel", visible: true }] }]);
});

test("a failed insertion removes what it created and leaves no history state; later layers are not inserted", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 8, height: 6 });
  doc.addPixelLayer("Background", testImage(8, 6, 9));
  const before = doc.tree();
  const { images, records } = joint();
  world.failOn("imaging.putPixels", 1);
  const land = landing(host, doc, images);
  land.add(records[0]);
  land.add(records[2]);
  await assert.rejects(land.settle(), /injected/);
  assert.deepEqual(doc.tree(), before);
  assert.equal(doc.history.length, 0);
  assert.equal(world.liveImageData.size, 0, "the failed call's image data was disposed too");
  assert.equal(world.callsOf("imaging.putPixels").length, 1, "nothing after the failure");
  assert.ok(world.callsOf("Layer.delete").length >= 1, "created layers deleted explicitly");
});

test("inserting into a closed document is a plain-words error", async () => {
  const { host, world } = setup();
  world.addDocument({ width: 4, height: 4 });
  const insertion = { layer: { ...testImage(1, 1), name: "x", visible: true, left: 0, top: 0 }, rank: [0, 0], siblings: [], group: { id: null, name: "g", rank: [0], siblings: [] } };
  await assert.rejects(host.insertLayer(999, insertion, "x"), /document was closed/);
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
  const insertion = { layer: { ...testImage(1, 1), name: "x", visible: true, left: 0, top: 0 }, rank: [0, 0], siblings: [], group: { id: null, name: "g", rank: [0], siblings: [] } };
  await assert.rejects(host.insertLayer(doc.id, insertion, "x"), (error) => error instanceof HostProblem && /busy/.test(error.message));
});

test("openPsd writes the file to the plugin's temp folder, opens it, and leaves an untitled duplicate (not the temp file) open", async () => {
  const { host, world } = setup();
  const bytes = new Uint8Array([0x38, 0x42, 0x50, 0x53, 0, 1, 2, 3]).buffer; // "8BPS"…
  assert.equal(await host.openPsd(bytes, "acetate-j_1.psd"), true);
  assert.equal(world.opened.length, 1);
  assert.equal(path.basename(world.opened[0]), "acetate-j_1.psd");
  assert.deepEqual(new Uint8Array(fs.readFileSync(world.opened[0])), new Uint8Array(bytes));
  assert.ok(world.callsOf("app.open")[0].inModal);
  assert.deepEqual(world.documents.map((d) => [d.name, d.path]), [["acetate-j_1", ""]], "Ctrl+S cannot save into the temp folder");
  assert.equal(world.active, world.documents[0]);
  // When the duplicate fails, the temp document stays and the panel says "Save As".
  world.failOn("Document.duplicate");
  assert.equal(await host.openPsd(bytes, "acetate-j_2.psd"), false);
});

test("storage: settings in localStorage, the token in secure storage, manifest origins", async () => {
  const { host, fake } = setup();
  assert.equal(host.loadSaved(), null);
  host.save({ settings: { prompt: "x" } });
  assert.deepEqual(host.loadSaved(), { settings: { prompt: "x" } });
  assert.equal(await host.loadToken(), "");
  await host.saveToken("sécret");
  assert.equal(await host.loadToken(), "sécret");
  assert.deepEqual(fake.secrets.get("acetate.token"), new Uint8Array(Buffer.from("sécret", "utf8")), "stored as UTF-8 bytes");
  await host.saveToken("");
  assert.equal(await host.loadToken(), "");
  const manifest = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8"));
  assert.deepEqual(await host.allowedOrigins(), manifest.requiredPermissions.network.domains);
  assert.equal(await host.pluginVersion(), manifest.version);
});

// ---- issue 11: Photoshop's own behaviour, through the fake that follows it ----

/** A canvas-sized mask: `value` inside `rect`, else `outside`. */
function rectMask(doc, rect, value = 255, outside = 0) {
  const mask = new Uint8Array(doc.width * doc.height).fill(outside);
  for (let y = rect.top; y < rect.top + rect.height; y++) mask.fill(value, y * doc.width + rect.left, y * doc.width + rect.left + rect.width);
  return mask;
}

test("reading a pixel layer applies its user and vector masks to alpha: hidden pixels are never sent", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 6, height: 4 });
  const image = testImage(6, 4, 2);
  const userMask = rectMask(doc, { left: 0, top: 0, width: 3, height: 4 }); // left half shown
  const vectorMask = rectMask(doc, { left: 0, top: 0, width: 6, height: 2 }, 255, 128); // bottom half at 50 %
  doc.addPixelLayer("Masked", image, { userMask, vectorMask });
  const read = await host.readDocument({ layer: true });
  for (let p = 0; p < 24; p++) {
    const x = p % 6, y = Math.floor(p / 6);
    const expected = x >= 3 ? 0 : y >= 2 ? Math.round((255 * 128) / 255) : 255;
    assert.equal(read.layer.data[p * 4 + 3], expected, `alpha at ${x},${y}`);
  }
  assert.deepEqual(world.callsOf("imaging.getLayerMask").map((c) => c.args.kind), ["user", "vector"]);
  assert.equal(world.liveImageData.size, 0);
});

test("layer kinds: a group is read through a merged duplicate, text through a rasterised one; nothing is left behind", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 6, height: 4 });
  doc.addPixelLayer("Background", testImage(6, 4, 1), { background: true });
  const group = doc.addGroup("Group");
  const a = testImage(2, 2, 3);
  doc.addPixelLayer("A", { ...a, left: 1, top: 1 }, { parent: group });
  const text = doc.addPixelLayer("Title", { ...testImage(3, 1, 4), left: 2, top: 0 }, { kind: "text", vectorMask: rectMask(doc, { left: 0, top: 0, width: 4, height: 4 }) });
  const before = doc.tree();
  doc.setActive(group);
  const fromGroup = await host.readDocument({ layer: true });
  assert.deepEqual(fromGroup.layer.rect, { left: 1, top: 1, width: 2, height: 2 });
  assert.deepEqual(fromGroup.layer.data, a.data);
  doc.setActive(text);
  const fromText = await host.readDocument({ layer: true });
  assert.deepEqual(fromText.layer.rect, { left: 2, top: 0, width: 2, height: 1 }, "the vector mask (x < 4) is baked in by rasterising");
  assert.deepEqual(fromText.layer.data, cropImage({ data: testImage(3, 1, 4).data, width: 3 }, { left: 0, top: 0, width: 2, height: 1 }));
  assert.deepEqual(doc.tree(), before, "no temporary layer left");
  assert.equal(doc.history.length, 0, "no history state");
  assert.equal(doc.activeLayers[0], text, "the active layer is what it was");
  assert.ok(world.callsOf("Layer.duplicate").length === 2 && world.callsOf("Layer.merge").length === 1 && world.callsOf("Layer.rasterize").length === 1);
  assert.ok(world.callsOf("imaging.getPixels").every((call) => call.args.layerID !== group.id && call.args.layerID !== text.id), "getPixels only on pixel layers");
});

test("the Background layer (3 components from getPixels) reads opaque; an adjustment layer is refused in plain words", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 4, height: 3 });
  const image = testImage(4, 3, 8);
  const background = doc.addPixelLayer("Background", image, { background: true });
  const read = await host.readDocument({ layer: true, composite: true });
  assert.deepEqual(read.layer.data, image.data);
  assert.deepEqual(read.composite.data, image.data);
  assert.ok(world.callsOf("imaging.getPixels").length === 2);
  doc.addPixelLayer("Curves 1", testImage(1, 1), { kind: "curves" });
  await assert.rejects(host.readDocument({ layer: true }), (error) => error instanceof HostProblem && /adjustment layer \(curves\).*no pixels of its own/.test(error.message));
  doc.setActive(background);
});

test("a clipped layer is read on its own (its own pixels and masks, not clipped by its base)", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 4, height: 2 });
  doc.addPixelLayer("Base", { ...testImage(1, 1, 2), left: 0, top: 0 });
  const image = testImage(4, 2, 5);
  doc.addPixelLayer("Clipped", image, { clipped: true });
  const read = await host.readDocument({ layer: true });
  assert.deepEqual(read.layer.data, image.data);
});

for (const [what, arm, pattern] of [
  ["an error", (/** @type {any} */ world) => world.failOn("imaging.getPixels"), /injected/],
  ["the user's cancel", (/** @type {any} */ world) => world.cancelOn("Layer.merge"), /User cancelled/],
]) {
  test(`temporary duplicates leave no layer and no history on ${what}, and the original error is reported`, async () => {
    const { host, world } = setup();
    const doc = world.addDocument({ width: 4, height: 4 });
    const group = doc.addGroup("Group");
    doc.addPixelLayer("A", testImage(4, 4, 3), { parent: group });
    doc.setActive(group);
    const before = doc.tree();
    arm(world);
    await assert.rejects(host.readDocument({ layer: true }), pattern);
    assert.deepEqual(doc.tree(), before);
    assert.equal(doc.history.length, 0);
    assert.equal(world.liveImageData.size, 0);
  });
}

test("a cancel during insertion shows the cancel, not an error from the rollback; nothing is left", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 4, height: 4 });
  doc.addPixelLayer("Background", testImage(4, 4, 9));
  const before = doc.tree();
  world.cancelOn("imaging.putPixels");
  const insertion = { layer: { ...testImage(2, 2), name: "x", visible: true, left: 0, top: 0 }, rank: [0, 0], siblings: [], group: { id: null, name: "g", rank: [0], siblings: [] } };
  await assert.rejects(host.insertLayer(doc.id, insertion, "x"), /User cancelled/);
  assert.deepEqual(doc.tree(), before);
  assert.equal(doc.history.length, 0);
  assert.deepEqual(world.autoResumed, [{ name: "x", commit: false }], "Photoshop rolled the suspension back itself");
});

test("another plugin's modal command: waited for with executeAsModal's timeOut, then reported as busy naming it", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 4, height: 4 });
  world.otherModal = { plugin: "com.other.plugin", until: Date.now() + 100 };
  const read = await host.readDocument({ composite: true });
  assert.equal(read.composite.width, 4, "a short clash is waited out inside executeAsModal");
  assert.ok(world.timeOuts.every((t) => typeof t === "number" && t >= 1000), "every scope passes a timeOut");
  world.otherModal = { plugin: "com.other.plugin", until: Date.now() + 60_000 };
  const insertion = { layer: { ...testImage(1, 1), name: "x", visible: true, left: 0, top: 0 }, rank: [0, 0], siblings: [], group: { id: null, name: "g", rank: [0], siblings: [] } };
  await assert.rejects(host.insertLayer(doc.id, insertion, "x"), (error) => error instanceof HostProblem && /busy.*com\.other\.plugin/.test(error.message));
  assert.equal(world.callsOf("core.executeAsModal").length, 2, "number 9: not retried on top of the timeOut");
  world.otherModal = null;
});

test("the job's document is made active inside the insertion scope (the user switched documents)", async () => {
  const { host, world } = setup();
  const job = world.addDocument({ width: 4, height: 4, name: "Job" });
  world.addDocument({ width: 4, height: 4, name: "Other" });
  const insertion = { layer: { ...testImage(1, 1), name: "x", visible: true, left: 0, top: 0 }, rank: [0, 0], siblings: [], group: { id: null, name: "g", rank: [0], siblings: [] } };
  await host.insertLayer(job.id, insertion, "x");
  assert.equal(job.tree()[0].name, "g");
  assert.ok(world.callsOf("app.activeDocument")[0].inModal);
});

test("Generate twice with batch 2: a flat list of 4 groups above the layer that was active, never nested", async () => {
  const { host, world } = setup();
  const doc = world.addDocument({ width: 8, height: 6 });
  doc.addPixelLayer("Background", testImage(8, 6, 9));
  const middle = doc.addPixelLayer("Middle", testImage(2, 2, 1));
  doc.addPixelLayer("Top", testImage(2, 2, 2));
  doc.setActive(middle);
  const { images, records } = joint();
  /** @type {number[]} */
  let landed = [];
  for (const [prompt, jobId] of [["one", "j_1"], ["two", "j_2"]]) {
    // What the controller remembers before the first insertion (Controller.anchorFor).
    const info = host.activeDocument();
    const top = info.activeLayer.topId;
    const anchor = landed.includes(top) ? landed.at(-1) : top;
    const land = landing(host, doc, images, { prompt, jobId });
    land.anchor = anchor;
    for (const item of [records[2], records[3], records[0], records[1]]) land.add(item); // fg#0, fg#1, bg#0, bg#1
    await land.settle();
    landed = land.groupIds;
  }
  const tree = doc.tree();
  assert.deepEqual(tree.map((/** @type {any} */ l) => l.name), ["Top", "two #2", "two #1", "one #2", "one #1", "Middle", "Background"]);
  for (const group of tree.filter((/** @type {any} */ l) => l.kind === "group")) {
    assert.deepEqual(group.layers.map((/** @type {any} */ l) => [l.name, l.kind]), [["foreground", "pixel"], ["background", "pixel"]], `${group.name} holds layers only`);
  }
});

test("the fake follows Photoshop: a new layer goes inside an active group, a new group becomes active", async () => {
  const { world } = setup();
  const doc = world.addDocument({ width: 4, height: 4 });
  const group = doc.addGroup("G");
  await assert.rejects(doc.createPixelLayer({ name: "outside modal" }), /modal scope/);
  world.inModal = true; // test-only shortcut into "modal"
  try {
    const inner = await doc.createPixelLayer({ name: "inner" });
    assert.equal(inner.parent, group, "inside the active group");
    const wrapper = await doc.createLayerGroup({ name: "W", fromLayers: [inner] });
    assert.equal(doc.activeLayers[0], wrapper, "the new group is active");
    const next = await doc.createPixelLayer({ name: "next" });
    assert.equal(next.parent, wrapper, "so the next layer would nest in it");
  } finally {
    world.inModal = false;
  }
});
