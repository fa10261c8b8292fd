// @ts-check
/**
 * The panel's DOM: builds the controls once, mirrors the state into them on every change and
 * turns clicks and typing into controller actions. DOM only: no network, no Photoshop.
 */
"use strict";

const { DECODES, MODES } = require("../protocol.js");
const { FIELD_LABELS, MODE_HINTS, MODE_LABELS, visibleFields } = require("../settings.js");

/** @typedef {import("../state").PanelState} PanelState */
/** @typedef {import("../settings").Settings} Settings */
/** @typedef {import("../state").Store<PanelState>} PanelStore */
/** @typedef {import("../controller").Controller} Controller */

/** Text inputs: setting → [placeholder, multi-line]. */
const TEXT_FIELDS = /** @type {const} */ ([
  ["prompt", "What to generate", true],
  ["negativePrompt", "What to avoid", true],
  ["fgPrompt", "Extra words for the foreground", false],
  ["bgPrompt", "Extra words for the background", false],
  ["blendPrompt", "Extra words for the blended image", false],
]);
/** Number inputs: setting → placeholder (empty = the server's default). */
const NUMBER_FIELDS = /** @type {const} */ ([
  ["seed", "random"],
  ["steps", "default"],
  ["cfg", "default"],
  ["width", "default"],
  ["height", "default"],
  ["strength", "0.7"],
  ["scale", "2"],
  ["batch", "1"],
]);
const DECODE_LABELS = { tta: "Best (TTA)", fast: "Fast" };

/**
 * @param {Document} doc
 * @param {string} tag
 * @param {Record<string, string>} [attributes]
 * @param {(string|Node)[]} [children]
 * @returns {HTMLElement}
 */
function el(doc, tag, attributes = {}, children = []) {
  const node = doc.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") {
      node.textContent = value;
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    node.appendChild(typeof child === "string" ? doc.createTextNode(child) : child);
  }
  return node;
}

/**
 * Build the panel into `root` and keep it in sync with the store.
 * @param {HTMLElement} root
 * @param {{store: PanelStore, controller: Controller, saveToken: (token: string) => void}} deps
 * @returns {() => void} unmount
 */
