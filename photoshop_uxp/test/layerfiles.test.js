"use strict";
// The panel's form against the real server's declarations: every option of every mode has a
// control, every part with a choice of LayerDiffusion files has a picker ("Default" first,
// trained files marked), and a picked (trained) file reaches the request (`layer_files`) and
// comes back in the result record (`files`). The server runs on a copy of the tiny store with a
// trained SD1.5 decoder (tests/support/trained.py).
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");

const { REPO_DIR, createPlugin, pythonPath, skipWithoutPython, startServer, tempDir, panelDom } = require("./helpers.js");
const { baseModel, chosenFiles, fileKey, fileLabel, fileParts, requestFiles } = require("../src/layerfiles.js");
const { fittingNames } = require("../src/loras.js");
const { DOCUMENT_OPTIONS, HIDDEN_OPTIONS, fixedLayers, layoutList } = require("../src/modes.js");
const { parseModes } = require("../src/protocol.js");
const { defaultSettings, layoutKey } = require("../src/settings.js");
const { createStore } = require("../src/state.js");
const { mountPanel } = require("../src/ui/panel.js");

const TIMEOUT = { timeout: 600_000 };
const DECODER = "layer_sd15_vae_transparent_decoder";
const OFFICIAL = `${DECODER}.safetensors`;
const TRAINED = "studio-sd15-transparent-decoder.safetensors";

/** The tiny store plus a trained SD1.5 decoder, written by the suite's own Python helper. */
function trainedModels() {
  const root = tempDir("trained");
  const script =
    "import sys; from pathlib import Path; from acetate.engine.tiny.bases import ensure_tiny_models;" +
    "from support.trained import models_with_trained_decoder;" +
    "root = Path(sys.argv[1]); ensure_tiny_models(root / 'tiny'); models_with_trained_decoder(root / 'tiny', root / 'models')";
  const result = spawnSync(/** @type {string} */ (pythonPath()), ["-c", script, root], {
    encoding: "utf8",
    env: { ...process.env, HF_HUB_OFFLINE: "1", PYTHONPATH: [path.join(REPO_DIR, "tests"), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) },
  });
  assert.equal(result.status, 0, result.stderr);
  return path.join(root, "models");
}

/** The panel on linkedom with the server's answers in the store. */
function mount(/** @type {any} */ state) {
  const { document, window } = panelDom();
  const store = createStore({ ...defaultSettings(), prompt: "a fox" }, "");
  store.update(state);
  const controller = /** @type {any} */ ({});
  const unmount = mountPanel(document.body, { store, controller, saveToken: () => {} });
  const $ = (/** @type {string} */ id) => /** @type {any} */ (document.querySelector(`#acetate-${id.replace(/[.:]/g, "\\$&")}`));
  return { document, window, store, unmount, $ };
}

