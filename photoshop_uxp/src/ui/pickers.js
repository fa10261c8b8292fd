// @ts-check
/**
 * The panel's pickers beyond the mode's options: which layer a mode's image and mask are read
 * from (sources.js), LoRAs with their strengths and the "Insert embedding" menus (loras.js), and
 * the "alpha as an editable mask" option (insertion.js). DOM only; each builder gets the panel's
 * kit (its element factory, labelled rows and setters) and returns elements to append. Control
 * ids start with `pick-` (rebuilt with the mode's controls).
 */
"use strict";

const { ALPHA_MASK_KEY } = require("../insertion.js");
const { MAX_LORAS, droppedNote, fittingNames, goneLoras, loraRows, storeRows, withEmbedding } = require("../loras.js");
const { defaultSourceLabel, maskInputs, maskKey, sourceInputs, sourceKey } = require("../sources.js");

/** @typedef {import("../state").PanelState} PanelState */
/** @typedef {import("../settings").Settings} Settings */
/** @typedef {import("../protocol").ModeInfo} ModeInfo */
/** @typedef {import("../protocol").BaseModelInfo} BaseModelInfo */
/** @typedef {HTMLInputElement|HTMLTextAreaElement|HTMLSelectElement} Control */

/**
 * What the panel lends the builders.
 * @typedef {Object} Kit
 * @property {(tag: string, attributes?: Record<string, string>, children?: (string|Node)[]) => HTMLElement} el
 * @property {(id: string, label: string, input: Control, read: ((settings: Settings) => string)|null, help?: string) => HTMLElement} row
 * @property {(id: string, input: HTMLInputElement, read: (settings: Settings) => string) => void} bindCheckbox
 * @property {() => PanelState} state
 * @property {(patch: Record<string, string>) => void} setValues merged into `settings.values`
 * @property {(prompt: string) => void} setPrompt
 * @property {() => {id: number, name: string}[]} documentLayers the active document's layers, top first
 */

/**
 * Fill a layer picker: its default choice first, then every layer of the active document.
 * @param {Kit} kit
 * @param {HTMLSelectElement} select
 * @param {string} first the label of "" (the default)
 */
function fillLayers(kit, select, first) {
  select.appendChild(kit.el("option", { value: "", text: first }));
  for (const item of kit.documentLayers()) {
    select.appendChild(kit.el("option", { value: String(item.id), text: item.name }));
  }
}

/**
 * A picker per image the mode reads from a layer (or the canvas), and per mask it reads from
 * the selection: "" keeps the default source, a layer id reads that layer (a mask: its alpha).
 * @param {Kit} kit
 * @param {ModeInfo} mode
 * @returns {HTMLElement[]}
 */
function sourcePickers(kit, mode) {
  /** @type {HTMLElement[]} */
  const rows = [];
  const picker = (/** @type {string} */ id, /** @type {string} */ key, /** @type {string} */ label, /** @type {string} */ first, /** @type {string} */ help) => {
    const select = /** @type {HTMLSelectElement} */ (kit.el("select"));
    fillLayers(kit, select, first);
    select.addEventListener("change", () => kit.setValues({ [key]: select.value }));
    rows.push(kit.row(id, label, select, (settings) => settings.values[key] ?? "", help));
  };
  for (const input of sourceInputs(mode)) {
    picker(`pick-source-${input.field}`, sourceKey(mode.name, input.field), `${input.label} from`, defaultSourceLabel(input), `${input.help} Any layer of the document (a group or text layer as you see it).`);
  }
  for (const input of maskInputs(mode)) {
    picker(`pick-mask-${input.field}`, maskKey(mode.name, input.field), `${input.label} from`, "The selection", `${input.help} Or the painted pixels (alpha) of a layer.`);
  }
  return rows;
}

/**
 * The LoRA rows of the mode on the base's family: a LoRA that fits the base and a strength,
 * Add and Remove; a note for remembered LoRAs the server no longer lists. Nothing when none
 * fits and none is remembered.
 * @param {Kit} kit
 * @param {ModeInfo} mode
 * @param {BaseModelInfo|null} base
 * @returns {HTMLElement[]}
 */
