// @ts-check
/**
 * The panel's DOM: builds the controls once, mirrors the state into them on every change and
 * turns clicks and typing into controller actions. DOM only: no network, no Photoshop.
 */
"use strict";

const { baseModel, choosable, fileKey, fileLabel, fileParts, partLabel } = require("../layerfiles.js");
const { fixedLayers, layoutList, omittableInputs, optionDefault, pickMode, shownOptions } = require("../modes.js");
const { FIELD_LABELS, inputSource, layoutFromGroup, layoutKey, listRows, omitKey, sourceKey } = require("../settings.js");
const { KIND_LABELS, LAYER_KEY, fittingControlNets, takesStructure } = require("../structure.js");
const { alphaMaskOption, embeddingMenus, fillLayers, loraPicker, pickerShape, sourcePickers } = require("./pickers.js");

/** How the panel names where an input is read from. */
const SOURCE_LABELS = { layer: "Active layer", canvas: "Whole canvas", selection: "Selection" };

/** @typedef {import("../state").PanelState} PanelState */
/** @typedef {import("../settings").Settings} Settings */
/** @typedef {import("../state").Store<PanelState>} PanelStore */
/** @typedef {import("../controller").Controller} Controller */
/** @typedef {import("../protocol").ModeInfo} ModeInfo */
/** @typedef {import("../protocol").OptionInfo} OptionInfo */
/** @typedef {import("../protocol").ListInputInfo} ListInputInfo */
/** @typedef {HTMLInputElement|HTMLTextAreaElement|HTMLSelectElement} Control */

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
 * The family of the chosen model, when the server said.
 * @param {PanelState} state
 * @returns {string|null}
 */
function familyOf(state) {
  const model = state.models.find((item) => item.name === state.settings.model);
  return typeof model?.family === "string" ? model.family : null;
}

/**
 * A number field's placeholder: its default for the chosen model's family, or every
 * family's when no model is chosen ("SDXL 1024 · SD1.5 512").
 * @param {OptionInfo} option
 * @param {ModeInfo} mode
 * @param {string|null} family
 */
function placeholderOf(option, mode, family) {
  const perFamily = option.family_defaults ?? null;
  if (perFamily && !family) {
    const labels = new Map(mode.families.map((item) => [item.family, item.label]));
    return Object.entries(perFamily).map(([name, value]) => `${labels.get(name) ?? name} ${value}`).join(" · ");
  }
  const value = optionDefault(option, family);
  return value === null || value === undefined || value === "" ? "default" : String(value);
}

/**
 * Build the panel into `root` and keep it in sync with the store. The mode's controls are
 * built from its declaration (`GET /api/modes`) and rebuilt when the mode, the model's
 * family, a list's length or a `depends_on` switch changes.
 * @param {HTMLElement} root
 * @param {{store: PanelStore, controller: Controller, saveToken: (token: string) => void}} deps
 * @returns {() => void} unmount
 */
