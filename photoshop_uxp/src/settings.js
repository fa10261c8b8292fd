// @ts-check
/**
 * The panel's settings: defaults, which inputs each mode shows, and turning the text fields
 * into request parameters with plain-words errors. No DOM, no network.
 */
"use strict";

const { InputProblem } = require("./errors.js");
const { DEFAULT_PORT, MAX_BATCH, MAX_PROMPT, MAX_SEED } = require("./protocol.js");
const { fixedLayers, layoutList, omittableInputs, shownOptions } = require("./modes.js");

/** @typedef {import("./protocol").Mode} Mode */
/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").OptionInfo} OptionInfo */
/** @typedef {import("./protocol").ListInputInfo} ListInputInfo */
/** @typedef {import("./protocol").ImageInputInfo} ImageInputInfo */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */

/**
 * What the user typed or picked; numbers stay text until `buildParameters` checks them
 * ("" means the server's default). The token is kept apart (secure storage). The mode's own
 * options live in `values` (by option name; a `prompts` option as `<option>.<layer>`) and its
 * list inputs in `lists` (by field, one record of texts per row), so they need no code here.
 * @typedef {Object} Settings
 * @property {string} serverUrl
 * @property {string} clientId
 * @property {string} model
 * @property {Mode} mode  "" until the server's modes are known (then its first)
 * @property {string} prompt
 * @property {string} seed
 * @property {string} batch
 * @property {Record<string, string>} values
 * @property {Record<string, Record<string, string>[]>} lists
 */

/** @type {Record<string, string>} Labels of the panel's own fields, for error messages. */
const FIELD_LABELS = {
  serverUrl: "Server",
  model: "Model",
  mode: "Mode",
  prompt: "Prompt",
  seed: "Seed",
  batch: "Batch",
};

/**
 * @param {string} field
 * @param {string} message
 * @param {string} [label]
 */
function problem(field, message, label = FIELD_LABELS[field] ?? field) {
  return new InputProblem(field, `${label}: ${message}`);
}