describe("layer-file pickers against the real server", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  let models = "";
  /** @type {any} */
  let published;
  /** @type {any} */
  let listed;

  before(async () => {
    models = trainedModels();
    server = await startServer({ args: ["--models-dir", models] });
    published = parseModes(await (await fetch(`${server.url}/api/modes`)).json());
    listed = await (await fetch(`${server.url}/api/models`)).json();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  test("every option of every mode has a control; every part with a choice of files a picker", TIMEOUT, () => {
    const bases = listed.bases;
    assert.ok(published.length > 0 && bases.length > 0);
    /** @type {Set<string>} */
    const pickers = new Set();
    for (const mode of published) {
      for (const base of bases) {
        // Every list shows its rows (not "from the selected layer group") with one row at least.
        /** @type {Record<string, string>} */
        const values = {};
        /** @type {Record<string, Record<string, string>[]>} */
        const lists = {};
        for (const list of mode.lists) {
          values[layoutKey(list.field)] = "rows";
          lists[list.field] = [{}];
        }
        const ui = mount({
          modes: published,
          models: bases,
          layerFiles: listed.layer_files,
          loras: listed.loras,
          defaultModel: listed.default_base,
          settings: { ...defaultSettings(), mode: mode.name, model: base.name, values, lists },
        });
        const byName = new Map(mode.options.map((/** @type {any} */ option) => [option.name, option]));
        // The named exception: options the panel derives from the document (bit_depth: 16 for
        // 16- and 32-bit documents, insertion.js), never a control.
        assert.ok([...DOCUMENT_OPTIONS].every((name) => name === "bit_depth"), "only bit_depth is derived from the document");
        for (const option of mode.options) {
          if (DOCUMENT_OPTIONS.has(option.name)) {
            assert.equal(ui.$(`opt-${option.name}`), null, `${mode.name}.${option.name} is set from the document's depth`);
            continue;
          }
          if (HIDDEN_OPTIONS.has(option.name) || HIDDEN_OPTIONS.has(option.depends_on)) {
            assert.equal(ui.$(`opt-${option.name}`), null, `${mode.name}.${option.name} has no control of its own: the Structure section edits it`);
            continue;
          }
          assert.ok(!option.depends_on || byName.has(option.depends_on), `${mode.name}.${option.name}: unknown parent`);
          if (option.depends_on) {
            continue; // shown while its parent is on (modes.test: shownOptions)
          }
          const ids = option.type === "prompts" ? fixedLayers(mode).map((layer) => `opt-${option.name}.${layer.name}`) : [`opt-${option.name}`];
          assert.ok(ids.length > 0);
          for (const id of ids) {
            const control = ui.$(id);
            assert.ok(control, `${mode.name} on ${base.name}: no control for ${option.name}`);
            assert.equal(control.closest(".advanced") !== null, Boolean(option.advanced), `${mode.name}.${option.name}: advanced`);
          }
        }
        for (const list of mode.lists) {
          for (const option of list.item_options) {
            assert.ok(ui.$(`list-${list.field}-0-${option.name}`), `${mode.name}: no control for ${list.field}.${option.name}`);
          }
          if (layoutList(mode)?.list.field === list.field) {
            assert.ok(ui.$(`list-${layoutKey(list.field)}`), `${mode.name}: no layout source for ${list.field}`);
          }
        }
        // `loras` (a request field of every mode): the LoRA picker wherever a LoRA fits the base.
        if (fittingNames(listed.loras, base).length > 0) {
          assert.ok(ui.$("pick-loras-add"), `${mode.name} on ${base.name}: no control for loras`);
          pickers.add(`${mode.name} ${base.name} loras`);
        }
        const support = mode.families.find((/** @type {any} */ item) => item.family === base.family);
        const parts = fileParts(mode, base, listed.layer_files);
        assert.deepEqual(parts.map((part) => part.part), support?.supported ? Object.keys(support.files ?? {}) : []);
        for (const part of parts) {
          const picker = ui.$(`opt-layer_file-${part.part}`);
          if (part.files.length > 1) {
            assert.ok(picker && picker.closest(".advanced"), `${mode.name} on ${base.name}: no picker for ${part.part}`);
            const offered = [...picker.querySelectorAll("option")].map((o) => o.getAttribute("value"));
            assert.deepEqual(offered, ["", ...part.files.map((file) => file.name)], "Default first, then each fitting file");
            pickers.add(`${mode.name} ${base.name} ${part.part}`);
          } else {
            assert.equal(picker, null, `${mode.name} on ${base.name}: ${part.part} has nothing to choose`);
          }
        }
        ui.unmount();
      }
    }
    for (const expected of ["fg tiny-sd15 decoder", "bg2fg tiny-sd15 decoder", "fg tiny-sdxl unet_patch", "fg tiny-sd15 loras", "inpaint tiny-sdxl loras"]) {
      assert.ok(pickers.has(expected), expected);
    }
    assert.ok(!pickers.has("fg tiny-sd15 attention_sharing"));
  });

  test("the picker: trained files marked, the choice kept per mode, Default when it no longer fits", TIMEOUT, () => {
    const ui = mount({
      modes: published,
      models: listed.bases,
      layerFiles: listed.layer_files,
      defaultModel: listed.default_base,
      settings: { ...defaultSettings(), mode: "fg", model: "tiny-sd15" },
    });
    const picker = ui.$("opt-layer_file-decoder");
    assert.deepEqual([...picker.querySelectorAll("option")].map((o) => o.textContent), [
      "Default",
      DECODER,
      "studio-sd15-transparent-decoder (trained, 7 steps)",
    ]);
    picker.value = TRAINED;
    picker.dispatchEvent(new ui.window.Event("change"));
    const key = fileKey("fg", "sd15", "decoder");
    assert.equal(ui.store.state.settings.values[key], TRAINED, "kept with the other options (plugin data storage)");
    const fg = published.find((/** @type {any} */ mode) => mode.name === "fg");
    const sd15 = baseModel(listed.bases, "tiny-sd15");
    assert.deepEqual(requestFiles(ui.store.state.settings, fg, sd15, listed.layer_files), [TRAINED]);
    // Another mode has its own choice.
    ui.store.update({ settings: { ...ui.store.state.settings, mode: "bg2fg" } });
    assert.equal(ui.$("opt-layer_file-decoder").value, "");
    // Another base: the SD1.5 file does not fit, nothing is sent; back on SD1.5 it is there again.
    ui.store.update({ settings: { ...ui.store.state.settings, mode: "fg", model: "tiny-sdxl" } });
    const sdxl = baseModel(listed.bases, "tiny-sdxl");
    assert.equal(requestFiles(ui.store.state.settings, fg, sdxl, listed.layer_files), undefined);
    ui.store.update({ settings: { ...ui.store.state.settings, model: "tiny-sd15" } });
    assert.equal(ui.$("opt-layer_file-decoder").value, TRAINED);
    // The file is gone from the server: the picker is gone, the request names no file.
    const without = listed.layer_files.filter((/** @type {any} */ file) => file.name !== TRAINED);
    ui.store.update({ layerFiles: without });
    assert.equal(ui.$("opt-layer_file-decoder"), null);
    assert.deepEqual(chosenFiles(ui.store.state.settings, fg, sd15, without), {});
    assert.equal(requestFiles(ui.store.state.settings, fg, sd15, without), undefined);
    // "Server default" as the model: the server's default base decides what fits.
    assert.equal(baseModel(listed.bases, "", "tiny-sd15")?.name, "tiny-sd15");
    assert.equal(fileLabel({ name: "x.safetensors", kind: DECODER, family: "sd15", trained: {} }), "x (trained)");
    ui.unmount();
  });

  test("a picked trained file is in the submitted request and the result record names it", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    /** @type {string[]} */
    const bodies = [];
    const send = plugin.controller.fetch;
    plugin.controller.fetch = (/** @type {string} */ url, /** @type {any} */ init) => {
      if (init?.method === "POST" && url.endsWith("/api/jobs")) {
        bodies.push(Buffer.from(init.body instanceof ArrayBuffer ? new Uint8Array(init.body) : init.body).toString("latin1"));
      }
      return send(url, init);
    };
    /** @type {any[]} */
    const finals = [];
    const deliver = plugin.controller.jobs.deliver.bind(plugin.controller.jobs);
    plugin.controller.jobs.deliver = (/** @type {any} */ event) => {
      if (event.type === "done") finals.push(event);
      return deliver(event);
    };
    assert.equal(await plugin.controller.connect(), true);
    const doc = plugin.world.addDocument({ width: 64, height: 64, name: "Art" });
    assert.ok(doc);
    plugin.configure({
      mode: "fg",
      model: "tiny-sd15",
      prompt: "glass",
      seed: "7",
      values: { steps: "1", decode: "fast", width: "64", height: "64", [fileKey("fg", "sd15", "decoder")]: TRAINED },
    });
    await plugin.controller.generate();
    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    assert.equal(bodies.length, 1);
    const request = JSON.parse(/** @type {string} */ (/name="request"\r\n(?:[^\r\n]+\r\n)*\r\n(\{.*?\})\r\n--/s.exec(bodies[0])?.[1]));
    assert.deepEqual(request.layer_files, [TRAINED]);
    assert.equal(finals.length, 1);
    const sha256 = crypto.createHash("sha256").update(fs.readFileSync(path.join(models, "tiny", "layer_model", TRAINED))).digest("hex");
    assert.deepEqual(finals[0].result.files[DECODER], { name: TRAINED, sha256 });
    assert.deepEqual(finals[0].result.parameters.layer_files, [TRAINED]);
    // All on Default: no `layer_files` at all; the record names the official file.
    plugin.configure({ values: { [fileKey("fg", "sd15", "decoder")]: "" } });
    await plugin.controller.generate();
    assert.equal(bodies.length, 2);
    assert.ok(!bodies[1].includes("layer_files"));
    assert.equal(finals[1].result.files[DECODER].name, OFFICIAL);
    plugin.controller.disconnect();
  });
});
