"use strict";
// Settings → request parameters from the server's mode declarations (tests/data/modes.json as
// the server's answer), the inputs each mode reads, result ordering, plain-words errors, and
// records that carry fields the panel does not know.
const test = require("node:test");
const assert = require("node:assert/strict");

const { builtinModes, dummyModeInfo } = require("./helpers.js");
const protocol = require("../src/protocol.js");
const modes = require("../src/modes.js");
const state = { ...require("../src/settings.js"), ...require("../src/state.js") };
const { InputProblem } = require("../src/errors.js");
const { describeError, describeJobError, urlAllowed } = require("../src/messages.js");
const { NetworkError, ServerError } = require("../src/client.js");
const { finalEvent } = require("../src/jobs.js");
const { clipToCanvas, neighbour, prepareInputs, readNeeds } = require("../src/placement.js");

const MODES = protocol.parseModes(builtinModes());
/** @param {string} name */
const mode = (name) => /** @type {import("../src/protocol").ModeInfo} */ (MODES.find((m) => m.name === name));

/** @param {Partial<import("../src/settings").Settings>} patch */
function settings(patch) {
  return { ...state.defaultSettings(), clientId: "ps-test", ...patch };
}

test("parseModes keeps the server's modes in its order and refuses another protocol version", () => {
  assert.deepEqual(MODES.map((m) => m.name), builtinModes().modes.map((/** @type {any} */ m) => m.name));
  assert.throws(() => protocol.parseModes({ api_version: 3, modes: [] }), protocol.ServerTooNew);
  assert.throws(() => protocol.parseModes({ api_version: 1, modes: [] }), protocol.ServerTooOld);
  assert.throws(() => protocol.parseModes({ detail: "Not Found" }), protocol.ProtocolError);
  const withExtras = protocol.parseModes({
    api_version: 2,
    future_field: 1,
    modes: [{ ...builtinModes().modes[0], new_key: { x: 1 }, options: [{ ...builtinModes().modes[0].options[0], new_option_key: true }] }, { label: "no name" }],
  });
  assert.equal(withExtras.length, 1, "an entry without a name is dropped");
  assert.equal(withExtras[0].options[0].name, "width");
});

test("parseEvent refuses messages that break the protocol", () => {
  assert.throws(() => protocol.parseEvent("{"), protocol.ProtocolError);
  assert.throws(() => protocol.parseEvent('{"type": "nope", "job_id": "j"}'), /unknown WebSocket message type/);
  assert.throws(() => protocol.parseEvent('{"type": "progress"}'), /no job_id/);
  assert.throws(() => protocol.parseEvent('{"type": "done", "job_id": "j", "result": {"id": "j", "layers": [{"name": "x"}]}}'), /valid result/);
  assert.equal(protocol.parseEvent('{"type": "error", "job_id": null, "code": "bad_message", "message": "m"}').code, "bad_message");
});

test("records with fields the panel does not know are accepted and the fields ignored", () => {
  const layer = { name: "foreground", batch_index: 0, file: "foreground.png", left: 1, top: 2, width: 3, height: 4, visible: true, opacity: 0.5, future: { a: 1 } };
  const result = { id: "j_1", mode: "fg", model: "m", parameters: { prompt: "p" }, canvas: { width: 8, height: 8 }, layers: [layer], psd: null, ora: null, elapsed_s: 3.2 };
  const ready = protocol.parseEvent(JSON.stringify({ type: "layer_ready", job_id: "j_1", layer, server_time: 5 }));
  assert.equal(ready.type === "layer_ready" && ready.layer.file, "foreground.png");
  const done = protocol.parseEvent(JSON.stringify({ type: "done", job_id: "j_1", result, trace: "x" }));
  assert.equal(done.type === "done" && done.result.layers[0].top, 2);
  assert.equal(protocol.parseEvent(JSON.stringify({ type: "progress", job_id: "j_1", step: 1, total: 2, eta_s: 1, stage: "layer", stage_index: 0 })).type, "progress");
  const job = { id: "j_1", status: "done", position: null, result, error: null, created: 1, owner: "x" };
  const final = finalEvent(/** @type {any} */ (job));
  assert.equal(final?.type, "done");
  const history = state.mergeJobs([], [/** @type {any} */ (job)]);
  assert.deepEqual([history[0].mode, history[0].prompt, history[0].layers], ["fg", "p", 1]);
});

