"use strict";
// The plugin's real controller and Photoshop adapter (on the fake host) against the real
// Acetate server on tiny models: what lands in the document, byte for byte.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");

const { createPlugin, decodePngWithPython, skipWithoutPython, startServer, testImage } = require("./helpers.js");
const { AcetateClient } = require("../src/client.js");
const { describeError } = require("../src/messages.js");

const TIMEOUT = { timeout: 600_000 };
/**
 * Settings for a quick job on the tiny models (decode "fast" keeps CPU time low); `values`
 * are the mode's options by name, as the panel's generic controls store them.
 * @param {Record<string, string>} patch @param {Record<string, string>} [values]
 */
function quick(patch, values = {}) {
  return { model: "tiny-sd15", seed: "7", ...patch, values: { steps: "1", decode: "fast", ...values } };
}

/**
 * The layer's pixels in the fake document over a rectangle, as 8-bit bytes.
 * @param {any} doc @param {any} layer @param {{left: number, top: number, width: number, height: number}} rect
 */
function region(doc, layer, rect) {
  const out = new Uint8Array(rect.width * rect.height * 4);
  for (let y = 0; y < rect.height; y++) {
    for (let x = 0; x < rect.width * 4; x++) {
      out[y * rect.width * 4 + x] = layer.pixels[((rect.top + y) * doc.width + rect.left) * 4 + x];
    }
  }
  return out;
}

/** A layer file as the server wrote it, decoded by Pillow (not by the plugin). */
async function serverPng(url, jobId, file) {
  const response = await fetch(`${url}/api/jobs/${jobId}/layers/${file}`);
  assert.equal(response.status, 200);
  return decodePngWithPython(new Uint8Array(await response.arrayBuffer()));
}

/** @param {any} doc @param {string} path "group/layer" */
function findLayer(doc, path) {
  const [groupName, layerName] = path.split("/");
  const group = doc.allLayers().find((l) => l.kind === "group" && l.name === groupName);
  assert.ok(group, `group ${groupName} exists`);
  const layer = group.layers.find((l) => l.name === layerName);
  assert.ok(layer, `layer ${path} exists`);
  return layer;
}

