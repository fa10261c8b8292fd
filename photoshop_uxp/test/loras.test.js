"use strict";
// LoRAs and embeddings in the panel against the real server (its tiny store lists
// tiny-style-sd15/-sdxl and tiny-emb-sd15/-sdxl): the LoRA picker offers the LoRAs of the base's
// family in every mode, rows with a strength are added and removed and kept per mode and
// family, a remembered LoRA the server no longer lists is left out with a visible note, and a
// picked LoRA reaches the request (`loras`) and the result record (`files["lora:<name>"]`).
// "Insert embedding" appends an embedding's name to the prompt; it is hidden when none fits.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");

const { createPlugin, skipWithoutPython, startServer, panelDom } = require("./helpers.js");
const { InputProblem } = require("../src/errors.js");
const { droppedNote, fittingNames, loraKey, loraRows, requestLoras, storeRows, withEmbedding } = require("../src/loras.js");
const { parseModes } = require("../src/protocol.js");
const { defaultSettings } = require("../src/settings.js");
const { createStore } = require("../src/state.js");
const { mountPanel } = require("../src/ui/panel.js");

const TIMEOUT = { timeout: 600_000 };

/** The panel on linkedom with `state` in its store; `controller` when it must act. */
function mount(/** @type {any} */ state, /** @type {any} */ plugin = null) {
  const { document, window } = panelDom();
  const store = plugin ? plugin.store : createStore({ ...defaultSettings(), prompt: "a fox" }, "");
  store.update(state);
  const unmount = mountPanel(document.body, { store, controller: plugin ? plugin.controller : /** @type {any} */ ({}), saveToken: () => {} });
  const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(`acetate-${id}`));
  const set = (/** @type {string} */ id, /** @type {string} */ value, event = "change") => {
    const input = $(id);
    assert.ok(input, `#acetate-${id} exists`);
    input.value = value;
    input.dispatchEvent(new window.Event(event));
  };
  const click = (/** @type {string} */ id) => {
    assert.ok($(id), `#acetate-${id} exists`);
    $(id).dispatchEvent(new window.Event("click"));
  };
  const options = (/** @type {string} */ id) => [...$(id).querySelectorAll("option")].map((o) => o.getAttribute("value"));
  return { store, unmount, $, set, click, options };
}

test("LoRA rows: fitting by family and tininess, strengths checked, gone ones dropped with a note", () => {
  const listed = [
    { name: "a", family: "sd15", tiny: true },
    { name: "b", family: "sdxl", tiny: true },
    { name: "c", family: "sd15" },
  ];
  const base = { name: "tiny-sd15", family: "sd15", tiny: true };
  assert.deepEqual(fittingNames(listed, base), ["a"]);
  assert.deepEqual(fittingNames(listed, null), []);
  const values = storeRows("fg", "sd15", [{ name: "a", strength: "" }, { name: "", strength: "2" }, { name: "gone", strength: "1" }]);
  assert.deepEqual(Object.keys(values), [loraKey("fg", "sd15")]);
  assert.deepEqual(loraRows(values, "fg", "sd15").map((row) => row.name), ["a", "", "gone"]);
  assert.deepEqual(loraRows(values, "bg2fg", "sd15"), [], "per mode");
  assert.deepEqual(loraRows({ [loraKey("fg", "sd15")]: "not json" }, "fg", "sd15"), []);
  assert.deepEqual(requestLoras(values, "fg", base, listed), { loras: [{ name: "a", strength: 1 }], dropped: ["gone"] });
  assert.deepEqual(requestLoras({}, "fg", base, listed), { loras: undefined, dropped: [] });
  const bad = storeRows("fg", "sd15", [{ name: "a", strength: "2.5" }]);
  assert.throws(() => requestLoras(bad, "fg", base, listed), (error) => error instanceof InputProblem && error.field === "loras" && /-2 to 2/.test(error.message));
  assert.match(droppedNote(["gone"]), /"gone" is no longer on the server/);
  assert.equal(droppedNote([]), "");
  assert.equal(withEmbedding("", "tiny-emb-sd15"), "tiny-emb-sd15");
  assert.equal(withEmbedding("a fox ", "e"), "a fox, e");
  assert.equal(withEmbedding("a fox,", "e"), "a fox, e");
});