function loraPicker(kit, mode, base) {
  const family = base && typeof base.family === "string" ? base.family : null;
  const fitting = fittingNames(kit.state().loras, base);
  const rows = loraRows(kit.state().settings.values, mode.name, family);
  const gone = goneLoras(rows, fitting);
  if (!family || (fitting.length === 0 && gone.length === 0)) {
    return [];
  }
  // The rows shown: the ones still usable (a gone LoRA is only named in the note and is
  // forgotten with the next edit).
  const kept = () => loraRows(kit.state().settings.values, mode.name, family).filter((item) => item.name === "" || fitting.includes(item.name));
  const save = (/** @type {import("../loras").LoraRow[]} */ next) => kit.setValues(storeRows(mode.name, family, next));
  const box = kit.el("div", { class: "list", id: "acetate-pick-loras", title: "Style or character LoRAs applied to the base for this job." }, [kit.el("h3", { text: "LoRAs" })]);
  kept().forEach((_, index) => {
    const name = /** @type {HTMLSelectElement} */ (kit.el("select"));
    name.appendChild(kit.el("option", { value: "", text: "Choose a LoRA" }));
    for (const item of fitting) {
      name.appendChild(kit.el("option", { value: item, text: item }));
    }
    const update = (/** @type {"name"|"strength"} */ field, /** @type {string} */ value) => {
      const next = kept().map((item) => ({ ...item }));
      next[index] = { ...next[index], [field]: value };
      save(next);
    };
    name.addEventListener("change", () => update("name", name.value));
    const strength = /** @type {HTMLInputElement} */ (kit.el("input", { type: "text", placeholder: "1.0" }));
    strength.addEventListener("input", () => update("strength", strength.value));
    const remove = kit.el("button", { text: "Remove", class: "list-remove", id: `acetate-pick-loras-${index}-remove` });
    remove.addEventListener("click", () => save(kept().filter((__, other) => other !== index)));
    box.appendChild(
      kit.el("div", { class: "list-row" }, [
        kit.row(`pick-loras-${index}-name`, "LoRA", name, () => kept()[index]?.name ?? ""),
        kit.row(`pick-loras-${index}-strength`, "Strength", strength, () => kept()[index]?.strength ?? "", "-2 to 2 (negative: the opposite); empty: 1."),
        remove,
      ]),
    );
  });
  if (fitting.length > 0) {
    const add = kit.el("button", { text: "Add a LoRA", class: "list-add", id: "acetate-pick-loras-add" });
    if (kept().length >= MAX_LORAS) {
      add.setAttribute("disabled", "");
    }
    add.addEventListener("click", () => save([...kept(), { name: "", strength: "" }]));
    box.appendChild(add);
  }
  if (gone.length > 0) {
    box.appendChild(kit.el("div", { class: "hint", id: "acetate-pick-loras-gone", text: droppedNote(gone) }));
  }
  return [box];
}

/**
 * "Insert embedding" menus for the prompt and (when the mode has one) the negative prompt:
 * picking an embedding appends its name. Nothing when no embedding fits the base.
 * @param {Kit} kit
 * @param {ModeInfo} mode
 * @param {BaseModelInfo|null} base
 * @returns {HTMLElement[]}
 */
function embeddingMenus(kit, mode, base) {
  const names = fittingNames(kit.state().embeddings, base);
  if (names.length === 0) {
    return [];
  }
  /** @type {[string, string, (name: string) => void][]} */
  const targets = [["prompt", "Prompt", (name) => kit.setPrompt(withEmbedding(kit.state().settings.prompt, name))]];
  if (mode.options.some((option) => option.name === "negative_prompt")) {
    targets.push([
      "negative_prompt",
      "Negative prompt",
      (name) => kit.setValues({ negative_prompt: withEmbedding(kit.state().settings.values.negative_prompt ?? "", name) }),
    ]);
  }
  return targets.map(([field, label, insert]) => {
    const select = /** @type {HTMLSelectElement} */ (kit.el("select"));
    select.appendChild(kit.el("option", { value: "", text: "Insert embedding…" }));
    for (const name of names) {
      select.appendChild(kit.el("option", { value: name, text: name }));
    }
    select.addEventListener("change", () => {
      const name = select.value;
      if (name) {
        insert(name);
      }
    });
    return kit.row(`pick-embedding-${field}`, `${label}: embedding`, select, () => "", "Textual-inversion embeddings of the server: their name in the prompt applies them.");
  });
}

/**
 * The "alpha as an editable layer mask" checkbox.
 * @param {Kit} kit
 * @returns {HTMLElement}
 */
function alphaMaskOption(kit) {
  const box = /** @type {HTMLInputElement} */ (kit.el("input", { type: "checkbox" }));
  box.addEventListener("change", () => kit.setValues({ [ALPHA_MASK_KEY]: box.checked ? "true" : "false" }));
  box.setAttribute("title", "Insert each layer opaque with its transparency as a layer mask, so the edge can be painted.");
  kit.bindCheckbox("pick-alpha_mask", box, (settings) => settings.values[ALPHA_MASK_KEY] ?? "");
  return kit.el("div", { class: "row" }, [kit.el("label", { class: "field" }, [kit.el("span", { class: "label-text", text: "Alpha as an editable layer mask" }), box])]);
}

/**
 * What decides the pickers' shape (rebuilt when it changes).
 * @param {PanelState} state
 * @param {ModeInfo|null} mode
 * @param {BaseModelInfo|null} base
 */
function pickerShape(state, mode, base) {
  const family = base && typeof base.family === "string" ? base.family : null;
  const rows = mode ? loraRows(state.settings.values, mode.name, family) : [];
  const fitting = fittingNames(state.loras, base);
  return [fitting, rows.filter((item) => item.name === "" || fitting.includes(item.name)).length, goneLoras(rows, fitting), fittingNames(state.embeddings, base)];
}

module.exports = { alphaMaskOption, embeddingMenus, fillLayers, loraPicker, pickerShape, sourcePickers };