test("options shown per mode come from the declaration; control and what depends on it stay hidden", () => {
  const names = (/** @type {string} */ name) => modes.shownOptions(mode(name), {}).map((o) => o.name);
  assert.ok(names("fg").includes("width") && !names("fg").includes("strength"));
  assert.ok(names("upscale").includes("scale") && names("upscale").includes("strength") && !names("upscale").includes("width"));
  for (const m of MODES) {
    assert.ok(!names(m.name).includes("control") && !names(m.name).includes("controlnet") && !names(m.name).includes("control_strength"), m.name);
  }
  assert.equal(modes.optionDefault(/** @type {any} */ (mode("fg").options.find((o) => o.name === "width")), "sd15"), 512);
  assert.equal(modes.optionDefault(/** @type {any} */ (mode("fg").options.find((o) => o.name === "width")), "sdxl"), 1024);
});

test("activeInputs: an input with a when condition is only sent while it holds", () => {
  assert.deepEqual(modes.activeInputs(mode("fg"), { mode: "fg" }).map((i) => i.field), []);
  assert.deepEqual(modes.activeInputs(mode("inpaint"), {}).map((i) => i.field), ["image", "mask"]);
  assert.deepEqual(modes.activeInputs(mode("fg"), { control: "canny" }).map((i) => i.field), ["control_image"]);
  assert.deepEqual(readNeeds(modes.activeInputs(mode("layer_on_artwork"), {})), { composite: true, layer: false, selection: true });
  assert.deepEqual(readNeeds(modes.activeInputs(mode("fg2bg"), {})), { composite: false, layer: true, selection: false });
});

test("buildParameters sends the mode's own options, typed, and leaves empty ones to the server", () => {
  assert.deepEqual(
    state.buildParameters(
      settings({ prompt: " a cat ", seed: "42", batch: "2", model: "tiny-sd15", values: { steps: "20", cfg: "6.5", width: "512", height: "768", strength: "0.3", decode: "fast", negative_prompt: " blur ", scale: "3" } }),
      mode("fg"),
    ),
    { mode: "fg", prompt: "a cat", client_id: "ps-test", model: "tiny-sd15", seed: 42, batch: 2, width: 512, height: 768, negative_prompt: "blur", steps: 20, cfg: 6.5, decode: "fast" },
  );
  assert.deepEqual(state.buildParameters(settings({ prompt: "", values: { scale: "3", strength: "" } }), mode("upscale")), {
    mode: "upscale", prompt: "", client_id: "ps-test", batch: 1, scale: 3,
  });
  const joint = state.buildParameters(settings({ prompt: "p", values: { "layer_prompts.foreground": "cat", "layer_prompts.blended": " " } }), mode("joint"));
  assert.deepEqual(joint.layer_prompts, { foreground: "cat" });
  assert.ok(!("control" in joint) && !("controlnet" in joint));
});

