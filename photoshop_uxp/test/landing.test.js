"use strict";
// Without a server: layers stacked and looked up by `key` (never by display name), `only_without`
// in a batch item's expected layers, `region` list items, and partial results (error/cancelled
// with a `result`) kept and reported — on the fake Photoshop with the real adapter.
const test = require("node:test");
const assert = require("node:assert/strict");

const { builtinModes, createPlugin } = require("./helpers.js");
const { createFakePhotoshop } = require("./fakes/photoshop.js");
const { createFakeUxp } = require("./fakes/uxp.js");
const { layerTitles } = require("../src/controller.js");
const { Landing } = require("../src/landing.js");
const { finalEvent } = require("../src/jobs.js");
const { expectedLayers, layerRank, layoutList, omittableInputs } = require("../src/modes.js");
const { createHost, paintedMask } = require("../src/photoshop.js");
const { ProtocolError, layerKey, parseEvent, parseModes } = require("../src/protocol.js");
const { buildParameters, defaultSettings } = require("../src/settings.js");
const { recordFinal } = require("../src/state.js");

const MODES = parseModes(builtinModes());
const SCENE = /** @type {import("../src/protocol").ModeInfo} */ (MODES.find((mode) => mode.name === "scene"));

/** A layer record; `key` differs from `name` for titled layers. */
function layer(/** @type {string} */ key, /** @type {string} */ name, extra = {}) {
  return { key, name, batch_index: 0, file: `${key}.png`, left: 2, top: 1, width: 4, height: 3, visible: key !== "blended", ...extra };
}

/** A client that serves every layer as a 4×3 patch of one value. */
const patchClient = /** @type {any} */ ({
  layerPixels: async (/** @type {string} */ _job, /** @type {string} */ file) => ({
    data: new Uint8Array(4 * 3 * 4).fill(file.length),
    width: 4,
    height: 3,
    left: 2,
    top: 1,
  }),
});

test("scene declarations: the region list, the background it can generate, expected layers by only_without", () => {
  const layout = layoutList(SCENE);
  assert.deepEqual([layout?.list.field, layout?.region, layout?.title], ["objects", "region", "prompt"]);
  assert.deepEqual(omittableInputs(SCENE).map(({ input, layer }) => [input.field, layer.name]), [["bg", "background"]]);
  assert.deepEqual(expectedLayers(SCENE, { objects: 2 }, ["bg"]), ["object_0", "object_1", "blended"], "bg sent: no background, object_0 is lowest");
  assert.deepEqual(expectedLayers(SCENE, { objects: 2 }, []), ["background", "object_0", "object_1", "blended"]);
  assert.equal(layoutList(MODES.find((mode) => mode.name === "fg") ?? null), null);
  assert.deepEqual(layerTitles(SCENE, { mode: "scene", prompt: "p", objects: [{ prompt: " a crow " }, { prompt: "" }] }), { object_0: "a crow" });
});

test("a record is looked up by its key: object_1 named after its prompt stacks as object_1", () => {
  assert.equal(layerKey(/** @type {any} */ (layer("object_1", "a lantern"))), "object_1");
  assert.equal(layerKey(/** @type {any} */ ({ name: "foreground" })), "foreground");
  // Ranked by the key; the display name alone would rank as undeclared (on top).
  assert.deepEqual(layerRank(SCENE, "object_1"), [1, 1]);
  assert.deepEqual(layerRank(SCENE, "a lantern"), [3, 0]);
  const parsed = parseEvent(JSON.stringify({ type: "layer_ready", job_id: "j", layer: layer("object_0", "a crow") }));
  assert.equal(parsed.type === "layer_ready" && parsed.layer.key, "object_0");
  assert.throws(() => parseEvent(JSON.stringify({ type: "layer_ready", job_id: "j", layer: { ...layer("a", "b"), key: 3 } })), ProtocolError);
});

test("Landing stacks by key whatever the names and arrival order; declared visibility by key", async () => {
  const { photoshop, world } = createFakePhotoshop();
  const { uxp } = createFakeUxp({ pluginDir: __dirname, tempDir: __dirname, network: { domains: [] } });
  const host = createHost({ photoshop, uxp });
  const doc = world.addDocument({ width: 8, height: 6 });
  doc.addPixelLayer("Background", { data: new Uint8Array(8 * 6 * 4).fill(255), width: 8, height: 6 });
  const info = /** @type {any} */ (host.activeDocument());
  const landing = new Landing({
    client: patchClient,
    host,
    mode: SCENE,
    modeName: "scene",
    document: info,
    offset: { left: 0, top: 0 },
    prompt: "a street",
    jobId: "j_1",
    expected: expectedLayers(SCENE, { objects: 3 }, ["bg"]),
  });
  // Names that sort the other way round, arriving top first; blended without `visible`.
  const { visible: _ignored, ...blended } = layer("blended", "blended");
  landing.add(/** @type {any} */ (blended));
  landing.add(/** @type {any} */ (layer("object_2", "aardvark")));
  landing.add(/** @type {any} */ (layer("object_0", "zebra")));
  landing.add(/** @type {any} */ (layer("object_1", "moose")));
  await landing.settle();
  const [group] = doc.tree();
  assert.equal(group.name, "a street #1");
  assert.deepEqual(group.layers.map((/** @type {any} */ item) => [item.name, item.visible]), [
    ["blended", false],
    ["aardvark", true],
    ["moose", true],
    ["zebra", true],
  ]);
  // The same file again (e.g. from the final record) is not inserted twice.
  await landing.finish(/** @type {any} */ ({ id: "j_1", layers: [layer("object_0", "zebra")], parameters: { batch: 1 } }));
  assert.equal(landing.inserted, 4);
});

