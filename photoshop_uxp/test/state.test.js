"use strict";
// Settings → request parameters, the inputs each mode shows, plain-words errors, and the
// protocol mirror checked against server/acetate/protocol.py itself.
const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");

const { pythonPath, skipWithoutPython } = require("./helpers.js");
const protocol = require("../src/protocol.js");
const state = { ...require("../src/settings.js"), ...require("../src/state.js") };
const { InputProblem } = require("../src/errors.js");
const { describeError, describeJobError, urlAllowed } = require("../src/messages.js");
const { NetworkError, ServerError } = require("../src/client.js");
const { clipToCanvas, groupLayers, prepareInputs } = require("../src/placement.js");

/** @param {Partial<import("../src/settings").Settings>} patch */
function settings(patch) {
  return { ...state.defaultSettings(), clientId: "ps-test", ...patch };
}

test("the JS protocol mirror matches server/acetate/protocol.py", { skip: skipWithoutPython() }, () => {
  const script =
    "import json; from acetate import protocol as p;" +
    "print(json.dumps({'modes': list(p.MODES), 'editor': sorted(p.EDITOR_MODES), 'required': {k: list(v) for k, v in p.REQUIRED_IMAGES.items()}," +
    "'allowed': {k: list(v) for k, v in p.ALLOWED_IMAGES.items()}, 'masks': sorted(p.MASK_FIELDS), 'layers': {k: list(v) for k, v in p.MODE_LAYERS.items()}," +
    "'schedulers': list(p.SCHEDULERS), 'max_seed': p.MAX_SEED, 'max_side': p.MAX_SIDE, 'max_prompt': p.MAX_PROMPT," +
    "'events': [e.value for e in p.JobEvent], 'final': sorted(e.value for e in p.FINAL_EVENTS)," +
    "'group': p.group_name('é' * 70 + 'x', 2), 'file': [p.layer_file_name('blended', 0), p.layer_file_name('blended', 3)]}))";
  const result = spawnSync(/** @type {string} */ (pythonPath()), ["-c", script], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  const py = JSON.parse(result.stdout);
  assert.deepEqual([...protocol.MODES], py.modes);
  assert.deepEqual([...protocol.EDITOR_MODES].sort(), py.editor);
  assert.deepEqual(protocol.REQUIRED_IMAGES, py.required);
  assert.deepEqual(protocol.ALLOWED_IMAGES, py.allowed);
  assert.deepEqual([...protocol.MASK_FIELDS].sort(), py.masks);
  assert.deepEqual(protocol.MODE_LAYERS, py.layers);
  assert.deepEqual([...protocol.SCHEDULERS], py.schedulers);
  assert.deepEqual([protocol.MAX_SEED, protocol.MAX_SIDE, protocol.MAX_PROMPT], [py.max_seed, py.max_side, py.max_prompt]);
  assert.deepEqual([...protocol.FINAL_EVENTS].sort(), py.final);
  for (const type of py.events) {
    const event = protocol.parseEvent(JSON.stringify({ type, job_id: "j_1", result: { id: "j_1", layers: [] }, layer: { name: "foreground", file: "foreground.png", batch_index: 0, left: 0, top: 0, width: 1, height: 1 } }));
    assert.equal(event.type, type);
  }
  assert.equal(protocol.groupName("é".repeat(70) + "x", 2), py.group);
  assert.deepEqual([protocol.layerFileName("blended", 0), protocol.layerFileName("blended", 3)], py.file);
});

test("parseEvent refuses messages that break the protocol", () => {
  assert.throws(() => protocol.parseEvent("{"), protocol.ProtocolError);
  assert.throws(() => protocol.parseEvent('{"type": "nope", "job_id": "j"}'), /unknown WebSocket message type/);
  assert.throws(() => protocol.parseEvent('{"type": "progress"}'), /no job_id/);
  assert.throws(() => protocol.parseEvent('{"type": "done", "job_id": "j", "result": {"id": "j", "layers": [{"name": "x"}]}}'), /valid result/);
  assert.equal(protocol.parseEvent('{"type": "error", "job_id": null, "code": "bad_message", "message": "m"}').code, "bad_message");
});

test("each mode shows only the inputs it uses", () => {
  assert.ok(state.visibleFields("fg").has("width") && !state.visibleFields("fg").has("strength"));
  assert.ok(state.visibleFields("joint").has("fgPrompt"));
  assert.ok(!state.visibleFields("layer_on_artwork").has("width"));
  assert.ok(state.visibleFields("upscale").has("scale") && state.visibleFields("upscale").has("strength"));
  for (const mode of protocol.MODES) {
    assert.ok(state.visibleFields(mode).has("prompt") && state.visibleFields(mode).has("seed") && state.visibleFields(mode).has("decode"));
    assert.ok(state.MODE_HINTS[mode] && state.MODE_LABELS[mode]);
  }
});

test("buildParameters sends the mode's own inputs, typed, and leaves empty ones to the server", () => {
  assert.deepEqual(
    state.buildParameters(settings({ mode: "fg", prompt: " a cat ", seed: "42", steps: "20", cfg: "6.5", width: "512", height: "768", batch: "2", strength: "0.3", decode: "fast", model: "tiny-sd15", negativePrompt: " blur " })),
    { mode: "fg", prompt: "a cat", client_id: "ps-test", decode: "fast", model: "tiny-sd15", negative_prompt: "blur", seed: 42, steps: 20, cfg: 6.5, batch: 2, width: 512, height: 768 },
  );
  assert.deepEqual(state.buildParameters(settings({ mode: "upscale", prompt: "", scale: "3", strength: "" })), {
    mode: "upscale", prompt: "", client_id: "ps-test", decode: "tta", batch: 1, scale: 3,
  });
  assert.deepEqual(state.buildParameters(settings({ mode: "joint", prompt: "p", fgPrompt: "cat", blendPrompt: " " })).layer_prompts, { foreground: "cat" });
});

test("bad inputs are refused with the input's name", () => {
  const cases = [
    [{ prompt: "" }, "prompt", "Prompt: describe what to generate"],
    [{ prompt: "x", steps: "2.5" }, "steps", 'Steps: "2.5" is not a whole number'],
    [{ prompt: "x", seed: "-1" }, "seed", "Seed: must be between 0 and 4294967295 (got -1)"],
    [{ prompt: "x", cfg: "abc" }, "cfg", 'CFG: "abc" is not a number'],
    [{ prompt: "x", width: "500" }, "width", "Width: must be a multiple of 64 (try 512)"],
    [{ prompt: "x", mode: "img2img", strength: "0" }, "strength", "Strength: must be between 0.01 and 1 (got 0)"],
    [{ prompt: "x".repeat(4001) }, "prompt", "Prompt: is longer than 4000 characters"],
  ];
  for (const [patch, field, message] of cases) {
    assert.throws(() => state.buildParameters(settings(patch)), (error) => {
      assert.ok(error instanceof InputProblem);
      assert.equal(error.field, field);
      assert.equal(error.message, message);
      return true;
    });
  }
});

test("saved settings and history are restored defensively", () => {
  const defaults = state.defaultSettings();
  const restored = state.restoreSettings({ prompt: "kept", mode: "nope", decode: "fast", steps: 5, unknown: "x" }, defaults);
  assert.equal(restored.prompt, "kept");
  assert.equal(restored.mode, "fg");
  assert.equal(restored.decode, "fast");
  assert.equal(restored.steps, "");
  assert.ok(!("unknown" in restored));
  assert.match(defaults.clientId, /^ps-[0-9a-f]{24}$/);
  assert.notEqual(state.defaultSettings().clientId, defaults.clientId);
  const history = state.restoreHistory([
    { id: "j_1", mode: "fg", prompt: "p", status: "done", created: 2, offset: { left: 3, top: 4 }, seed: 9 },
    { id: "j_2", mode: "bad", created: 1, offset: { left: 0, top: 0 } },
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
  assert.equal(describeError(new ServerError(400, "invalid", "must be ≤ 150", "steps"), context), "Steps: must be ≤ 150");
  assert.match(describeError(new ServerError(500, "internal_error", "boom"), context), /^The server failed: boom\. Its log/);
  assert.match(describeError(new protocol.ProtocolError("odd"), context), /same Acetate version/);
  assert.match(describeJobError("out_of_memory", "CUDA out of memory"), /ran out of memory: try a smaller size/);
  assert.equal(describeJobError("bad", "it broke"), "The job failed: it broke");
  assert.equal(urlAllowed("http://localhost:7865", ["http://localhost:7865"]), false, "the ws:// entry is needed too");
  assert.equal(urlAllowed("http://LOCALHOST:7865/", ["http://localhost:7865", "ws://localhost:7865"]), true);
});

test("prepareInputs: frames and masks per mode", () => {
  const document = { id: 1, name: "d", width: 10, height: 8, bits: 8 };
  const composite = { data: new Uint8Array(10 * 8 * 4).fill(9), width: 10, height: 8 };
  const layer = { data: new Uint8Array(3 * 2 * 4).fill(200), width: 3, height: 2, rect: { left: 4, top: 5, width: 3, height: 2 } };
  const selection = { data: new Uint8Array(2 * 2).fill(255), width: 2, height: 2, rect: { left: 6, top: 6, width: 2, height: 2 } };

  const artwork = prepareInputs("layer_on_artwork", { document, composite, selection });
  assert.deepEqual(Object.keys(artwork.images).sort(), ["canvas", "selection"]);
  assert.deepEqual(artwork.extra, { selection_bounds: selection.rect });
  assert.deepEqual(artwork.frame, { left: 0, top: 0, width: 10, height: 8 });

  const inpaint = prepareInputs("inpaint", { document, layer, selection });
  assert.deepEqual(inpaint.frame, { left: 4, top: 5, width: 4, height: 3 }, "layer and selection together");
  assert.equal(inpaint.images.image.data.length, 4 * 3 * 4);
  assert.deepEqual(Array.from(inpaint.images.mask.data), [0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255]);

  const img2img = prepareInputs("img2img", { document, layer, selection: null });
  assert.deepEqual(img2img.frame, layer.rect);
  assert.deepEqual(Object.keys(img2img.images), ["image"]);

  assert.throws(() => prepareInputs("inpaint", { document, layer, selection: null }), /Select the area to repaint/);
  assert.throws(() => prepareInputs("fg2bg", { document, layer: null }), /active layer is empty/);
  const far = { ...selection, rect: { left: 0, top: 0, width: 2, height: 2 } };
  assert.throws(() => prepareInputs("img2img", { document, layer, selection: far }), /does not touch the active layer/);
});

test("groupLayers: one group per batch item, layers bottom to top, offsets added", () => {
  const raster = { data: new Uint8Array(4), width: 1, height: 1 };
  const layer = (name, batch_index, visible = true) => ({ name, batch_index, file: `${name}_${batch_index}.png`, left: 1, top: 2, width: 1, height: 1, visible });
  const result = {
    id: "j", mode: "joint", model: "m", parameters: { prompt: "two cats" }, canvas: { width: 1, height: 1 },
    layers: [layer("blended", 1, false), layer("foreground", 0), layer("blended", 0, false), layer("background", 0), layer("foreground", 1), layer("background", 1)],
  };
  const pixels = new Map(result.layers.map((l) => [l.file, raster]));
  const groups = groupLayers(/** @type {any} */ (result), pixels, { left: 10, top: 20 }, "fallback");
  assert.deepEqual(groups.map((g) => [g.name, g.layers.map((l) => `${l.name}${l.visible ? "" : " (hidden)"}@${l.left},${l.top}`)]), [
    ["two cats #1", ["background@11,22", "foreground@11,22", "blended (hidden)@11,22"]],
    ["two cats #2", ["background@11,22", "foreground@11,22", "blended (hidden)@11,22"]],
  ]);
});

test("clipToCanvas keeps layers inside the document and crops the rest", () => {
  const layer = { name: "foreground", visible: true, left: 2, top: 1, width: 3, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => i) };
  assert.equal(clipToCanvas(layer, { width: 5, height: 3 }), layer, "inside: unchanged");
  const clipped = clipToCanvas(layer, { width: 4, height: 2 });
  assert.deepEqual([clipped.left, clipped.top, clipped.width, clipped.height], [2, 1, 2, 1]);
  assert.deepEqual(Array.from(clipped.data), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(clipToCanvas(layer, { width: 2, height: 2 }), null, "entirely outside");
});