test("bad inputs are refused with the input's label from the declaration", () => {
  const cases = [
    [{ prompt: "" }, "prompt", "Prompt: describe what to generate"],
    [{ prompt: "x", values: { steps: "2.5" } }, "steps", 'Steps: "2.5" is not a whole number'],
    [{ prompt: "x", seed: "-1" }, "seed", "Seed: must be between 0 and 4294967295 (got -1)"],
    [{ prompt: "x", values: { cfg: "abc" } }, "cfg", 'CFG scale: "abc" is not a number'],
    [{ prompt: "x", values: { width: "500" } }, "width", "Width: must be a multiple of 64 (try 512)"],
    [{ prompt: "x", values: { stop_at: "0" } }, "stop_at", "Stop at: must be more than 0 and at most 1 (got 0)"],
    [{ prompt: "x".repeat(4001) }, "prompt", "Prompt: is longer than 4000 characters"],
    [{ prompt: "x", model: "tiny-sdxl" }, "model", /^Model: Foreground \+ background together does not run on SDXL models: no official SDXL joint model/],
  ];
  for (const [patch, field, message] of cases) {
    const family = /** @type {any} */ (patch).model === "tiny-sdxl" ? "sdxl" : null;
    const target = family ? mode("joint") : mode("fg");
    assert.throws(() => state.buildParameters(settings(/** @type {any} */ (patch)), target, family), (error) => {
      assert.ok(error instanceof InputProblem);
      assert.equal(error.field, field);
      if (message instanceof RegExp) assert.match(error.message, message);
      else assert.equal(error.message, message);
      return true;
    });
  }
});

test("list inputs: rows padded to min_items, typed items, bad items named", () => {
  const dummy = dummyModeInfo();
  assert.deepEqual(state.buildParameters(settings({}), dummy).parts, [{}], "one empty row at least");
  const params = state.buildParameters(settings({ lists: { parts: [{ prompt: " a ", seed: "5" }, { prompt: "b", seed: "" }] } }), dummy);
  assert.deepEqual(params.parts, [{ prompt: "a", seed: 5 }, { prompt: "b" }]);
  assert.throws(
    () => state.buildParameters(settings({ lists: { parts: [{ seed: "x" }] } }), dummy),
    (error) => error instanceof InputProblem && error.field === "parts.0.seed" && error.message === 'Parts 1, Seed: "x" is not a whole number',
  );
  assert.equal(state.listRows(settings({ lists: { parts: [{}, {}, {}, {}, {}] } }), dummy.lists[0]).length, 4, "cut at max_items");
});

test("saved settings and history are restored defensively", () => {
  const defaults = state.defaultSettings();
  const restored = state.restoreSettings(
    { prompt: "kept", mode: "some_future_mode", seed: 5, unknown: "x", values: { decode: "fast", steps: 5 }, lists: { parts: [{ prompt: "a", seed: 3 }, null], bad: "x" } },
    defaults,
  );
  assert.equal(restored.prompt, "kept");
  assert.equal(restored.mode, "some_future_mode", "kept: the server says whether it exists");
  assert.equal(restored.seed, "");
  assert.deepEqual(restored.values, { decode: "fast" });
  assert.deepEqual(restored.lists, { parts: [{ prompt: "a" }] });
  assert.ok(!("unknown" in restored));
  assert.equal(modes.pickMode(MODES, "some_future_mode")?.name, "fg", "an unknown mode falls back to the server's first");
  assert.match(defaults.clientId, /^ps-[0-9a-f]{24}$/);
  assert.notEqual(state.defaultSettings().clientId, defaults.clientId);
  const history = state.restoreHistory([
    { id: "j_1", mode: "fg", prompt: "p", status: "done", created: 2, offset: { left: 3, top: 4 }, seed: 9 },
    { id: "j_2", mode: 7, created: 1, offset: { left: 0, top: 0 } },
    null,
  ]);
  assert.deepEqual(history, [{ id: "j_1", mode: "fg", prompt: "p", status: "done", created: 2, offset: { left: 3, top: 4 }, seed: 9 }]);
  const merged = state.upsertHistory(history, { id: "j_1", mode: "fg", prompt: "p", status: "cancelled", created: 2, offset: { left: 0, top: 0 } });
  assert.deepEqual(merged[0].offset, { left: 3, top: 4 }, "the known offset is kept");
  assert.equal(merged[0].status, "cancelled");
});