function mountPanel(root, { store, controller, saveToken }) {
  const doc = root.ownerDocument;
  /** @type {Record<string, HTMLInputElement|HTMLTextAreaElement|HTMLSelectElement>} */
  const inputs = {};
  /** @type {Record<string, HTMLElement>} */
  const rows = {};

  /** @param {keyof Settings} key @param {string} value */
  const setSetting = (key, value) => {
    store.update({ settings: { ...store.state.settings, [key]: value } });
  };

  /**
   * @param {string} key
   * @param {HTMLInputElement|HTMLTextAreaElement|HTMLSelectElement} input
   */
  const row = (key, input) => {
    inputs[key] = input;
    input.setAttribute("id", `acetate-${key}`);
    rows[key] = el(doc, "div", { class: "row" }, [
      el(doc, "label", { for: `acetate-${key}`, text: FIELD_LABELS[key] ?? key }),
      input,
    ]);
    return rows[key];
  };

  const serverInput = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text" }));
  serverInput.addEventListener("change", () => setSetting("serverUrl", serverInput.value.trim()));
  const tokenInput = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "password", placeholder: "only if the server has one" }));
  tokenInput.addEventListener("change", () => {
    store.update({ token: tokenInput.value.trim() });
    saveToken(tokenInput.value.trim());
  });
  const connectButton = el(doc, "button", { text: "Connect" });
  connectButton.addEventListener("click", () => void controller.connect());
  const status = el(doc, "div", { class: "status" });

  const modeSelect = /** @type {HTMLSelectElement} */ (el(doc, "select"));
  for (const mode of MODES) {
    modeSelect.appendChild(el(doc, "option", { value: mode, text: MODE_LABELS[mode] }));
  }
  modeSelect.addEventListener("change", () => setSetting("mode", modeSelect.value));
  const hint = el(doc, "div", { class: "hint" });

  const modelSelect = /** @type {HTMLSelectElement} */ (el(doc, "select"));
  modelSelect.addEventListener("change", () => setSetting("model", modelSelect.value));

  const decodeSelect = /** @type {HTMLSelectElement} */ (el(doc, "select"));
  for (const decode of DECODES) {
    decodeSelect.appendChild(el(doc, "option", { value: decode, text: DECODE_LABELS[/** @type {"tta"|"fast"} */ (decode)] }));
  }
  decodeSelect.addEventListener("change", () => setSetting("decode", decodeSelect.value));

  const form = el(doc, "div", { class: "form" }, [
    row("mode", modeSelect),
    hint,
    row("model", modelSelect),
  ]);
  for (const [key, placeholder, multiline] of TEXT_FIELDS) {
    const input = /** @type {HTMLInputElement|HTMLTextAreaElement} */ (
      el(doc, multiline ? "textarea" : "input", multiline ? { placeholder } : { type: "text", placeholder })
    );
    input.addEventListener("input", () => setSetting(key, input.value));
    form.appendChild(row(key, input));
  }
  const numbers = el(doc, "div", { class: "grid" });
  for (const [key, placeholder] of NUMBER_FIELDS) {
    const input = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text", placeholder }));
    input.addEventListener("input", () => setSetting(key, input.value));
    numbers.appendChild(row(key, input));
  }
  numbers.appendChild(row("decode", decodeSelect));
  form.appendChild(numbers);

  const generateButton = el(doc, "button", { class: "primary", text: "Generate" });
  generateButton.addEventListener("click", () => void controller.generate());
  const cancelButton = el(doc, "button", { text: "Cancel" });
  cancelButton.addEventListener("click", () => void controller.cancel());
  const bar = el(doc, "div", { class: "bar-fill" });
  const progressText = el(doc, "div", { class: "progress-text" });
  const preview = /** @type {HTMLImageElement} */ (el(doc, "img", { class: "preview", alt: "" }));
  const message = el(doc, "div", { class: "message" });
  const historyList = el(doc, "div", { class: "history" });

  root.appendChild(
    el(doc, "div", { class: "acetate" }, [
      el(doc, "div", { class: "section" }, [
        el(doc, "div", { class: "row" }, [el(doc, "label", { text: "Server" }), serverInput, connectButton]),
        el(doc, "div", { class: "row" }, [el(doc, "label", { text: "Token" }), tokenInput]),
        status,
      ]),
      form,
      el(doc, "div", { class: "actions" }, [generateButton, cancelButton]),
      el(doc, "div", { class: "progress" }, [el(doc, "div", { class: "bar" }, [bar]), progressText, preview]),
      message,
      el(doc, "div", { class: "section" }, [el(doc, "h3", { text: "History" }), historyList]),
    ]),
  );

  let previewUrl = "";
  /** @type {ArrayBuffer|null} */
  let previewShown = null;

  /** @param {PanelState} state @param {PanelState|null} previous */
  const render = (state, previous) => {
    const { settings } = state;
    setValue(serverInput, settings.serverUrl);
    setValue(tokenInput, state.token);
    setValue(modeSelect, settings.mode);
    setValue(decodeSelect, settings.decode);
    hint.textContent = MODE_HINTS[settings.mode];
    const shown = visibleFields(settings.mode);
    for (const [key, rowElement] of Object.entries(rows)) {
      rowElement.style.display = key === "mode" || shown.has(key) ? "" : "none";
      if (key !== "mode" && key !== "model" && key !== "decode") {
        setValue(inputs[key], /** @type {Record<string, string>} */ (/** @type {unknown} */ (settings))[key]);
      }
    }
    if (!previous || previous.models !== state.models || previous.settings.model !== settings.model) {
      fillModels(doc, modelSelect, state);
    }
    const { connection } = state;
    const events = connection.status === "connected" ? ` · events: ${connection.socket === "open" ? "live" : "reconnecting…"}` : "";
    status.textContent = `${connection.message || "Not connected."}${events}`;
    status.className = `status ${connection.status}`;
    connectButton.textContent = connection.status === "connected" ? "Reconnect" : "Connect";

    setEnabled(generateButton, !state.busy);
    setEnabled(cancelButton, state.busy);
    const job = state.job;
    const fraction = job && job.total > 0 ? job.step / job.total : 0;
    bar.style.width = `${Math.round(fraction * 100)}%`;
    progressText.textContent = job ? describeProgress(job) : "";
    if (job?.preview && job.preview !== previewShown) {
      previewShown = job.preview;
      previewUrl = showPreview(preview, job.preview, previewUrl);
    } else if (!job && previewShown) {
      previewShown = null;
      previewUrl = showPreview(preview, null, previewUrl);
    }
    message.textContent = state.message ? state.message.text : "";
    message.className = `message ${state.message ? state.message.kind : ""}`;
    if (!previous || previous.history !== state.history || previous.busy !== state.busy) {
      renderHistory(doc, historyList, state, controller);
    }
  };

  render(store.state, null);
  return store.subscribe(render);
}

