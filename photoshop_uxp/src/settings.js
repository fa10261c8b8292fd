// @ts-check
/**
 * The panel's settings: defaults, which inputs each mode shows, and turning the text fields
 * into request parameters with plain-words errors. No DOM, no network.
 */
"use strict";

const { InputProblem } = require("./errors.js");
const { DECODES, DEFAULT_PORT, MAX_PROMPT, MAX_SEED, MODES } = require("./protocol.js");

/** @typedef {import("./protocol").Mode} Mode */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */

/**
 * What the user typed or picked; numbers stay text until `buildParameters` checks them
 * ("" means the server's default). The token is kept apart (secure storage).
 * @typedef {Object} Settings
 * @property {string} serverUrl
 * @property {string} clientId
 * @property {string} model
 * @property {Mode} mode
 * @property {string} prompt
 * @property {string} negativePrompt
 * @property {string} fgPrompt
 * @property {string} bgPrompt
 * @property {string} blendPrompt
 * @property {string} seed
 * @property {string} steps
 * @property {string} cfg
 * @property {string} width
 * @property {string} height
 * @property {string} strength
 * @property {string} scale
 * @property {string} batch
 * @property {"tta"|"fast"} decode
 */

/** Inputs shown for every mode. */
const COMMON_FIELDS = ["model", "prompt", "negativePrompt", "seed", "steps", "cfg", "batch", "decode"];
/** @type {Record<Mode, string[]>} Extra inputs per mode (only what the mode uses). */
const MODE_FIELDS = {
  fg: ["width", "height"],
  fg2bg: [],
  bg2fg: [],
  joint: ["width", "height", "fgPrompt", "bgPrompt", "blendPrompt"],
  img2img: ["strength"],
  inpaint: ["strength"],
  layer_on_artwork: [],
  upscale: ["strength", "scale"],
};

/** @type {Record<Mode, string>} What each mode takes from the document, in plain words. */
const MODE_HINTS = {
  fg: "Generates a new transparent layer from the prompt.",
  fg2bg: "Uses the active layer as the foreground and paints a background behind it.",
  bg2fg: "Uses the visible image as the background and paints a transparent foreground on it.",
  joint: "Generates foreground, background and blended layers together (SD1.5 models).",
  img2img: "Reworks the active layer; a selection, if any, limits the change.",
  inpaint: "Repaints the active layer inside the selection.",
  layer_on_artwork: "Paints a new transparent layer into the selection, fitting the visible artwork.",
  upscale: "Enlarges the active layer, alpha kept; the result opens as a new document.",
};

/** @type {Record<Mode, string>} */
const MODE_LABELS = {
  fg: "Foreground",
  fg2bg: "Background for layer",
  bg2fg: "Foreground on image",
  joint: "Joint (fg + bg)",
  img2img: "Image to image",
  inpaint: "Inpaint",
  layer_on_artwork: "Layer on artwork",
  upscale: "Upscale",
};

/** @type {Record<string, string>} Labels of settings, for error messages. */
const FIELD_LABELS = {
  serverUrl: "Server",
  model: "Model",
  mode: "Mode",
  prompt: "Prompt",
  negativePrompt: "Negative prompt",
  fgPrompt: "Foreground prompt",
  bgPrompt: "Background prompt",
  blendPrompt: "Blended prompt",
  seed: "Seed",
  steps: "Steps",
  cfg: "CFG",
  width: "Width",
  height: "Height",
  strength: "Strength",
  scale: "Scale",
  batch: "Batch",
  decode: "Decode quality",
};

/** Request field → setting name, to point server errors at the right input. */
const SETTING_OF_FIELD = {
  prompt: "prompt",
  negative_prompt: "negativePrompt",
  seed: "seed",
  steps: "steps",
  cfg: "cfg",
  width: "width",
  height: "height",
  strength: "strength",
  scale: "scale",
  batch: "batch",
  decode: "decode",
  model: "model",
};

/**
 * @param {string} field
 * @param {string} message
 */
function problem(field, message) {
  return new InputProblem(field, `${FIELD_LABELS[field] ?? field}: ${message}`);
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
    mode: "fg",
    prompt: "",
    negativePrompt: "",
    fgPrompt: "",
    bgPrompt: "",
    blendPrompt: "",
    seed: "",
    steps: "",
    cfg: "",
    width: "",
    height: "",
    strength: "0.7",
    scale: "2",
    batch: "1",
    decode: "tta",
  };
}

/**
 * Saved settings merged over the defaults; unknown keys and values of the wrong type are dropped.
 * @param {unknown} saved
 * @param {Settings} defaults
 * @returns {Settings}
 */