/** Wait until `predicate(state)` holds. */
async function until(store, predicate, timeoutMs = 300_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate(store.state)) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the panel state");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the plugin against the real server", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  /** A finished fg job reused by the bit-depth and PSD tests. */
  let fgJob = "";

  before(async () => {
    server = await startServer();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  test("connect: health, the modes, the tiny models, history, the event stream", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    assert.equal(await plugin.controller.connect(), true);
    const { connection, models, modes } = plugin.store.state;
    const published = await (await fetch(`${server.url}/api/modes`)).json();
    assert.deepEqual(modes.map((m) => m.name), published.modes.map((/** @type {any} */ m) => m.name), "the panel's modes are the server's");
    assert.equal(connection.status, "connected");
    assert.match(connection.message, /Connected to Acetate .* \(cpu\)/);
    assert.deepEqual(models.map((m) => m.name).sort(), ["tiny-qwen-image-layered", "tiny-sd15", "tiny-sdxl"]);
    await until(plugin.store, (state) => state.connection.socket === "open", 30_000);
    plugin.controller.disconnect();
  });

  test("fg, batch 2, into an 8-bit document: byte-exact layers, named and grouped, one undo", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 96, height: 80, name: "Art" });
    doc.addPixelLayer("Background", testImage(96, 80));
    const before = doc.tree();
    plugin.configure(quick({ mode: "fg", prompt: "a red apple", batch: "2" }, { width: "64", height: "64", steps: "2" }));
    /** @type {Set<string>} */
    const seen = new Set();
    plugin.store.subscribe((state) => {
      if (state.job) seen.add(state.job.phase);
      if (state.job?.preview) {
        const head = new Uint8Array(state.job.preview, 0, 2);
        seen.add(head[0] === 0xff && head[1] === 0xd8 ? "preview" : "preview that is not JPEG");
      }
      if (state.job?.step) seen.add("step");
    });

    await plugin.controller.generate();
    assert.deepEqual([...seen].sort(), ["inserting", "preview", "queued", "reading", "started", "step", "uploading"].sort(), "progress and a preview arrived over the WebSocket");

    const { message, history } = plugin.store.state;
    assert.deepEqual(message, { kind: "info", text: "Added 2 layers in 2 groups." });
    assert.equal(history.length, 1);
    assert.equal(history[0].status, "done");
    assert.equal(history[0].seed, 7);
    fgJob = history[0].id;
    assert.deepEqual(doc.tree(), [
      { name: "a red apple #2", kind: "group", visible: true, layers: [{ name: "foreground", kind: "pixel", visible: true }] },
      { name: "a red apple #1", kind: "group", visible: true, layers: [{ name: "foreground", kind: "pixel", visible: true }] },
      ...before,
    ]);
    for (const [group, file] of [["a red apple #1", "foreground.png"], ["a red apple #2", "foreground_1.png"]]) {
      const expected = await serverPng(server.url, fgJob, file);
      assert.deepEqual([expected.width, expected.height], [64, 64]);
      const layer = findLayer(doc, `${group}/foreground`);
      assert.deepEqual(region(doc, layer, { left: 0, top: 0, width: 64, height: 64 }), expected.data, `${group} byte-exact`);
      assert.ok(expected.data.some((v, i) => i % 4 === 3 && v < 255), "the layer has transparency");
    }
    assert.ok(plugin.requests.length > 0);
    assert.ok(plugin.requests.every((request) => !request.inModal), "no request while Photoshop was modal");
    assert.equal(plugin.world.liveImageData.size, 0);
    assert.deepEqual(doc.history.map((state) => state.name).sort(), ["Acetate: foreground (a red apple #1)", "Acetate: foreground (a red apple #2)"], "one named history state per layer");
    // One Undo removes the last inserted layer, with the group created for it in that step.
    const last = /** @type {string} */ (/ (#\d)\)$/.exec(doc.history.at(-1).name)?.[1]);
    doc.undo();
    assert.deepEqual(doc.tree().map((/** @type {any} */ l) => l.name), [`a red apple ${last === "#1" ? "#2" : "#1"}`, ...before.map((l) => l.name)]);
    // "Undo whole result" removes what is left of the result in one history state.
    assert.deepEqual(plugin.store.state.landed?.id, fgJob);
    await plugin.controller.undoResult();
    assert.deepEqual(doc.tree(), before);
    assert.equal(plugin.store.state.landed, null);
    assert.equal(doc.history.at(-1).name, "Acetate: remove result");
    plugin.controller.disconnect();
  });

  for (const bits of [16, 32]) {
    test(`a result inserted into a ${bits}-bit document is converted exactly`, TIMEOUT, async () => {
      assert.ok(fgJob, "needs the fg job");
      const plugin = createPlugin({ serverUrl: server.url });
      const doc = plugin.world.addDocument({ width: 64, height: 64, bits });
      await plugin.controller.connect();
      await plugin.controller.insertFromHistory(fgJob);
      assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
      const expected = await serverPng(server.url, fgJob, "foreground.png");
      const layer = findLayer(doc, "a red apple #1/foreground");
      // 32-bit documents are linear light: colour through the sRGB → linear curve, alpha v / 255.
      const linear = (/** @type {number} */ c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
      const convert = (/** @type {number} */ v, /** @type {number} */ i) =>
        bits === 16 ? Math.round((v * 32768) / 255) : Math.fround(i % 4 === 3 ? v / 255 : linear(v / 255));
      const want = Array.from(expected.data, convert);
      assert.ok(Array.from(layer.pixels).every((v, i) => Math.abs(v - want[i]) <= (bits === 32 ? 1e-6 : 0)));
      plugin.controller.disconnect();
    });
  }

  test("Generate twice with batch 2: a flat list of 4 groups above the layer that was active, never nested", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 64, height: 64 });
    doc.addPixelLayer("Background", testImage(64, 64, 3));
    const middle = doc.addPixelLayer("Middle", { ...testImage(8, 8, 4), left: 4, top: 4 });
    doc.addPixelLayer("Top", { ...testImage(8, 8, 5), left: 40, top: 40 });
    doc.setActive(middle);
    for (const prompt of ["first", "second"]) {
      plugin.configure(quick({ mode: "fg", prompt, batch: "2" }, { width: "64", height: "64" }));
      await plugin.controller.generate();
      assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    }
    const tree = doc.tree();
    assert.deepEqual(tree.map((/** @type {any} */ l) => l.name), ["Top", "second #2", "second #1", "first #2", "first #1", "Middle", "Background"]);
    for (const group of tree.filter((/** @type {any} */ l) => l.kind === "group")) {
      assert.deepEqual(group.layers, [{ name: "foreground", kind: "pixel", visible: true }], `${group.name}: one layer, no nested group`);
    }
    plugin.controller.disconnect();
  });

  test("img2img with a group as the source: read through a merged duplicate that leaves nothing behind", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 64, height: 64 });
    doc.addPixelLayer("Background", testImage(64, 64, 3), { background: true });
    const group = doc.addGroup("Sticker group");
    doc.addPixelLayer("Sticker", { ...testImage(40, 24, 6), left: 12, top: 20 }, { parent: group, userMask: new Uint8Array(64 * 64).fill(255) });
    doc.setActive(group);
    const before = doc.tree();
    plugin.configure(quick({ mode: "img2img", prompt: "a sticker" }, { strength: "0.5" }));
    await plugin.controller.generate();
    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    const jobId = plugin.store.state.history[0].id;
    const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
    assert.deepEqual([record.result.canvas.width, record.result.canvas.height], [40, 24], "the group's merged bounds went up");
    assert.deepEqual(doc.tree().slice(1), before, "no temporary duplicate left");
    assert.ok(doc.history.every((state) => state.name.startsWith("Acetate: ")), "no history state from reading");
    assert.equal(plugin.world.liveImageData.size, 0);
    plugin.controller.disconnect();
  });

  test("a document over the server's image limits is refused with the numbers before any pixel is read", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    plugin.world.addDocument({ width: 8200, height: 4 });
    plugin.configure(quick({ mode: "layer_on_artwork", prompt: "x" }));
    await plugin.controller.generate();
    assert.equal(plugin.store.state.message?.kind, "error");
    assert.match(plugin.store.state.message.text, /8200×4 px .*up to 8192 px a side and 64 megapixels/);
    assert.equal(plugin.world.callsOf("imaging.getPixels").length, 0);
    plugin.controller.disconnect();
  });

  test("the history comes back from the server for the same client id", TIMEOUT, async () => {
    assert.ok(fgJob, "needs the fg job");
    const first = createPlugin({ serverUrl: server.url });
    const clientId = (await (await fetch(`${server.url}/api/jobs/${fgJob}`)).json()).result.parameters.client_id;
    first.configure({ clientId });
    await first.controller.connect();
    const entry = first.store.state.history.find((item) => item.id === fgJob);
    assert.ok(entry, "the job is listed");
    assert.deepEqual([entry.status, entry.mode, entry.prompt, entry.seed, entry.layers], ["done", "fg", "a red apple", 7, 2]);
    first.controller.disconnect();
    const other = createPlugin({ serverUrl: server.url });
    await other.controller.connect();
    assert.equal(other.store.state.history.find((item) => item.id === fgJob), undefined, "another client id sees none of it");
    other.controller.disconnect();
  });

  test("upscale: the enlarged layer opens as a new document", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 80, height: 80 });
    doc.addPixelLayer("Small", { ...testImage(32, 24, 6), left: 10, top: 12 });
    plugin.configure(quick({ mode: "upscale", prompt: "" }, { scale: "2", strength: "0.5", steps: "2" }));
    await plugin.controller.generate();
    assert.deepEqual(plugin.store.state.message, { kind: "info", text: "Upscale the active layer: the result opened as a new document." });
    const jobId = plugin.store.state.history[0].id;
    const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
    assert.deepEqual(record.result.canvas, { width: 64, height: 48 });
    assert.equal(plugin.world.opened.length, 1);
    assert.equal(doc.tree().length, 1, "the source document is unchanged");
    plugin.controller.disconnect();
  });

  test("open the job's layered PSD as a new document", TIMEOUT, async () => {
    assert.ok(fgJob, "needs the fg job");
    const plugin = createPlugin({ serverUrl: server.url });
    await plugin.controller.connect();
    await plugin.controller.openPsd(fgJob);
    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    assert.equal(plugin.world.opened.length, 1);
    assert.match(plugin.world.opened[0], new RegExp(`acetate-${fgJob}\\.psd$`));
    plugin.controller.disconnect();
  });

  test("layer on artwork: the canvas and the selection go up, the layer lands at the reported offset", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 128, height: 96 });
    doc.addPixelLayer("Background", testImage(128, 96, 2));
    const selection = { left: 40, top: 24, width: 48, height: 40 };
    doc.select(selection);
    plugin.configure(quick({ mode: "layer_on_artwork", prompt: "a small bird" }));

    await plugin.controller.generate();

    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    const jobId = plugin.store.state.history[0].id;
    const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
    assert.deepEqual(record.result.parameters.selection_bounds, selection);
    assert.deepEqual(record.result.canvas, { width: 128, height: 96 });
    const [placed] = record.result.layers;
    assert.ok(placed.left > 0 && placed.top > 0, "placed away from the origin");
    const expected = await serverPng(server.url, jobId, placed.file);
    const layer = findLayer(doc, "a small bird #1/foreground");
    const rect = { left: placed.left, top: placed.top, width: placed.width, height: placed.height };
    assert.deepEqual(region(doc, layer, rect), expected.data);
    // Nothing outside the reported rectangle.
    const outside = layer.pixels.filter((_, i) => {
      const p = i >> 2, x = p % 128, y = Math.floor(p / 128);
      return !(x >= rect.left && x < rect.left + rect.width && y >= rect.top && y < rect.top + rect.height);
    });
    assert.ok(outside.every((v) => v === 0));
    plugin.controller.disconnect();
  });

  test("img2img on a layer away from the origin: the result goes back over that layer", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 100, height: 90 });
    doc.addPixelLayer("Background", testImage(100, 90, 3));
    doc.addPixelLayer("Sticker", { ...testImage(40, 30, 4), left: 30, top: 20 });
    plugin.configure(quick({ mode: "img2img", prompt: "a sticker" }, { steps: "2", strength: "0.5" }));

    await plugin.controller.generate();

    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    const jobId = plugin.store.state.history[0].id;
    const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
    assert.deepEqual(record.result.canvas, { width: 40, height: 30 }, "the layer's own frame went up");
    const [placed] = record.result.layers;
    const expected = await serverPng(server.url, jobId, placed.file);
    const layer = findLayer(doc, "a sticker #1/foreground");
    const rect = { left: 30 + placed.left, top: 20 + placed.top, width: placed.width, height: placed.height };
    assert.deepEqual(region(doc, layer, rect), expected.data);
    plugin.controller.disconnect();
  });

  test("cancel stops the running job and inserts nothing", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    const doc = plugin.world.addDocument({ width: 64, height: 64 });
    plugin.configure(quick({ mode: "fg", prompt: "slow" }, { width: "64", height: "64", steps: "150" }));
    const running = plugin.controller.generate();
    await until(plugin.store, (state) => state.job?.phase === "started" && state.job.step >= 1);
    await plugin.controller.cancel();
    await running;
    assert.deepEqual(plugin.store.state.message, { kind: "info", text: "Cancelled." });
    assert.equal(plugin.store.state.history[0].status, "cancelled");
    assert.deepEqual(doc.tree(), []);
    const record = await (await fetch(`${server.url}/api/jobs/${plugin.store.state.history[0].id}`)).json();
    assert.equal(record.status, "cancelled");
    plugin.controller.disconnect();
  });

  test("a download whose size disagrees with the record: plain error, nothing left in the document", TIMEOUT, async () => {
    // The real server, with each raw layer download cut short on its way to the plugin.
    const truncating = async (/** @type {string} */ url, /** @type {any} */ init) => {
      const response = await fetch(url, init);
      if (!url.includes("format=rgba")) return response;
      const body = new Uint8Array(await response.arrayBuffer());
      return new Response(body.subarray(0, body.length - 4), { status: response.status, headers: response.headers });
    };
    const plugin = createPlugin({ serverUrl: server.url, fetch: truncating });
    const doc = plugin.world.addDocument({ width: 64, height: 64 });
    await plugin.controller.connect();
    await plugin.controller.insertFromHistory(fgJob);
    assert.equal(plugin.store.state.message?.kind, "error");
    assert.match(plugin.store.state.message.text, /unexpected .*do not make a 64×64 RGBA image/);
    assert.deepEqual(doc.tree(), []);
    assert.equal(plugin.world.callsOf("core.executeAsModal").length, 0);
    plugin.controller.disconnect();
  });

  test("a size that is not a multiple of 64: refused by the panel, and by the server naming the field", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    plugin.world.addDocument({ width: 64, height: 64 });
    plugin.configure(quick({ mode: "fg", prompt: "x" }, { width: "100" }));
    await plugin.controller.generate();
    assert.deepEqual(plugin.store.state.message, { kind: "error", text: "Width: must be a multiple of 64 (try 128)" });
    assert.equal(plugin.requests.filter((r) => r.url.endsWith("/api/jobs")).length, 0);
    plugin.controller.disconnect();

    const client = new AcetateClient({ baseUrl: server.url, fetch });
    const error = await client.submit({ mode: "fg", prompt: "x", width: 100 }, {}).catch((e) => e);
    assert.equal(error.status, 400);
    assert.equal(error.field, "width");
    assert.match(describeError(error, { serverUrl: server.url, allowed: [], labels: { width: "Width" } }), /^Width: .*multiple of 64/);
  });

  test("raw uploads with a wrong declared size are refused by the server, naming the field", TIMEOUT, async () => {
    const client = new AcetateClient({ baseUrl: server.url, fetch });
    const image = testImage(8, 8);
    // Declares 8×8 but sends 7×8 worth of bytes (the client's own check is bypassed on purpose).
    const created = await client.submit({ mode: "img2img", prompt: "x" }, { image: { data: image.data, width: 8, height: 8 } });
    assert.match(created.id, /^j_/, "a correct raw upload is accepted");
    await client.cancel(created.id);
    const bad = await client
      .json("POST", "/api/jobs", {
        body: require("../src/client.js").encodeMultipart(
          [
            { name: "request", data: JSON.stringify({ mode: "img2img", prompt: "x" }), contentType: "application/json" },
            { name: "image", data: image.data.subarray(0, 7 * 8 * 4), contentType: "application/octet-stream" },
            { name: "image_width", data: "8" },
            { name: "image_height", data: "8" },
          ],
          "b0undary",
        ),
        contentType: "multipart/form-data; boundary=b0undary",
      })
      .catch((e) => e);
    assert.equal(bad.status, 400);
    assert.equal(bad.field, "image");
  });
});