test("partial results: parsed on error/cancelled events and job records, counted in the history", () => {
  const partial = { id: "j_1", mode: "scene", model: "tiny-sd15", parameters: { batch: 1 }, canvas: { width: 8, height: 6 }, layers: [layer("object_0", "a crow")] };
  const error = parseEvent(JSON.stringify({ type: "error", job_id: "j_1", code: "internal_error", message: "boom", field: "objects[1]", result: partial }));
  assert.equal(error.type === "error" && error.result?.layers[0].key, "object_0");
  const cancelled = parseEvent(JSON.stringify({ type: "cancelled", job_id: "j_1", result: null }));
  assert.equal(cancelled.type === "cancelled" && cancelled.result, null);
  assert.throws(() => parseEvent(JSON.stringify({ type: "cancelled", job_id: "j_1", result: { id: 1 } })), ProtocolError);
  const polled = finalEvent(/** @type {any} */ ({ id: "j_1", status: "error", error: { code: "internal_error", message: "boom", field: "objects[1]" }, result: partial }));
  assert.deepEqual(polled, { type: "error", job_id: "j_1", code: "internal_error", message: "boom", field: "objects[1]", result: partial });
  assert.deepEqual(finalEvent(/** @type {any} */ ({ id: "j_1", status: "cancelled", result: null })), { type: "cancelled", job_id: "j_1", result: null });
  const history = recordFinal([{ id: "j_1", mode: "scene", prompt: "p", status: "started", created: 1, offset: { left: 0, top: 0 } }], "j_1", /** @type {any} */ (polled));
  assert.deepEqual([history[0].status, history[0].layers, history[0].error], ["error", 1, "boom"]);
});

test("region items: a box typed into a row; a list filled from the layer group is not read from rows", () => {
  const base = { ...defaultSettings(), prompt: "a street" };
  const rows = buildParameters(
    { ...base, values: { "from:objects": "rows" }, lists: { objects: [{ prompt: "a crow", region: "40, 60 200 160" }] } },
    SCENE,
  );
  assert.deepEqual(rows.objects, [{ prompt: "a crow", region: { left: 40, top: 60, width: 200, height: 160 } }]);
  assert.throws(
    () => buildParameters({ ...base, values: { "from:objects": "rows" }, lists: { objects: [{ prompt: "x", region: "40, 60" }] } }, SCENE),
    /Objects 1, Region: "40, 60" is not a box/,
  );
  const fromGroup = buildParameters({ ...base, lists: { objects: [{ region: "nonsense" }] } }, SCENE);
  assert.equal(fromGroup.objects, undefined, "filled from the layout group when the document is read");
  assert.deepEqual(paintedMask({ data: Uint8Array.from([9, 9, 9, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 255]), width: 2, height: 2, rect: { left: 10, top: 20, width: 2, height: 2 } }), {
    data: Uint8Array.from([255, 0, 0, 255]),
    width: 2,
    height: 2,
    rect: { left: 10, top: 20, width: 2, height: 2 },
  });
});

/**
 * A scripted server for the controller: connect, one job that ends with `final` (polled over
 * HTTP: the event socket never opens), its finished layers downloadable as 4×3 patches.
 * @param {any} final the job record's status/error/result
 */
function scriptedServer(final) {
  const json = (/** @type {any} */ body) => ({ status: 200, ok: true, headers: { get: () => null }, arrayBuffer: async () => new TextEncoder().encode(JSON.stringify(body)).buffer, text: async () => JSON.stringify(body) });
  return async (/** @type {string} */ url, /** @type {any} */ init = {}) => {
    const path = url.replace(/^http:\/\/[^/]+/, "");
    if (path === "/api/health") return json({ version: "0.1.0", api_version: 2, device: "cpu", queue_length: 0, running: null });
    if (path === "/api/modes") return json(builtinModes());
    if (path === "/api/models") return json({ bases: [{ name: "tiny-sd15", family: "sd15" }] });
    if (path.startsWith("/api/jobs?client_id=")) return json({ jobs: [] });
    if (path === "/api/ws-ticket") return json({ ticket: "t" });
    if (path === "/api/jobs" && init.method === "POST") return json({ id: "j_1", position: 0 });
    if (path === "/api/jobs/j_1") return json({ id: "j_1", position: null, ...final });
    const file = /\/layers\/([^?]+)\?format=rgba$/.exec(path)?.[1];
    const placed = final.result?.layers.find((/** @type {any} */ item) => item.file === file);
    if (placed) {
      const headers = { "x-acetate-width": "4", "x-acetate-height": "3", "x-acetate-left": String(placed.left), "x-acetate-top": String(placed.top) };
      return { status: 200, ok: true, headers: { get: (/** @type {string} */ name) => headers[/** @type {keyof typeof headers} */ (name.toLowerCase())] ?? null }, arrayBuffer: async () => new Uint8Array(48).fill(200).buffer, text: async () => "" };
    }
    return { status: 404, ok: false, headers: { get: () => null }, arrayBuffer: async () => new ArrayBuffer(0), text: async () => "" };
  };
}