/**
 * @param {HTMLInputElement|HTMLTextAreaElement|HTMLSelectElement} input
 * @param {string} value
 */
function setValue(input, value) {
  // Only when it differs, so that typing is never interrupted by an echo of itself.
  if (input.value !== value) {
    input.value = value;
  }
}

/** @param {HTMLElement} button @param {boolean} enabled */
function setEnabled(button, enabled) {
  if (enabled) {
    button.removeAttribute("disabled");
  } else {
    button.setAttribute("disabled", "");
  }
}

/**
 * @param {Document} doc
 * @param {HTMLSelectElement} select
 * @param {PanelState} state
 */
function fillModels(doc, select, state) {
  select.textContent = "";
  select.appendChild(el(doc, "option", { value: "", text: "Server default" }));
  const names = state.models.map((model) => model.name);
  for (const model of state.models) {
    const label = model.tiny || model.test || /^tiny-/.test(model.name) ? `${model.name} (test model)` : model.name;
    select.appendChild(el(doc, "option", { value: model.name, text: label }));
  }
  if (state.settings.model && !names.includes(state.settings.model)) {
    select.appendChild(el(doc, "option", { value: state.settings.model, text: `${state.settings.model} (not on this server)` }));
  }
  select.value = state.settings.model;
}

/** @param {import("../state").JobProgress} job */
function describeProgress(job) {
  switch (job.phase) {
    case "reading":
      return "Reading the document…";
    case "uploading":
      return "Sending to the server…";
    case "queued":
      return job.position ? `Waiting in the queue (position ${job.position})…` : "Waiting in the queue…";
    case "started": {
      if (job.total === 0) {
        return "Loading the model…";
      }
      const eta = job.etaS !== null && job.etaS > 0 ? ` · about ${Math.ceil(job.etaS)} s left` : "";
      return `Step ${job.step} of ${job.total}${eta}`;
    }
    case "downloading":
      return "Downloading the layers…";
    case "inserting":
      return "Adding the layers…";
    default:
      return "";
  }
}

/**
 * Show JPEG bytes in the preview image (UXP's ImageBlob), releasing the previous object URL.
 * @param {HTMLImageElement} image
 * @param {ArrayBuffer|null} jpeg
 * @param {string} previousUrl
 * @returns {string} the new object URL
 */
function showPreview(image, jpeg, previousUrl) {
  if (previousUrl) {
    URL.revokeObjectURL(previousUrl);
  }
  const ImageBlobClass = /** @type {any} */ (globalThis).ImageBlob;
  if (!jpeg || typeof ImageBlobClass !== "function") {
    image.removeAttribute("src");
    image.style.display = "none";
    return "";
  }
  const url = URL.createObjectURL(new ImageBlobClass(jpeg, { type: "image/jpeg" }));
  image.setAttribute("src", url);
  image.style.display = "";
  return url;
}

/**
 * @param {Document} doc
 * @param {HTMLElement} list
 * @param {PanelState} state
 * @param {Controller} controller
 */
function renderHistory(doc, list, state, controller) {
  list.textContent = "";
  if (state.history.length === 0) {
    list.appendChild(el(doc, "div", { class: "hint", text: "Finished jobs appear here." }));
    return;
  }
  for (const entry of state.history) {
    const seed = entry.seed !== null && entry.seed !== undefined ? ` · seed ${entry.seed}` : "";
    const text = `${MODE_LABELS[entry.mode]} · ${entry.prompt.slice(0, 40) || "(no prompt)"}${seed} · ${entry.status}`;
    const item = el(doc, "div", { class: "history-item", title: entry.error ?? entry.prompt }, [
      el(doc, "span", { text }),
    ]);
    if (entry.status === "done") {
      const insert = el(doc, "button", { text: "Insert" });
      insert.addEventListener("click", () => void controller.insertFromHistory(entry.id));
      const psd = el(doc, "button", { text: "PSD" });
      psd.addEventListener("click", () => void controller.openPsd(entry.id));
      setEnabled(insert, !state.busy);
      setEnabled(psd, !state.busy);
      item.appendChild(insert);
      item.appendChild(psd);
    }
    list.appendChild(item);
  }
}

module.exports = { mountPanel, describeProgress };