function restoreSettings(saved, defaults) {
  const settings = { ...defaults };
  if (saved === null || typeof saved !== "object") {
    return settings;
  }
  for (const [key, value] of Object.entries(saved)) {
    if (key in settings && typeof value === "string") {
      /** @type {Record<string, string>} */ (/** @type {unknown} */ (settings))[key] = value;
    }
  }
  if (!MODES.includes(settings.mode)) {
    settings.mode = defaults.mode;
  }
  if (!DECODES.includes(settings.decode)) {
    settings.decode = defaults.decode;
  }
  return settings;
}

/**
 * @param {Mode} mode
 * @returns {Set<string>} the settings the panel shows for this mode
 */
function visibleFields(mode) {
  return new Set([...COMMON_FIELDS, ...MODE_FIELDS[mode]]);
}

/**
 * @param {Settings} settings
 * @param {string} field
 * @param {{min: number, max: number, integer?: boolean, multipleOf?: number}} rule
 * @returns {number|undefined}
 */
function readNumber(settings, field, { min, max, integer = false, multipleOf }) {
  const text = /** @type {Record<string, string>} */ (/** @type {unknown} */ (settings))[field].trim();
  if (text === "") {
    return undefined;
  }
  const value = Number(text);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw problem(field, `"${text}" is not ${integer ? "a whole number" : "a number"}`);
  }
  if (value < min || value > max) {
    throw problem(field, `must be between ${min} and ${max} (got ${value})`);
  }
  if (multipleOf && value % multipleOf !== 0) {
    const nearest = Math.max(multipleOf, Math.round(value / multipleOf) * multipleOf);
    throw problem(field, `must be a multiple of ${multipleOf} (try ${nearest})`);
  }
  return value;
}

/**
 * The request parameters for the current settings (images are added by the controller).
 * Only the mode's own inputs are sent; empty inputs fall back to the server's defaults.
 * @param {Settings} settings
 * @returns {GenerateParameters}
 * @throws {InputProblem}
 */
function buildParameters(settings) {
  const mode = settings.mode;
  const shown = visibleFields(mode);
  const prompt = settings.prompt.trim();
  if (prompt === "" && mode !== "upscale") {
    throw problem("prompt", "describe what to generate");
  }
  for (const field of ["prompt", "negativePrompt", "fgPrompt", "bgPrompt", "blendPrompt"]) {
    const text = /** @type {Record<string, string>} */ (/** @type {unknown} */ (settings))[field];
    if (Array.from(text).length > MAX_PROMPT) {
      throw problem(field, `is longer than ${MAX_PROMPT} characters`);
    }
  }
  /** @type {GenerateParameters} */
  const params = { mode, prompt, client_id: settings.clientId, decode: settings.decode };
  if (settings.model) {
    params.model = settings.model;
  }
  if (settings.negativePrompt.trim()) {
    params.negative_prompt = settings.negativePrompt.trim();
  }
  /** @type {[keyof GenerateParameters, string, {min: number, max: number, integer?: boolean, multipleOf?: number}][]} */
  const numbers = [
    ["seed", "seed", { min: 0, max: MAX_SEED, integer: true }],
    ["steps", "steps", { min: 1, max: 150, integer: true }],
    ["cfg", "cfg", { min: 0, max: 30 }],
    ["batch", "batch", { min: 1, max: 16, integer: true }],
    ["width", "width", { min: 64, max: 4096, integer: true, multipleOf: 64 }],
    ["height", "height", { min: 64, max: 4096, integer: true, multipleOf: 64 }],
    ["strength", "strength", { min: 0.01, max: 1 }],
    ["scale", "scale", { min: 1.01, max: 4 }],
  ];
  for (const [key, field, rule] of numbers) {
    if (!shown.has(field)) {
      continue;
    }
    const value = readNumber(settings, field, rule);
    if (value !== undefined) {
      /** @type {Record<string, unknown>} */ (params)[key] = value;
    }
  }
  if (mode === "joint") {
    /** @type {{foreground?: string, background?: string, blended?: string}} */
    const layerPrompts = {};
    if (settings.fgPrompt.trim()) layerPrompts.foreground = settings.fgPrompt.trim();
    if (settings.bgPrompt.trim()) layerPrompts.background = settings.bgPrompt.trim();
    if (settings.blendPrompt.trim()) layerPrompts.blended = settings.blendPrompt.trim();
    if (Object.keys(layerPrompts).length > 0) {
      params.layer_prompts = layerPrompts;
    }
  }
  return params;
}

module.exports = {
  MODE_FIELDS,
  MODE_HINTS,
  MODE_LABELS,
  FIELD_LABELS,
  SETTING_OF_FIELD,
  defaultSettings,
  restoreSettings,
  visibleFields,
  buildParameters,
  newClientId,
};