/** A WebSocket that never connects (events then come by polling). */
class DeadSocket {
  constructor() {
    this.readyState = 0;
    /** @type {any} */ this.onopen = null;
    /** @type {any} */ this.onclose = null;
    /** @type {any} */ this.onerror = null;
    /** @type {any} */ this.onmessage = null;
  }
  send() {}
  close() {}
}

/** A scene job on a document with a layout group of three objects, ending with `final`. */
async function sceneJob(/** @type {any} */ final) {
  const plugin = createPlugin({ serverUrl: "http://127.0.0.1:7865", fetch: scriptedServer(final), eventTimeoutMs: 50 });
  plugin.controller.WebSocket = /** @type {any} */ (DeadSocket);
  const doc = plugin.world.addDocument({ width: 8, height: 6 });
  doc.addPixelLayer("Background", { data: new Uint8Array(8 * 6 * 4).fill(255), width: 8, height: 6 }, { background: true });
  const group = doc.addGroup("Layout");
  for (const [i, name] of ["a crow", "a lantern", "a moon"].entries()) {
    const data = new Uint8Array(8 * 6 * 4);
    data.fill(255, (i * 8 + i) * 4, (i * 8 + i + 3) * 4);
    doc.addPixelLayer(name, { data, width: 8, height: 6 }, { parent: group });
  }
  doc.setActive(group);
  plugin.configure({ mode: "scene", prompt: "a street", model: "tiny-sd15" });
  await plugin.controller.generate();
  return { plugin, doc, group };
}

const PARTIAL = {
  id: "j_1",
  mode: "scene",
  model: "tiny-sd15",
  parameters: { batch: 1, objects: [{ prompt: "a crow" }, { prompt: "a lantern" }, { prompt: "a moon" }] },
  canvas: { width: 8, height: 6 },
  layers: [layer("object_0", "a crow"), layer("object_1", "a lantern")],
};

test("an error after two objects: both are inserted (none came by layer_ready), named, stacked, and the message says so", async () => {
  const { plugin, doc, group } = await sceneJob({
    status: "error",
    error: { code: "internal_error", message: "a bug in the last object", field: "objects[2]" },
    result: PARTIAL,
  });
  const { message, history, landed } = plugin.store.state;
  assert.equal(message?.kind, "error");
  assert.match(message.text, /a bug in the last object/);
  assert.match(message.text, /Kept the 2 layers finished before it stopped \(not made: a moon, blended\)\. The layout group is hidden\.$/);
  assert.deepEqual(doc.tree()[0].layers.map((/** @type {any} */ item) => item.name), ["a lantern", "a crow"]);
  assert.equal(group.visible, false, "the layout group is hidden with the first inserted layer");
  assert.deepEqual([history[0].status, history[0].layers], ["error", 2]);
  assert.ok(landed && landed.hidden?.includes(group.id));
  await plugin.controller.undoResult();
  assert.deepEqual(doc.tree().map((/** @type {any} */ item) => [item.name, item.visible]), [["Layout", true], ["Background", true]]);
  plugin.controller.disconnect();
});

test("cancelled with a partial result keeps it; cancelled without one says Cancelled and inserts nothing", async () => {
  const kept = await sceneJob({ status: "cancelled", result: { ...PARTIAL, layers: [layer("object_0", "a crow")] } });
  assert.deepEqual(kept.plugin.store.state.message, {
    kind: "info",
    text: "Cancelled. Kept the 1 layer finished before it stopped (not made: a lantern, a moon, blended). The layout group is hidden.",
  });
  assert.deepEqual(kept.doc.tree()[0].layers.map((/** @type {any} */ item) => item.name), ["a crow"]);
  const none = await sceneJob({ status: "cancelled", result: null });
  assert.deepEqual(none.plugin.store.state.message, { kind: "info", text: "Cancelled." });
  assert.deepEqual(none.doc.tree().map((/** @type {any} */ item) => [item.name, item.visible]), [["Layout", true], ["Background", true]]);
  kept.plugin.controller.disconnect();
  none.plugin.controller.disconnect();
});