/** A fresh random id that scopes this panel's jobs on the server (`client_id`). */
function newClientId() {
  const bytes = new Uint8Array(12);
  if (typeof crypto !== "undefined" && typeof crypto.getRandomValues === "function") {
    crypto.getRandomValues(bytes);
  } else {
    bytes.forEach((_, i) => (bytes[i] = Math.floor(Math.random() * 256)));
  }
  return `ps-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * @param {string} [serverUrl]
 * @returns {Settings}
 */
function defaultSettings(serverUrl = `http://127.0.0.1:${DEFAULT_PORT}`) {
  return {
    serverUrl,
    clientId: newClientId(),
    model: "",
    mode: "",
    prompt: "",
    seed: "",
    batch: "1",
    values: {},
    lists: {},
  };
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isRecord(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * @param {unknown} value
 * @returns {Record<string, string>}
 */
function stringRecord(value) {
  /** @type {Record<string, string>} */
  const out = {};
  if (isRecord(value)) {
    for (const [key, item] of Object.entries(value)) {
      if (typeof item === "string") {
        out[key] = item;
      }
    }
  }
  return out;
}

/**
 * Saved settings merged over the defaults; unknown keys and values of the wrong type are dropped.
 * @param {unknown} saved
 * @param {Settings} defaults
 * @returns {Settings}
 */
function restoreSettings(saved, defaults) {
  const settings = { ...defaults };
  if (!isRecord(saved)) {
    return settings;
  }
  for (const [key, value] of Object.entries(saved)) {
    if (key in settings && typeof value === "string" && typeof (/** @type {any} */ (settings))[key] === "string") {
      /** @type {Record<string, string>} */ (/** @type {unknown} */ (settings))[key] = value;
    }
  }
  settings.values = stringRecord(saved.values);
  settings.lists = {};
  if (isRecord(saved.lists)) {
    for (const [field, rows] of Object.entries(saved.lists)) {
      if (Array.isArray(rows)) {
        settings.lists[field] = rows.filter(isRecord).map(stringRecord);
      }
    }
  }
  return settings;
}

/**
 * A list input's rows as the panel shows them: the saved ones, padded to `min_items` and cut
 * at `max_items`.
 * @param {Settings} settings
 * @param {ListInputInfo} list
 * @returns {Record<string, string>[]}
 */
function listRows(settings, list) {
  const rows = (settings.lists[list.field] ?? []).slice(0, Math.max(list.max_items, 0));
  while (rows.length < list.min_items) {
    rows.push({});
  }
  return rows;
}

/**
 * The text of an option typed into the panel, checked and typed by the option's declaration;
 * undefined when empty (the server's default applies).
 * @param {OptionInfo} option
 * @param {string} text
 * @param {string} field where the error points (the setting)
 * @param {string} label
 * @returns {any}
 */
function readOption(option, text, field, label) {
  if (option.type === "text") {
    const value = text.trim();
    if (option.max_length && Array.from(value).length > option.max_length) {
      throw problem(field, `is longer than ${option.max_length} characters`, label);
    }
    return value === "" ? undefined : value;
  }
  const value = text.trim();
  if (value === "") {
    return undefined;
  }
  if (option.type === "bool") {
    return value === "true";
  }
  if (option.type === "enum") {
    if (!(option.choices ?? []).includes(value)) {
      throw problem(field, `"${value}" is not one of ${(option.choices ?? []).join(", ")}`, label);
    }
    return value;
  }
  if (option.type === "region") {
    // Typed into a list row: a box "left, top, width, height" in canvas pixels (a mask region
    // comes from a layer's pixels in the layout-group flow, never from text).
    const numbers = value.split(/[\s,]+/).filter(Boolean);
    if (numbers.length !== 4 || !numbers.every((item) => /^\d+$/.test(item))) {
      throw problem(field, `"${value}" is not a box: type left, top, width, height in pixels (e.g. 40, 60, 200, 160)`, label);
    }
    const [left, top, width, height] = numbers.map(Number);
    if (width < 1 || height < 1) {
      throw problem(field, "the box needs a width and a height of at least 1 pixel", label);
    }
    return { left, top, width, height };
  }
  if (option.type !== "int" && option.type !== "float") {
    return undefined;
  }
  return readNumber(value, field, label, {
    min: option.minimum ?? -Infinity,
    max: option.maximum ?? Infinity,
    integer: option.type === "int",
    multipleOf: option.multiple_of ?? undefined,
    exclusiveMin: Boolean(option.exclusive_minimum),
  });
}

/**
 * @param {string} text
 * @param {string} field
 * @param {string} label
 * @param {{min: number, max: number, integer?: boolean, multipleOf?: number, exclusiveMin?: boolean}} rule
 * @returns {number}
 */
function readNumber(text, field, label, { min, max, integer = false, multipleOf, exclusiveMin = false }) {
  const value = Number(text);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw problem(field, `"${text}" is not ${integer ? "a whole number" : "a number"}`, label);
  }
  const belowMin = exclusiveMin ? value <= min : value < min;
  if (belowMin || value > max) {
    const low = exclusiveMin ? `more than ${min}` : `at least ${min}`;
    const range = Number.isFinite(max) ? (exclusiveMin ? `more than ${min} and at most ${max}` : `between ${min} and ${max}`) : low;
    throw problem(field, `must be ${Number.isFinite(min) ? range : `at most ${max}`} (got ${value})`, label);
  }
  if (multipleOf && value % multipleOf !== 0) {
    const nearest = Math.max(multipleOf, Math.round(value / multipleOf) * multipleOf);
    throw problem(field, `must be a multiple of ${multipleOf} (try ${nearest})`, label);
  }
  return value;
}

/** The `values` key of "fill this list from the selected layer group" ("rows": from the rows). */
const layoutKey = (/** @type {string} */ field) => `from:${field}`;
/** The `values` key of "leave this optional input out (the server generates its layer)". */
const omitKey = (/** @type {string} */ field) => `without:${field}`;
/** The settings key of the source the user picked for an input with `other_sources`. */
const sourceKey = (/** @type {string} */ field) => `source:${field}`;

/**
 * Where an input is read from: the source the user picked among its sources, else the one the
 * mode declares (a stale or unknown pick falls back to it).
 * @param {Settings} settings
 * @param {ImageInputInfo} input
 * @returns {ImageInputInfo["source"]}
 */
function inputSource(settings, input) {
  const picked = settings.values[sourceKey(input.field)];
  return (input.other_sources ?? []).find((source) => source === picked) ?? input.source;
}

/**
 * The list the panel fills from the selected layer group (one item per child layer), or
 * null: a mode's region list does so unless the user chose to type its rows.
 * @param {Settings} settings
 * @param {ModeInfo} mode
 */
function layoutFromGroup(settings, mode) {
  const layout = layoutList(mode);
  return layout && settings.values[layoutKey(layout.list.field)] !== "rows" ? layout : null;
}

/**
 * The optional inputs the user chose to leave out (the server then generates their layer,
 * e.g. a scene's background from its prompt).
 * @param {Settings} settings
 * @param {ModeInfo} mode
 * @returns {Set<string>}
 */
function omittedInputs(settings, mode) {
  return new Set(
    omittableInputs(mode)
      .filter(({ input }) => settings.values[omitKey(input.field)] === "true")
      .map(({ input }) => input.field),
  );
}

/**
 * The request parameters for the current settings (images are added by the controller): the
 * fixed fields plus only the options and list inputs the mode declares; empty inputs fall
 * back to the server's defaults.
 * @param {Settings} settings
 * @param {ModeInfo} mode
 * @param {string|null} [family] the chosen model's family, when known
 * @returns {GenerateParameters}
 * @throws {InputProblem}
 */
function buildParameters(settings, mode, family = null) {
  const support = family ? mode.families.find((item) => item.family === family) : undefined;
  if (support && !support.supported) {
    throw problem("model", `${mode.label} does not run on ${support.label ?? family} models: ${support.reason ?? "not supported"}`);
  }
  const prompt = settings.prompt.trim();
  if (prompt === "" && mode.prompt_required) {
    throw problem("prompt", "describe what to generate");
  }
  if (Array.from(prompt).length > MAX_PROMPT) {
    throw problem("prompt", `is longer than ${MAX_PROMPT} characters`);
  }
  /** @type {GenerateParameters} */
  const params = { mode: mode.name, prompt, client_id: settings.clientId };
  if (settings.model) {
    params.model = settings.model;
  }
  const seed = settings.seed.trim() === "" ? undefined : readNumber(settings.seed.trim(), "seed", "Seed", { min: 0, max: MAX_SEED, integer: true });
  if (seed !== undefined) {
    params.seed = seed;
  }
  const batch = settings.batch.trim() === "" ? 1 : readNumber(settings.batch.trim(), "batch", "Batch", { min: 1, max: MAX_BATCH, integer: true });
  params.batch = batch;
  for (const option of shownOptions(mode, settings.values, family)) {
    if (option.type === "prompts") {
      /** @type {Record<string, string>} */
      const texts = {};
      for (const layer of fixedLayers(mode)) {
        const key = `${option.name}.${layer.name}`;
        const text = (settings.values[key] ?? "").trim();
        if (Array.from(text).length > MAX_PROMPT) {
          throw problem(key, `is longer than ${MAX_PROMPT} characters`, `${option.label} (${layer.label})`);
        }
        if (text) {
          texts[layer.name] = text;
        }
      }
      if (Object.keys(texts).length > 0) {
        params[option.name] = texts;
      }
      continue;
    }
    const value = readOption(option, settings.values[option.name] ?? "", option.name, option.label);
    if (value !== undefined) {
      params[option.name] = value;
    }
  }
  const fromGroup = layoutFromGroup(settings, mode)?.list.field ?? null;
  for (const list of mode.lists) {
    if (list.field === fromGroup) {
      continue; // filled from the layer group when the document is read (controller)
    }
    const rows = listRows(settings, list);
    params[list.field] = rows.map((row, index) => {
      /** @type {Record<string, any>} */
      const item = {};
      for (const option of list.item_options) {
        const field = `${list.field}.${index}.${option.name}`;
        const value = readOption(option, row[option.name] ?? "", field, `${list.label} ${index + 1}, ${option.label}`);
        if (value !== undefined) {
          item[option.name] = value;
        }
      }
      return item;
    });
  }
  return params;
}

module.exports = {
  FIELD_LABELS,
  defaultSettings,
  restoreSettings,
  listRows,
  buildParameters,
  inputSource,
  layoutKey,
  omitKey,
  sourceKey,
  layoutFromGroup,
  omittedInputs,
  newClientId,
};
