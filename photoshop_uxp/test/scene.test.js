"use strict";
// The Scene flow end to end: the plugin's real controller and Photoshop adapter on the fake
// host, against the real Acetate server on tiny models. A layout group of three overlapping
// objects becomes a scene request (names → prompts, painted pixels → mask regions, stacking →
// z-order, the canvas without the group → bg); the result lands as a new group.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");

const { createPlugin, decodePngWithPython, skipWithoutPython, startServer, testImage } = require("./helpers.js");

const TIMEOUT = { timeout: 600_000 };
const [W, H] = [192, 128];

/** A shape painted in one colour on a transparent layer, as a canvas-sized RGBA image. */
function painted(/** @type {(x: number, y: number) => boolean} */ inside, /** @type {number[]} */ rgb) {
  const data = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (inside(x, y)) data.set([...rgb, 255], (y * W + x) * 4);
    }
  }
  return { data, width: W, height: H };
}

/** Three overlapping objects, bottom → top, and the canvas-sized mask of each. */
const OBJECTS = [
  { name: "a crow", inside: (/** @type {number} */ x, /** @type {number} */ y) => ((x - 40) / 32) ** 2 + ((y - 34) / 24) ** 2 <= 1, rgb: [20, 20, 20] },
  { name: "a lantern", inside: (/** @type {number} */ x, /** @type {number} */ y) => x >= 60 && x < 110 && y >= 40 && y < 100, rgb: [240, 200, 40] },
  { name: "a moon", inside: (/** @type {number} */ x, /** @type {number} */ y) => (x - 112) ** 2 + (y - 50) ** 2 <= 30 ** 2, rgb: [230, 230, 250] },
];

/** The bounds of a predicate's pixels. */
function bounds(/** @type {(x: number, y: number) => boolean} */ inside) {
  let [left, top, right, bottom] = [W, H, -1, -1];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (inside(x, y)) [left, top, right, bottom] = [Math.min(left, x), Math.min(top, y), Math.max(right, x), Math.max(bottom, y)];
    }
  }
  return { left, top, width: right - left + 1, height: bottom - top + 1 };
}

/** The multipart parts of a request body (name → bytes), parsed independently of the plugin. */
function parts(/** @type {Uint8Array} */ body) {
  const text = Buffer.from(body).toString("latin1");
  const boundary = text.slice(2, text.indexOf("\r\n"));
  /** @type {Record<string, Buffer>} */
  const out = {};
  for (const chunk of text.split(`--${boundary}`).slice(1, -1)) {
    const headEnd = chunk.indexOf("\r\n\r\n");
    const name = /name="([^"]+)"/.exec(chunk.slice(0, headEnd))?.[1] ?? "";
    out[name] = Buffer.from(chunk.slice(headEnd + 4, chunk.length - 2), "latin1");
  }
  return out;
}

/**
 * A document with a Background and a layout group "Layout" of the three objects on top, the
 * group active; and the plugin, its POST /api/jobs bodies captured.
 * @param {string} url
 */
function sceneDocument(url) {
  /** @type {Uint8Array[]} */
  const posted = [];
  const capture = async (/** @type {string} */ target, /** @type {any} */ init) => {
    if (init?.method === "POST" && target.endsWith("/api/jobs")) posted.push(new Uint8Array(init.body));
    return fetch(target, init);
  };
  const plugin = createPlugin({ serverUrl: url, fetch: capture });
  const doc = plugin.world.addDocument({ width: W, height: H, name: "Street" });
  const background = doc.addPixelLayer("Background", testImage(W, H, 9), { background: true });
  const group = doc.addGroup("Layout");
  const children = OBJECTS.map((object) => doc.addPixelLayer(object.name, painted(object.inside, object.rgb), { parent: group }));
  doc.setActive(group);
  return { plugin, doc, background, group, children, posted };
}

/** @param {any} layer */
const pixelsOf = (layer) => Uint8Array.from(layer.pixels);