test("errors in plain words", () => {
  const context = { serverUrl: "http://127.0.0.1:7865", allowed: ["http://127.0.0.1:7865", "ws://127.0.0.1:7865"] };
  assert.match(describeError(new NetworkError("unreachable", "u", "fetch failed"), context), /^Cannot reach the Acetate server at http:\/\/127\.0\.0\.1:7865\. Is it running\?/);
  assert.match(describeError(new NetworkError("unreachable", "u", "Permission denied to the url ws://x. Manifest entry not found."), context), /only lets this plugin reach/);
  assert.match(describeError(new ServerError(401, "unauthorized", "missing or wrong token", "Authorization"), context), /needs a token/);
  assert.match(describeError(new ServerError(403, "forbidden_host", "Host not allowed", "Host"), context), /--allowed-host/);
  assert.equal(describeError(new ServerError(400, "invalid", "must be ≤ 150", "steps"), { ...context, labels: { steps: "Steps" } }), "Steps: must be ≤ 150");
  assert.equal(describeError(new ServerError(400, "invalid", "bad", "prompt"), context), "Prompt: bad");
  assert.match(describeError(new ServerError(500, "internal_error", "boom"), context), /^The server failed: boom\. Its log/);
  assert.match(describeError(new protocol.ProtocolError("odd"), context), /same Acetate version/);
  assert.match(describeError(new protocol.ServerTooOld("it has no GET /api/modes"), context), /^Server too old — update Acetate/);
  assert.match(describeJobError("out_of_memory", "CUDA out of memory"), /ran out of memory: try a smaller size/);
  assert.equal(describeJobError("bad", "it broke"), "The job failed: it broke");
  assert.equal(urlAllowed("http://localhost:7865", ["http://localhost:7865"]), false, "the ws:// entry is needed too");
  assert.equal(urlAllowed("http://LOCALHOST:7865/", ["http://localhost:7865", "ws://localhost:7865"]), true);
});

test("prepareInputs reads each input by its source and sets the frame", () => {
  const document = { id: 1, name: "d", width: 10, height: 8, bits: /** @type {8} */ (8) };
  const composite = { data: new Uint8Array(10 * 8 * 4).fill(9), width: 10, height: 8 };
  const layer = { data: new Uint8Array(3 * 2 * 4).fill(200), width: 3, height: 2, rect: { left: 4, top: 5, width: 3, height: 2 } };
  const selection = { data: new Uint8Array(2 * 2).fill(255), width: 2, height: 2, rect: { left: 6, top: 6, width: 2, height: 2 } };
  const prepare = (/** @type {string} */ name, /** @type {any} */ pixels) => prepareInputs(mode(name), modes.activeInputs(mode(name), {}), { document, ...pixels });

  const artwork = prepare("layer_on_artwork", { composite, selection });
  assert.deepEqual(Object.keys(artwork.images).sort(), ["canvas", "selection"]);
  assert.deepEqual(artwork.kinds, { canvas: "rgba", selection: "mask" });
  assert.deepEqual(artwork.extra, { selection_bounds: selection.rect });
  assert.deepEqual(artwork.frame, { left: 0, top: 0, width: 10, height: 8 });

  const inpaint = prepare("inpaint", { layer, selection });
  assert.deepEqual(inpaint.frame, { left: 4, top: 5, width: 4, height: 3 }, "layer and selection together");
  assert.equal(inpaint.images.image.data.length, 4 * 3 * 4);
  assert.deepEqual(Array.from(inpaint.images.mask.data), [0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255]);

  const img2img = prepare("img2img", { layer, selection: null });
  assert.deepEqual(img2img.frame, layer.rect);
  assert.deepEqual(Object.keys(img2img.images), ["image"]);

  const dummy = dummyModeInfo();
  const parts = prepareInputs(dummy, modes.activeInputs(dummy, {}), { document, composite });
  assert.deepEqual(Object.keys(parts.images), ["canvas"]);
  assert.deepEqual(parts.frame, { left: 0, top: 0, width: 10, height: 8 });

  assert.throws(() => prepare("inpaint", { layer, selection: null }), /Select an area first: Inpaint the active layer needs a selection/);
  assert.throws(() => prepare("fg2bg", { layer: null }), /active layer is empty/);
  assert.throws(() => prepare("bg2fg", {}), /no visible pixels/);
  const far = { ...selection, rect: { left: 0, top: 0, width: 2, height: 2 } };
  assert.throws(() => prepare("img2img", { layer, selection: far }), /does not touch the active layer/);
});