describe("LoRAs and embeddings against the real server", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  /** @type {any} */
  let modes;
  /** @type {any} */
  let listed;
  before(async () => {
    server = await startServer();
    modes = parseModes(await (await fetch(`${server.url}/api/modes`)).json());
    listed = await (await fetch(`${server.url}/api/models`)).json();
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  const answers = () => ({ modes, models: listed.bases, loras: listed.loras, embeddings: listed.embeddings, layerFiles: listed.layer_files, defaultModel: listed.default_base });

  test("every mode offers the LoRAs of the base's family (none where none fits)", TIMEOUT, () => {
    const names = listed.loras.map((/** @type {any} */ item) => item.name);
    assert.ok(names.includes("tiny-style-sd15") && names.includes("tiny-style-sdxl"), names.join(", "));
    let offered = 0;
    for (const mode of modes) {
      for (const base of listed.bases) {
        const settings = { ...defaultSettings(), mode: mode.name, model: base.name, values: storeRows(mode.name, base.family, [{ name: "", strength: "" }]) };
        const ui = mount({ ...answers(), settings });
        const fitting = fittingNames(listed.loras, base);
        if (fitting.length > 0) {
          assert.ok(ui.$("pick-loras-add"), `${mode.name} on ${base.name}: no LoRA picker`);
          assert.deepEqual(ui.options("pick-loras-0-name"), ["", ...fitting], `${mode.name} on ${base.name}`);
          offered += 1;
        } else {
          assert.equal(ui.$("pick-loras-add"), null, `${mode.name} on ${base.name}: nothing fits`);
        }
        ui.unmount();
      }
    }
    assert.ok(offered >= modes.length, "each mode on a tiny base at least");
  });

  test("rows are added, edited, removed and kept per mode and family; a gone LoRA is dropped with a note", TIMEOUT, () => {
    const ui = mount({ ...answers(), settings: { ...defaultSettings(), mode: "fg", model: "tiny-sd15" } });
    ui.click("pick-loras-add");
    ui.set("pick-loras-0-name", "tiny-style-sd15");
    ui.set("pick-loras-0-strength", "0.5", "input");
    ui.click("pick-loras-add");
    assert.ok(ui.$("pick-loras-1-name"));
    ui.click("pick-loras-1-remove");
    assert.equal(ui.$("pick-loras-1-name"), null);
    assert.deepEqual(loraRows(ui.store.state.settings.values, "fg", "sd15"), [{ name: "tiny-style-sd15", strength: "0.5" }], "kept with the settings (plugin storage)");
    ui.store.update({ settings: { ...ui.store.state.settings, mode: "bg2fg" } });
    assert.equal(ui.$("pick-loras-0-name"), null, "another mode: its own rows");
    ui.store.update({ settings: { ...ui.store.state.settings, mode: "fg", model: "tiny-sdxl" } });
    assert.equal(ui.$("pick-loras-0-name"), null, "another family: its own rows");
    assert.ok(ui.$("pick-loras-add"));
    ui.store.update({ settings: { ...ui.store.state.settings, model: "tiny-sd15" } });
    assert.equal(ui.$("pick-loras-0-name").value, "tiny-style-sd15");
    assert.equal(ui.$("pick-loras-0-strength").value, "0.5");
    // The server no longer lists it: no row, a visible note, nothing sent.
    const without = listed.loras.filter((/** @type {any} */ item) => item.name !== "tiny-style-sd15");
    ui.store.update({ loras: without });
    assert.equal(ui.$("pick-loras-0-name"), null);
    assert.match(ui.$("pick-loras-gone").textContent, /"tiny-style-sd15" is no longer on the server/);
    const base = listed.bases.find((/** @type {any} */ item) => item.name === "tiny-sd15");
    assert.deepEqual(requestLoras(ui.store.state.settings.values, "fg", base, without), { loras: undefined, dropped: ["tiny-style-sd15"] });
    ui.unmount();
  });

  test("a picked LoRA and an inserted embedding reach the job; the record names both", TIMEOUT, async () => {
    /** @type {string[]} */
    const bodies = [];
    const plugin = createPlugin({
      serverUrl: server.url,
      fetch: (/** @type {string} */ url, /** @type {any} */ init) => {
        if (url.endsWith("/api/jobs") && init?.method === "POST") bodies.push(Buffer.from(init.body).toString("latin1"));
        return fetch(url, init);
      },
    });
    plugin.world.addDocument({ width: 64, height: 64, name: "Styled" });
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    plugin.configure({ mode: "fg", model: "tiny-sd15", prompt: "a glass", seed: "2", values: { steps: "1", decode: "fast", width: "64", height: "64" } });
    const ui = mount({}, plugin);
    try {
      assert.deepEqual(ui.options("pick-embedding-prompt"), ["", "tiny-emb-sd15"]);
      assert.deepEqual(ui.options("pick-embedding-negative_prompt"), ["", "tiny-emb-sd15"]);
      ui.set("pick-embedding-prompt", "tiny-emb-sd15");
      assert.equal(plugin.store.state.settings.prompt, "a glass, tiny-emb-sd15");
      assert.equal(ui.$("pick-embedding-prompt").value, "", "the menu goes back to its title");
      ui.click("pick-loras-add");
      ui.set("pick-loras-0-name", "tiny-style-sd15");
      ui.set("pick-loras-0-strength", "0.8", "input");
      await plugin.controller.generate();
      assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
      const request = JSON.parse(/** @type {string} */ (/name="request"\r\n(?:[^\r\n]+\r\n)*\r\n(\{.*?\})\r\n--/s.exec(bodies[0])?.[1]));
      assert.deepEqual(request.loras, [{ name: "tiny-style-sd15", strength: 0.8 }]);
      assert.equal(request.prompt, "a glass, tiny-emb-sd15");
      const record = await (await fetch(`${server.url}/api/jobs/${plugin.store.state.history[0].id}`)).json();
      assert.equal(record.status, "done");
      assert.equal(record.result.files["lora:tiny-style-sd15"]?.name, "tiny-style-sd15");
      assert.equal(record.result.files["embedding:tiny-emb-sd15"]?.name, "tiny-emb-sd15");
      assert.deepEqual(record.result.parameters.loras, [{ name: "tiny-style-sd15", strength: 0.8 }]);
      // A remembered LoRA the server no longer lists: left out, and the message says so.
      plugin.store.update({ loras: [] });
      await plugin.controller.generate();
      assert.equal(plugin.store.state.message?.kind, "info");
      assert.match(plugin.store.state.message?.text ?? "", /"tiny-style-sd15" is no longer on the server for this model and was left out/);
      assert.ok(!bodies[1].includes('"loras"'));
      // No embedding fits: no menu.
      plugin.store.update({ embeddings: [] });
      assert.equal(ui.$("pick-embedding-prompt"), null);
    } finally {
      ui.unmount();
      plugin.controller.disconnect();
    }
  });
});
