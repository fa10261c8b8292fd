// @ts-check
/**
 * Panel entry point: wires Photoshop (src/photoshop.js), the state, the controller and the
 * DOM together. The lifecycle hooks return at once (UXP gives them 300 ms): everything slow,
 * network included, starts afterwards.
 */
"use strict";

const { Controller } = require("./src/controller.js");
const { createHost } = require("./src/photoshop.js");
const { defaultSettings, restoreSettings } = require("./src/settings.js");
const { createStore, restoreHistory } = require("./src/state.js");
const { mountPanel } = require("./src/ui/panel.js");

const PANEL_ID = "acetate";
const SAVE_DELAY_MS = 500;

const host = createHost();
/** @type {Controller|null} */
let controller = null;

/** @param {HTMLElement} root */
async function start(root) {
  const allowed = await host.allowedOrigins();
  const firstHttp = allowed.find((entry) => entry.startsWith("http"));
  const saved = /** @type {{settings?: unknown, history?: unknown}|null} */ (host.loadSaved());
  const settings = restoreSettings(saved?.settings, defaultSettings(firstHttp));
  const store = createStore(settings, await host.loadToken());
  store.update({ history: restoreHistory(saved?.history) });
  controller = new Controller({
    host,
    store,
    allowed,
    fetch: (url, init) => fetch(url, /** @type {any} */ (init)),
    version: await host.pluginVersion(),
    WebSocket: /** @type {any} */ (WebSocket),
  });
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let saveTimer;
  store.subscribe((state, previous) => {
    if (state.settings === previous.settings && state.history === previous.history) {
      return;
    }
    clearTimeout(saveTimer);
    saveTimer = setTimeout(() => {
      const history = state.history.map(({ id, mode, prompt, status, created, offset, seed }) => ({
        id, mode, prompt, status, created, offset, seed,
      }));
      host.save({ settings: state.settings, history });
    }, SAVE_DELAY_MS);
  });
  mountPanel(root, { store, controller, saveToken: (token) => void host.saveToken(token) });
  void controller.connect();
}

host.setupPanel(PANEL_ID, {
  // A single panel: its content is the document's body (index.html loads this script last).
  create() {
    start(document.body).catch((error) => {
      console.error("Acetate: the panel could not start", error);
    });
  },
  destroy() {
    controller?.disconnect();
  },
});