test("layer order comes from the mode's declared layers (patterns by number); neighbours for insertion", () => {
  const dummy = dummyModeInfo();
  const names = ["blended", "part_10", "part_2", "part_0", "unknown"];
  assert.deepEqual(
    [...names].sort((a, b) => modes.compareRanks(modes.layerRank(dummy, a), modes.layerRank(dummy, b))),
    ["part_0", "part_2", "part_10", "blended", "unknown"],
  );
  assert.deepEqual(modes.layerRank(mode("joint"), "foreground"), [1, 0]);
  assert.equal(modes.layerDeclaration(dummy, "part_3")?.visible, true);
  assert.equal(modes.layerDeclaration(dummy, "blended")?.visible, false);
  const placed = [{ id: 1, rank: [0, 0] }, { id: 2, rank: [1, 0] }];
  assert.deepEqual(neighbour(placed, [0, 5]), { item: placed[0], place: "above" });
  assert.deepEqual(neighbour(placed, [2, 0]), { item: placed[1], place: "above" });
  assert.deepEqual(neighbour([placed[1]], [0, 1]), { item: placed[1], place: "below" });
  assert.equal(neighbour([], [0, 0]), null);
  assert.equal(protocol.groupName("  é".repeat(1) + "x".repeat(70) + " ", 2), `é${"x".repeat(59)} #3`);
  assert.equal(protocol.groupName("   ", 0, "Parts over the canvas (test mode)"), "Parts over the canvas (test mode) #1");
});

test("clipToCanvas keeps layers inside the document and crops the rest", () => {
  const layer = { name: "foreground", visible: true, left: 2, top: 1, width: 3, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => i) };
  assert.equal(clipToCanvas(layer, { width: 5, height: 3 }), layer, "inside: unchanged");
  const clipped = /** @type {any} */ (clipToCanvas(layer, { width: 4, height: 2 }));
  assert.deepEqual([clipped.left, clipped.top, clipped.width, clipped.height], [2, 1, 2, 1]);
  assert.deepEqual(Array.from(clipped.data), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(clipToCanvas(layer, { width: 2, height: 2 }), null, "entirely outside");
});

test("image limits: read from GET /api/health when published, else the documented 8192 px / 64 MP; large images warned about", () => {
  const { imageLimits, checkImageSize } = require("../src/placement.js");
  assert.deepEqual(imageLimits(null), { maxSide: 8192, maxPixels: 64 * 1024 * 1024 });
  assert.deepEqual(imageLimits(/** @type {any} */ ({ limits: { max_side: 4096, max_pixels: 1000 } })), { maxSide: 4096, maxPixels: 1000 });
  assert.deepEqual(imageLimits(/** @type {any} */ ({ limits: { max_side: "big", max_pixels: -1 } })), { maxSide: 8192, maxPixels: 64 * 1024 * 1024 });
  const limits = imageLimits(null);
  assert.equal(checkImageSize("The document", { width: 1000, height: 1000 }, limits), null);
  assert.match(String(checkImageSize("The document", { width: 5000, height: 4000 }, limits)), /large \(5000×4000 px\)/);
  assert.throws(() => checkImageSize("The document", { width: 8193, height: 10 }, limits), /8193×10 px .*8192 px a side and 64 megapixels/);
  assert.match(String(checkImageSize("The active layer", { width: 8192, height: 8192 }, limits)), /large/, "64 MP exactly is allowed");
  assert.throws(() => checkImageSize("The active layer", { width: 9000, height: 8000 }, { maxSide: 10000, maxPixels: limits.maxPixels }), /The active layer is 9000×8000 px \(68\.7 megapixels\)/);
});