describe("Scene: a layout group against the real server", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  for (const model of ["tiny-sd15", "tiny-sdxl"]) {
    test(`${model}: three overlapping objects land in their regions, named and ordered, the layout hidden`, TIMEOUT, async () => {
      const { plugin, doc, background, group, children, posted } = sceneDocument(server.url);
      const backgroundBefore = pixelsOf(background);
      const childrenBefore = children.map(pixelsOf);
      plugin.configure({ mode: "scene", prompt: "a quiet street", model, seed: "7", values: { steps: "1", decode: "fast" } });

      await plugin.controller.generate();

      const { message, history } = plugin.store.state;
      assert.equal(message?.kind, "info", message?.text);
      assert.match(message.text, /^Added 4 layers in 1 group\. .*layout group is hidden/);
      const jobId = history[0].id;
      const record = await (await fetch(`${server.url}/api/jobs/${jobId}`)).json();
      assert.equal(record.status, "done");

      // The request: objects bottom → top, named after the layers, regions at the masks' corners,
      // each mask cropped to its painted bounds; bg = the canvas without the layout group.
      const sent = parts(posted[0]);
      const request = JSON.parse(sent.request.toString("utf8"));
      assert.deepEqual(request.objects.map((/** @type {any} */ item) => item.prompt), OBJECTS.map((object) => object.name));
      OBJECTS.forEach((object, i) => {
        const box = bounds(object.inside);
        assert.deepEqual(request.objects[i].region, { left: box.left, top: box.top }, `${object.name}: region corner`);
        assert.deepEqual([Number(sent[`objects.${i}.mask_width`]), Number(sent[`objects.${i}.mask_height`])], [box.width, box.height]);
        const mask = sent[`objects.${i}.mask`];
        assert.equal(mask.length, box.width * box.height);
        for (let y = 0; y < box.height; y++) {
          for (let x = 0; x < box.width; x++) {
            assert.equal(mask[y * box.width + x], object.inside(box.left + x, box.top + y) ? 255 : 0);
          }
        }
      });
      assert.deepEqual([Number(sent.bg_width), Number(sent.bg_height)], [W, H]);
      assert.deepEqual(new Uint8Array(sent.bg), testImage(W, H, 9).data, "bg is the Background alone: the layout group left out");

      // The document: a new group above the layout, layers named after the prompts in z-order,
      // blended hidden; the layout group hidden, not deleted, its layers untouched.
      const tree = doc.tree();
      assert.deepEqual(tree.map((/** @type {any} */ layer) => [layer.name, layer.visible]), [
        ["a quiet street #1", true],
        ["Layout", false],
        ["Background", true],
      ]);
      assert.deepEqual(
        tree[0].layers.map((/** @type {any} */ layer) => [layer.name, layer.kind, layer.visible]),
        [["blended", "pixel", false], ["a moon", "pixel", true], ["a lantern", "pixel", true], ["a crow", "pixel", true]],
      );
      assert.deepEqual(tree[1].layers.map((/** @type {any} */ layer) => layer.name), ["a moon", "a lantern", "a crow"]);
      assert.equal(group.visible, false);
      children.forEach((child, i) => assert.deepEqual(pixelsOf(child), childrenBefore[i], `${child.name} unchanged`));
      assert.deepEqual(pixelsOf(background), backgroundBefore, "the background layer is unchanged");

      // Each object: byte-exact at the reported offset, nothing outside its rectangle, alpha 0
      // outside its region.
      const resultGroup = doc.allLayers().find((/** @type {any} */ layer) => layer.name === "a quiet street #1");
      const objects = record.result.layers.filter((/** @type {any} */ layer) => /^object_\d+$/.test(layer.key ?? ""));
      assert.deepEqual(objects.map((/** @type {any} */ layer) => [layer.key, layer.name, layer.file]), [
        ["object_0", "a crow", "object_0.png"],
        ["object_1", "a lantern", "object_1.png"],
        ["object_2", "a moon", "object_2.png"],
      ]);
      let painted = 0;
      for (const [i, placed] of objects.entries()) {
        const layer = resultGroup.layers.find((/** @type {any} */ item) => item.name === OBJECTS[i].name);
        const png = decodePngWithPython(new Uint8Array(await (await fetch(`${server.url}/api/jobs/${jobId}/layers/${placed.file}`)).arrayBuffer()));
        assert.deepEqual([png.width, png.height], [placed.width, placed.height]);
        const box = bounds(OBJECTS[i].inside);
        assert.ok(
          placed.left >= box.left && placed.top >= box.top && placed.left + placed.width <= box.left + box.width && placed.top + placed.height <= box.top + box.height,
          `${placed.name}: ${placed.width}×${placed.height} at ${placed.left},${placed.top} lies in its region`,
        );
        const pixels = pixelsOf(layer);
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            const at = (y * W + x) * 4;
            const inRect = x >= placed.left && x < placed.left + placed.width && y >= placed.top && y < placed.top + placed.height;
            const want = inRect ? png.data.subarray(((y - placed.top) * placed.width + (x - placed.left)) * 4, ((y - placed.top) * placed.width + (x - placed.left)) * 4 + 4) : [0, 0, 0, 0];
            assert.deepEqual(Array.from(pixels.subarray(at, at + 4)), Array.from(want), `${placed.name} at ${x},${y}`);
            if (!OBJECTS[i].inside(x, y)) assert.equal(pixels[at + 3], 0, `${placed.name}: alpha 0 outside its region at ${x},${y}`);
            else if (pixels[at + 3] > 0) painted += 1;
          }
        }
      }
      assert.ok(painted > 0, "the objects have visible pixels");

      // History: one state per inserted layer, none from reading (the hide was rolled back).
      assert.deepEqual(doc.history.map((/** @type {any} */ state) => state.name), [
        "Acetate: a crow (a quiet street #1)",
        "Acetate: a lantern (a quiet street #1)",
        "Acetate: a moon (a quiet street #1)",
        "Acetate: blended (a quiet street #1)",
      ], "in arrival order: each object as it finished, then blended");
      assert.ok(plugin.world.callsOf("hostControl.resumeHistory").some((call) => call.args.commit === false), "the read's suspension was rolled back");
      assert.equal(plugin.world.liveImageData.size, 0);
      assert.ok(plugin.requests.every((request) => !request.inModal), "no request while Photoshop was modal");

      // Undo whole result: the result's group goes, the layout group shows again, in one state.
      await plugin.controller.undoResult();
      assert.deepEqual(doc.tree().map((/** @type {any} */ layer) => [layer.name, layer.visible]), [["Layout", true], ["Background", true]]);
      assert.equal(doc.history.at(-1).name, "Acetate: remove result");
      plugin.controller.disconnect();
    });
  }

  test("a generated background: no bg is sent, the background layer lands at the bottom of the group", TIMEOUT, async () => {
    const { plugin, doc, background, posted } = sceneDocument(server.url);
    const backgroundBefore = pixelsOf(background);
    plugin.configure({
      mode: "scene",
      prompt: "a quiet street",
      model: "tiny-sd15",
      seed: "8",
      values: { steps: "1", decode: "fast", "without:bg": "true", "layer_prompts.background": "a night sky" },
    });

    await plugin.controller.generate();

    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    const sent = parts(posted[0]);
    assert.ok(!("bg" in sent), "no bg part");
    const request = JSON.parse(sent.request.toString("utf8"));
    assert.deepEqual([request.width, request.height], [W, H], "generated at the document's size");
    assert.deepEqual(request.layer_prompts, { background: "a night sky" });
    const tree = doc.tree();
    assert.deepEqual(tree[0].layers.map((/** @type {any} */ layer) => layer.name), ["blended", "a moon", "a lantern", "a crow", "background"]);
    assert.equal(tree[1].visible, false);
    assert.deepEqual(pixelsOf(background), backgroundBefore);
    plugin.controller.disconnect();
  });

  test("cancelled after the first object: the finished layers stay, the message says what happened", TIMEOUT, async () => {
    const { plugin, doc } = sceneDocument(server.url);
    plugin.configure({ mode: "scene", prompt: "a quiet street", model: "tiny-sd15", seed: "9", values: { steps: "40", decode: "fast" } });
    const running = plugin.controller.generate();
    const deadline = Date.now() + 300_000;
    while (!doc.allLayers().some((/** @type {any} */ layer) => layer.name === "a crow" && layer.parent?.name === "a quiet street #1")) {
      if (Date.now() > deadline) throw new Error("object 0 never landed");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await plugin.controller.cancel();
    await running;

    const { message, history } = plugin.store.state;
    assert.equal(message?.kind, "info", message?.text);
    assert.match(message.text, /^Cancelled\. Kept the [12] layers? finished before it stopped \(not made: .*blended\)\. The layout group is hidden\.$/);
    const record = await (await fetch(`${server.url}/api/jobs/${history[0].id}`)).json();
    assert.equal(record.status, "cancelled");
    const inGroup = doc.tree()[0].layers.map((/** @type {any} */ layer) => layer.name);
    assert.deepEqual(inGroup, record.result.layers.map((/** @type {any} */ layer) => layer.name).reverse(), "every finished layer is in, in z-order");
    assert.equal(history[0].status, "cancelled");
    assert.equal(history[0].layers, record.result.layers.length);
    assert.ok(plugin.store.state.landed, "Undo whole result is offered");
    plugin.controller.disconnect();
  });
});