function mountPanel(root, { store, controller, saveToken }) {
  const doc = root.ownerDocument;
  /** @type {Map<string, {input: Control, read: (settings: Settings) => string}>} controls kept in sync */
  const bound = new Map();
  let advancedOpen = false;

  /** @param {Partial<Settings>} patch */
  const patchSettings = (patch) => store.update({ settings: { ...store.state.settings, ...patch } });
  /** @param {"serverUrl"|"model"|"mode"|"prompt"|"seed"|"batch"} key @param {string} value */
  const setSetting = (key, value) => patchSettings({ [key]: value });
  /** @param {string} key @param {string} value */
  const setValueOf = (key, value) => patchSettings({ values: { ...store.state.settings.values, [key]: value } });
  /** @param {string} field @param {Record<string, string>[]} rows */
  const setRows = (field, rows) => patchSettings({ lists: { ...store.state.settings.lists, [field]: rows } });

  /**
   * A labelled row; the control is kept in sync with `read(settings)`.
   * @param {string} id
   * @param {string} label
   * @param {Control} input
   * @param {((settings: Settings) => string)|null} read
   * @param {string} [help]
   */
  const row = (id, label, input, read, help = "") => {
    input.setAttribute("id", `acetate-${id}`);
    if (help) {
      input.setAttribute("title", help);
    }
    if (read) {
      bound.set(id, { input, read });
    }
    return el(doc, "div", { class: "row" }, [wrap(label, input)]);
  };
  /**
   * A label wrapped around its control: UXP does not support `<label for>` (uxp-api
   * known-issues.md: "Wrap `<label>` around the control instead").
   * @param {string} text
   * @param {Node[]} controls
   */
  const wrap = (text, ...controls) => el(doc, "label", { class: "field" }, [el(doc, "span", { class: "label-text", text }), ...controls]);
  /** @type {import("./pickers").Kit} what the pickers (pickers.js) build with */
  const kit = {
    el: (tag, attributes, children) => el(doc, tag, attributes, children),
    row,
    bindCheckbox: (id, box, read) => {
      box.setAttribute("id", `acetate-${id}`);
      const sync = (/** @type {Settings} */ settings) => {
        const text = read(settings);
        box.checked = text === "true";
        return text;
      };
      bound.set(id, { input: box, read: sync });
    },
    state: () => store.state,
    setValues: (patch) => patchSettings({ values: { ...store.state.settings.values, ...patch } }),
    setPrompt: (prompt) => setSetting("prompt", prompt),
    documentLayers: () => controller.host?.activeDocument?.()?.layers ?? [],
  };

  const serverInput = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text" }));
  serverInput.addEventListener("change", () => setSetting("serverUrl", serverInput.value.trim()));
  const tokenInput = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "password", placeholder: "only if the server has one" }));
  // uxp-api known-issues.md: "Password field values cannot be read on macOS … set the type to
  // text on focus and switch it back to password on blur". The value is read while it is text.
  const saveTokenValue = () => {
    const value = tokenInput.value.trim();
    if (value !== store.state.token) {
      store.update({ token: value });
      saveToken(value);
    }
  };
  tokenInput.addEventListener("focus", () => tokenInput.setAttribute("type", "text"));
  tokenInput.addEventListener("change", saveTokenValue);
  tokenInput.addEventListener("blur", () => {
    saveTokenValue();
    tokenInput.setAttribute("type", "password");
  });
  const connectButton = el(doc, "button", { text: "Connect" });
  connectButton.addEventListener("click", () => void controller.connect());
  const status = el(doc, "div", { class: "status" });
  const details = el(doc, "div", { class: "details", title: "What the server saw of this panel's requests (for the Origin rule)" });

  const modeSelect = /** @type {HTMLSelectElement} */ (el(doc, "select"));
  modeSelect.addEventListener("change", () => setSetting("mode", modeSelect.value));
  const hint = el(doc, "div", { class: "hint" });
  const modelSelect = /** @type {HTMLSelectElement} */ (el(doc, "select"));
  modelSelect.addEventListener("change", () => setSetting("model", modelSelect.value));

  const promptInput = /** @type {HTMLTextAreaElement} */ (el(doc, "textarea", { placeholder: "What to generate" }));
  promptInput.addEventListener("input", () => setSetting("prompt", promptInput.value));
  const seedInput = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text", placeholder: "random" }));
  seedInput.addEventListener("input", () => setSetting("seed", seedInput.value));
  const batchInput = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text", placeholder: "1" }));
  batchInput.addEventListener("input", () => setSetting("batch", batchInput.value));

  const modeRow = el(doc, "div", { class: "row" }, [wrap(FIELD_LABELS.mode, modeSelect)]);
  modeSelect.setAttribute("id", "acetate-mode");
  const modelRow = el(doc, "div", { class: "row" }, [wrap(FIELD_LABELS.model, modelSelect)]);
  modelSelect.setAttribute("id", "acetate-model");
  const basic = el(doc, "div", { class: "options" });
  const embeddingBox = el(doc, "div", { class: "options" });
  const advancedToggle = el(doc, "button", { class: "advanced-toggle", text: "Advanced ▸" });
  const advanced = el(doc, "div", { class: "options advanced" });
  advancedToggle.addEventListener("click", () => {
    advancedOpen = !advancedOpen;
    showAdvanced();
  });
  const showAdvanced = () => {
    advanced.style.display = advancedOpen ? "" : "none";
    advancedToggle.textContent = advancedOpen ? "Advanced ▾" : "Advanced ▸";
  };
  const fixedRows = el(doc, "div", { class: "grid" }, [
    row("seed", FIELD_LABELS.seed, seedInput, (settings) => settings.seed),
    row("batch", FIELD_LABELS.batch, batchInput, (settings) => settings.batch),
  ]);
  const form = el(doc, "div", { class: "form" }, [
    modeRow,
    hint,
    modelRow,
    row("prompt", FIELD_LABELS.prompt, promptInput, (settings) => settings.prompt),
    embeddingBox,
    fixedRows,
    basic,
    advancedToggle,
    advanced,
  ]);
  showAdvanced();

  const generateButton = el(doc, "button", { class: "primary", text: "Generate" });
  generateButton.addEventListener("click", () => void controller.generate());
  const cancelButton = el(doc, "button", { text: "Cancel" });
  cancelButton.addEventListener("click", () => void controller.cancel());
  const undoButton = el(doc, "button", { text: "Undo whole result", title: "Remove every group of the last result in one step" });
  undoButton.addEventListener("click", () => void controller.undoResult());
  const bar = el(doc, "div", { class: "bar-fill" });
  const progressText = el(doc, "div", { class: "progress-text" });
  const preview = /** @type {HTMLImageElement} */ (el(doc, "img", { class: "preview", alt: "" }));
  const message = el(doc, "div", { class: "message" });
  const historyList = el(doc, "div", { class: "history" });

  root.appendChild(
    el(doc, "div", { class: "acetate" }, [
      el(doc, "div", { class: "section" }, [
        el(doc, "div", { class: "row" }, [wrap("Server", serverInput), connectButton]),
        el(doc, "div", { class: "row" }, [wrap("Token", tokenInput)]),
        status,
        details,
      ]),
      form,
      el(doc, "div", { class: "actions" }, [generateButton, cancelButton, undoButton]),
      el(doc, "div", { class: "progress" }, [el(doc, "div", { class: "bar" }, [bar]), progressText, preview]),
      message,
      el(doc, "div", { class: "section" }, [el(doc, "h3", { text: "History" }), historyList]),
    ]),
  );

  /**
   * One option's control, generic by its type.
   * @param {OptionInfo} option
   * @param {ModeInfo} mode
   * @param {string|null} family
   * @param {string} id
   * @param {(settings: Settings) => string} read
   * @param {(value: string) => void} write
   * @returns {HTMLElement}
   */
  const optionControl = (option, mode, family, id, read, write) => {
    if (option.type === "enum") {
      const select = /** @type {HTMLSelectElement} */ (el(doc, "select"));
      const fallback = optionDefault(option, family);
      select.appendChild(el(doc, "option", { value: "", text: fallback === null || fallback === undefined ? "Default" : `Default (${fallback})` }));
      for (const choice of option.choices ?? []) {
        select.appendChild(el(doc, "option", { value: choice, text: choice }));
      }
      select.addEventListener("change", () => write(select.value));
      return row(id, option.label, select, read, option.help);
    }
    if (option.type === "bool") {
      const box = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "checkbox" }));
      box.addEventListener("change", () => write(box.checked ? "true" : "false"));
      const sync = (/** @type {Settings} */ settings) => {
        const text = read(settings);
        box.checked = text === "" ? Boolean(optionDefault(option, family)) : text === "true";
        return text;
      };
      box.setAttribute("id", `acetate-${id}`);
      box.setAttribute("title", option.help);
      bound.set(id, { input: box, read: sync });
      return el(doc, "div", { class: "row" }, [wrap(option.label, box)]);
    }
    const placeholder = option.type === "text" ? String(optionDefault(option, family) ?? "") : placeholderOf(option, mode, family);
    const input = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text", placeholder }));
    input.addEventListener("input", () => write(input.value));
    return row(id, option.label, input, read, option.help);
  };

  /**
   * A list input: one row of item options per item, with Add and Remove between
   * `min_items` and `max_items`.
   * @param {ListInputInfo} list
   * @param {ModeInfo} mode
   * @param {string|null} family
   */
  const listEditor = (list, mode, family) => {
    const rows = listRows(store.state.settings, list);
    const box = el(doc, "div", { class: "list", id: `acetate-list-${list.field}`, title: list.help }, [el(doc, "h3", { text: list.label })]);
    if (layoutList(mode)?.list.field === list.field) {
      // A list placed by regions (a scene's objects): from the selected layer group, one
      // object per layer, or typed as rows with boxes.
      const key = layoutKey(list.field);
      const source = /** @type {HTMLSelectElement} */ (el(doc, "select"));
      source.appendChild(el(doc, "option", { value: "", text: "The selected layer group" }));
      source.appendChild(el(doc, "option", { value: "rows", text: "Rows typed here" }));
      source.addEventListener("change", () => setValueOf(key, source.value));
      box.appendChild(row(`list-${key}`, `${list.label} from`, source, (settings) => settings.values[key] ?? "", list.help));
      if (layoutFromGroup(store.state.settings, mode)) {
        box.appendChild(
          el(doc, "div", {
            class: "hint",
            text:
              "Select a group with one layer per object: the layer's name is its prompt, its painted pixels " +
              "are where it goes, the bottom layer comes first. The group is hidden when the result lands.",
          }),
        );
        return box;
      }
    }
    rows.forEach((_, index) => {
      const fields = list.item_options.map((option) =>
        optionControl(
          option,
          mode,
          family,
          `list-${list.field}-${index}-${option.name}`,
          (settings) => listRows(settings, list)[index]?.[option.name] ?? "",
          (value) => {
            const next = listRows(store.state.settings, list).map((item) => ({ ...item }));
            next[index] = { ...next[index], [option.name]: value };
            setRows(list.field, next);
          },
        ),
      );
      const remove = el(doc, "button", { text: "Remove", class: "list-remove" });
      setEnabled(remove, rows.length > list.min_items);
      remove.addEventListener("click", () => {
        const next = listRows(store.state.settings, list).filter((__, other) => other !== index);
        setRows(list.field, next);
      });
      box.appendChild(el(doc, "div", { class: "list-row" }, [el(doc, "span", { text: `${index + 1}.` }), ...fields, remove]));
    });
    const add = el(doc, "button", { text: `Add to ${list.label}`, class: "list-add" });
    setEnabled(add, rows.length < list.max_items);
    add.addEventListener("click", () => setRows(list.field, [...listRows(store.state.settings, list), {}]));
    box.appendChild(add);
    return box;
  };

  let structureRefreshes = 0;
  /**
   * The Structure section: kind, a layer of the document ("None" first), strength and the
   * ControlNets that fit the base ("Default" first); values in `settings.values`.
   * @param {ModeInfo} mode
   * @param {string[]} controlnets
   */
  const structureSection = (mode, controlnets) => {
    const box = el(doc, "div", { class: "structure" }, [el(doc, "div", { class: "list-title", text: "Structure" })]);
    const kind = /** @type {HTMLSelectElement} */ (el(doc, "select"));
    for (const [value, text] of Object.entries(KIND_LABELS)) {
      kind.appendChild(el(doc, "option", { value, text }));
    }
    kind.addEventListener("change", () => setValueOf("control", kind.value));
    const option = mode.options.find((item) => item.name === "control");
    box.appendChild(row("structure-kind", option?.label ?? "Structure", kind, (settings) => settings.values.control || "none", option?.help));
    const layer = /** @type {HTMLSelectElement} */ (el(doc, "select"));
    fillLayers(kit, layer, "None");
    layer.addEventListener("change", () => {
      /** @type {Record<string, string>} */
      const values = { ...store.state.settings.values, [LAYER_KEY]: layer.value };
      // A layer picked while the kind is none: its edges, the kind that fits any layer.
      if (layer.value && !["canny", "image"].includes(values.control ?? "")) values.control = "canny";
      patchSettings({ values });
    });
    const refresh = el(doc, "button", { text: "⟳", title: "List the document's layers again" });
    refresh.addEventListener("click", () => {
      structureRefreshes += 1;
      store.update({});
    });
    box.appendChild(row("structure-layer", "Layer", layer, (settings) => settings.values[LAYER_KEY] ?? "", "The layer whose pixels steer the result."));
    box.appendChild(refresh);
    const strength = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text", placeholder: "1.0" }));
    strength.addEventListener("input", () => setValueOf("control_strength", strength.value));
    box.appendChild(row("structure-strength", "Strength", strength, (settings) => settings.values.control_strength ?? "", "0 to 2: how strongly the structure steers."));
    const net = /** @type {HTMLSelectElement} */ (el(doc, "select"));
    net.appendChild(el(doc, "option", { value: "", text: "Default" }));
    for (const name of controlnets) {
      net.appendChild(el(doc, "option", { value: name, text: name }));
    }
    net.addEventListener("change", () => setValueOf("controlnet", net.value));
    const read = (/** @type {Settings} */ settings) => (controlnets.includes(settings.values.controlnet ?? "") ? (settings.values.controlnet ?? "") : "");
    box.appendChild(row("structure-controlnet", "ControlNet", net, read, "Default: the server's ControlNet for the base's family."));
    return box;
  };

  let shape = "";
  /**
   * Rebuild the mode's controls when their shape changed (never while typing into one).
   * @param {PanelState} state
   * @param {ModeInfo|null} mode
   */
  const buildModeControls = (state, mode) => {
    const family = familyOf(state);
    const options = mode ? shownOptions(mode, state.settings.values, family) : [];
    // One picker per part with a choice of LayerDiffusion files (trained ones included).
    const base = baseModel(state.models, state.settings.model, state.defaultModel);
    const parts = fileParts(mode, base, state.layerFiles).filter(choosable);
    const next = JSON.stringify([
      mode?.name ?? null,
      state.modes.length,
      family,
      options.map((option) => option.name),
      base?.name ?? null,
      parts.map((part) => [part.part, part.files.map((file) => file.name)]),
      mode ? mode.lists.map((list) => listRows(state.settings, list).length) : [],
      mode ? Boolean(layoutFromGroup(state.settings, mode)) : false,
      fittingControlNets(state.controlnets ?? [], base),
      structureRefreshes,
      pickerShape(state, mode, base),
    ]);
    if (next === shape && mode === lastMode) {
      return;
    }
    shape = next;
    lastMode = mode;
    for (const key of [...bound.keys()]) {
      if (key.startsWith("opt-") || key.startsWith("list-") || key.startsWith("structure-") || key.startsWith("pick-")) {
        bound.delete(key);
      }
    }
    basic.textContent = "";
    advanced.textContent = "";
    embeddingBox.textContent = "";
    if (!mode) {
      advancedToggle.style.display = "none";
      advanced.style.display = "none";
      return;
    }
    for (const option of options) {
      const target = option.advanced ? advanced : basic;
      if (option.type === "prompts") {
        for (const layer of fixedLayers(mode)) {
          const key = `${option.name}.${layer.name}`;
          const input = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "text", placeholder: `Extra words for ${layer.label.toLowerCase()}` }));
          input.addEventListener("input", () => setValueOf(key, input.value));
          target.appendChild(row(`opt-${key}`, `${layer.label} prompt`, input, (settings) => settings.values[key] ?? "", option.help));
        }
        continue;
      }
      target.appendChild(
        optionControl(option, mode, family, `opt-${option.name}`, (settings) => settings.values[option.name] ?? "", (value) => setValueOf(option.name, value)),
      );
    }
    for (const part of parts) {
      const key = fileKey(mode.name, String(base?.family), part.part);
      const select = /** @type {HTMLSelectElement} */ (el(doc, "select"));
      select.appendChild(el(doc, "option", { value: "", text: "Default" }));
      for (const file of part.files) {
        select.appendChild(el(doc, "option", { value: file.name, text: fileLabel(file) }));
      }
      select.addEventListener("change", () => setValueOf(key, select.value));
      // A remembered file that no longer fits shows (and counts) as Default.
      const read = (/** @type {Settings} */ settings) => {
        const name = settings.values[key] ?? "";
        return part.files.some((file) => file.name === name) ? name : "";
      };
      const help = `The LayerDiffusion file for the ${part.part.replace(/_/g, " ")} part. Default: the server's official file; trained files come from acetate train.`;
      advanced.appendChild(row(`opt-layer_file-${part.part}`, partLabel(part.part), select, read, help));
    }
    for (const { input, layer } of omittableInputs(mode)) {
      // e.g. a scene's background: the visible canvas, or generated from its layer prompt.
      const key = omitKey(input.field);
      const box = /** @type {HTMLInputElement} */ (el(doc, "input", { type: "checkbox" }));
      box.addEventListener("change", () => setValueOf(key, box.checked ? "true" : "false"));
      const id = `opt-${key}`;
      box.setAttribute("id", `acetate-${id}`);
      box.setAttribute("title", `Leave out ${input.label.toLowerCase()} (the visible canvas): the server generates the ${layer.label.toLowerCase()} layer from its prompt.`);
      bound.set(id, {
        input: box,
        read: (settings) => {
          box.checked = settings.values[key] === "true";
          return settings.values[key] ?? "";
        },
      });
      basic.appendChild(el(doc, "div", { class: "row" }, [wrap(`Generate the ${layer.label.toLowerCase()} (instead of the canvas)`, box)]));
    }
    for (const input of mode.inputs.filter((item) => (item.other_sources ?? []).length > 0)) {
      // e.g. decompose's image: the active layer, or the whole canvas.
      const key = sourceKey(input.field);
      const select = /** @type {HTMLSelectElement} */ (el(doc, "select"));
      for (const source of [input.source, ...(input.other_sources ?? []).filter((item) => item !== input.source)]) {
        select.appendChild(el(doc, "option", { value: source, text: SOURCE_LABELS[source] ?? source }));
      }
      select.addEventListener("change", () => setValueOf(key, select.value));
      basic.appendChild(row(`opt-${key}`, `${input.label} from`, select, (settings) => inputSource(settings, input), input.help));
    }
    for (const list of mode.lists) {
      basic.appendChild(listEditor(list, mode, family));
    }
    if (takesStructure(mode)) {
      basic.appendChild(structureSection(mode, fittingControlNets(state.controlnets ?? [], base)));
    }
    [...sourcePickers(kit, mode), ...loraPicker(kit, mode, base), alphaMaskOption(kit)].forEach((item) => basic.appendChild(item));
    embeddingMenus(kit, mode, base).forEach((item) => embeddingBox.appendChild(item));
    const hasAdvanced = options.some((option) => option.advanced) || parts.length > 0;
    advancedToggle.style.display = hasAdvanced ? "" : "none";
    if (hasAdvanced) {
      showAdvanced();
    } else {
      advanced.style.display = "none";
    }
  };
  /** @type {ModeInfo|null} */
  let lastMode = null;

  let previewUrl = "";
  /** @type {ArrayBuffer|null} */
  let previewShown = null;

  /** @param {PanelState} state @param {PanelState|null} previous */
  const render = (state, previous) => {
    const { settings } = state;
    setValue(serverInput, settings.serverUrl);
    setValue(tokenInput, state.token);
    const mode = pickMode(state.modes, settings.mode);
    if (!previous || previous.modes !== state.modes) {
      modeSelect.textContent = "";
      for (const item of state.modes) {
        modeSelect.appendChild(el(doc, "option", { value: item.name, text: item.label }));
      }
    }
    setValue(modeSelect, mode?.name ?? "");
    modeRow.style.display = state.modes.length > 0 ? "" : "none";
    const family = familyOf(state);
    const support = mode && family ? mode.families.find((item) => item.family === family) : undefined;
    hint.textContent = !mode
      ? "Connect to a server to see its modes."
      : support && !support.supported
        ? `${mode.help} Not available for ${support.label} models: ${support.reason ?? "not supported"}.`
        : mode.help;
    promptInput.setAttribute("placeholder", mode && !mode.prompt_required ? "What to generate (optional)" : "What to generate");
    buildModeControls(state, mode);
    for (const { input, read } of bound.values()) {
      const value = read(settings);
      if (input.getAttribute("type") !== "checkbox") {
        setValue(input, value);
      }
    }
    if (!previous || previous.models !== state.models || previous.settings.model !== settings.model) {
      fillModels(doc, modelSelect, state);
    }
    const { connection } = state;
    const events = connection.status === "connected" ? ` · events: ${connection.socket === "open" ? "live" : "reconnecting…"}` : "";
    status.textContent = `${connection.message || "Not connected."}${events}`;
    status.className = `status ${connection.status}`;
    details.textContent = connection.status === "connected" && connection.seen !== undefined ? describeSeen(connection.seen ?? null) : "";
    connectButton.textContent = connection.status === "connected" ? "Reconnect" : "Connect";

    setEnabled(generateButton, !state.busy && connection.status !== "outdated");
    setEnabled(cancelButton, state.busy);
    undoButton.style.display = state.landed ? "" : "none";
    setEnabled(undoButton, !state.busy && state.landed !== null);
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
    if (!previous || previous.history !== state.history || previous.busy !== state.busy || previous.modes !== state.modes) {
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
  // ImageBlob documents "image/png" and "image/jpg" (uxp-api global-members/image-blob): try
  // the standard name, then the documented one, else show no preview.
  for (const type of ["image/jpeg", "image/jpg"]) {
    try {
      const url = URL.createObjectURL(new ImageBlobClass(jpeg, { type }));
      image.setAttribute("src", url);
      image.style.display = "";
      return url;
    } catch {
      // Rejected MIME type: try the next name.
    }
  }
  image.removeAttribute("src");
  image.style.display = "none";
  return "";
}

/**
 * The connection details line: the Origin and Sec-Fetch-* headers the server saw on the
 * panel's request (what UXP sends is undocumented; the first real run reports it).
 * @param {import("../protocol").ClientSeen|null} seen
 */
function describeSeen(seen) {
  if (!seen) {
    return "Server did not report the request headers it saw (older server).";
  }
  const show = (/** @type {string|null|undefined} */ value) => (value === null || value === undefined ? "none" : JSON.stringify(value));
  return `Server saw: Origin ${show(seen.origin)} · Sec-Fetch-Site ${show(seen.sec_fetch_site)} · Sec-Fetch-Mode ${show(seen.sec_fetch_mode)}`;
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
    const label = state.modes.find((mode) => mode.name === entry.mode)?.label ?? entry.mode;
    const text = `${label} · ${entry.prompt.slice(0, 40) || "(no prompt)"}${seed} · ${entry.status}`;
    const item = el(doc, "div", { class: "history-item", title: entry.error ?? entry.prompt }, [
      el(doc, "span", { text }),
    ]);
    if (entry.status === "done" || (entry.layers ?? 0) > 0) {
      // A job that failed or was cancelled keeps the layers it finished: they can be
      // inserted (its partial result has no PSD).
      const insert = el(doc, "button", { text: "Insert" });
      insert.addEventListener("click", () => void controller.insertFromHistory(entry.id));
      setEnabled(insert, !state.busy);
      item.appendChild(insert);
    }
    if (entry.status === "done") {
      const psd = el(doc, "button", { text: "PSD" });
      psd.addEventListener("click", () => void controller.openPsd(entry.id));
      setEnabled(psd, !state.busy);
      item.appendChild(psd);
    }
    list.appendChild(item);
  }
}

module.exports = { mountPanel, describeProgress, describeSeen, showPreview };
