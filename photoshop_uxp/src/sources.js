// @ts-check
/**
 * Which layer of the document each image input is read from: the panel's layer pickers. Pure
 * functions.
 *
 * A picker holds a layer's id (as text) in the settings' `values`, "" for its default. The
 * Structure section's layer is one (structure.js); the others are chosen here, per mode:
 * - the mode's main image (`sourceInputs`: a required rgba frame input read from the active
 *   layer or the canvas, e.g. fg2bg's foreground, bg2fg's background, img2img's, inpaint's and
 *   upscale's image) comes from the picked layer instead of its default (the active layer, or
 *   the visible canvas for bg2fg); the picked layer frames the request as the active one does;
 * - a mask read from the selection (`maskInputs`, e.g. inpaint's mask) comes from the picked
 *   layer's alpha instead (the layer's painted pixels, cropped to its bounds, as a selection
 *   would be).
 * An input that already offers other sources (decompose's image) keeps its own picker.
 * Everything read goes through `Host.readDocument({layers: {role: id}})`, which answers in
 * `DocumentPixels.layers` by role.
 */
"use strict";

/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").ImageInputInfo} ImageInputInfo */
/** @typedef {import("./protocol").Rect} Rect */
/** @typedef {{data: Uint8Array, width: number, height: number, rect: Rect}} LayerPixels */

/** The `control_image` input: the Structure section reads it (structure.js). */
const CONTROL_IMAGE = "control_image";

/** The settings key of the layer picked for an input of a mode ("" = its default source). */
const sourceKey = (/** @type {string} */ mode, /** @type {string} */ field) => `source:${mode}:${field}`;
/** The settings key of the layer whose alpha is a mode's mask ("" = the selection). */
const maskKey = (/** @type {string} */ mode, /** @type {string} */ field) => `mask:${mode}:${field}`;

/**
 * A picker's value as a layer id, or null (its default).
 * @param {string|undefined} text
 * @returns {number|null}
 */
function layerId(text) {
  const value = (text ?? "").trim();
  return value === "" || !Number.isInteger(Number(value)) ? null : Number(value);
}

/**
 * The inputs whose pixels may come from any layer: the mode's required rgba frame input read
 * from the active layer or the canvas (at most one per mode).
 * @param {ModeInfo|null} mode
 * @returns {ImageInputInfo[]}
 */
function sourceInputs(mode) {
  if (!mode) {
    return [];
  }
  return mode.inputs.filter(
    (input) =>
      input.field !== CONTROL_IMAGE &&
      input.kind === "rgba" &&
      input.required &&
      input.frame &&
      (input.source === "layer" || input.source === "canvas") &&
      (input.other_sources ?? []).length === 0,
  );
}

/**
 * The mask inputs read from the selection, which may come from a layer's alpha instead.
 * @param {ModeInfo|null} mode
 * @returns {ImageInputInfo[]}
 */
function maskInputs(mode) {
  return mode ? mode.inputs.filter((input) => input.kind === "mask" && input.source === "selection") : [];
}

/**
 * What the picks change for a request: the layers to read by role (`source`, `mask`), the
 * inputs with a picked source read as "layer", and the read needs without what the picks
 * replace (the active layer, the composite, the selection).
 * @param {Record<string, string>} values
 * @param {ModeInfo} mode
 * @param {ImageInputInfo[]} inputs the inputs the request sends, with their sources
 * @returns {{layers: {source?: number, mask?: number}, inputs: ImageInputInfo[]}}
 */
function pickedSources(values, mode, inputs) {
  /** @type {{source?: number, mask?: number}} */
  const layers = {};
  const sent = new Set(inputs.map((input) => input.field));
  const main = sourceInputs(mode).find((input) => sent.has(input.field));
  const source = main ? layerId(values[sourceKey(mode.name, main.field)]) : null;
  if (main && source !== null) {
    layers.source = source;
  }
  const mask = maskInputs(mode).find((input) => sent.has(input.field));
  const maskLayer = mask ? layerId(values[maskKey(mode.name, mask.field)]) : null;
  if (mask && maskLayer !== null) {
    layers.mask = maskLayer;
  }
  return {
    layers,
    inputs: inputs.map((input) => (main && source !== null && input.field === main.field ? { ...input, source: "layer" } : input)),
  };
}

/**
 * The read needs for the picks: the active layer and the selection only when no picked layer
 * replaces them (a picked source is already "layer", not "canvas", in `pickedSources`' inputs).
 * @template {{composite: boolean, layer: boolean, selection: boolean}} N
 * @param {N} needs `readNeeds` of the inputs from `pickedSources`
 * @param {{source?: number, mask?: number}} layers
 * @returns {N}
 */
function sourceNeeds(needs, layers) {
  return {
    ...needs,
    layer: layers.source === undefined && needs.layer,
    selection: layers.mask === undefined && needs.selection,
  };
}

/**
 * A layer's alpha as a selection would be read: one value per pixel over the layer's bounds;
 * null when nothing is painted (like an empty selection).
 * @param {LayerPixels|null|undefined} layer
 * @returns {LayerPixels|null}
 */
function alphaMask(layer) {
  if (!layer) {
    return null;
  }
  const data = new Uint8Array(layer.width * layer.height);
  let any = false;
  for (let p = 0; p < data.length; p++) {
    data[p] = layer.data[p * 4 + 3];
    any = any || data[p] !== 0;
  }
  return any ? { data, width: layer.width, height: layer.height, rect: layer.rect } : null;
}

/**
 * The document's pixels with the picked layers in the places the inputs read: the picked source
 * as `layer`, the picked mask layer's alpha as `selection`.
 * @template {{layer?: LayerPixels|null, selection?: LayerPixels|null, layers?: Record<string, LayerPixels|null>}} P
 * @param {P} pixels
 * @param {{source?: number, mask?: number}} layers
 * @returns {P}
 */
function withPickedLayers(pixels, layers) {
  const out = { ...pixels };
  if (layers.source !== undefined) {
    out.layer = pixels.layers?.source ?? null;
  }
  if (layers.mask !== undefined) {
    out.selection = alphaMask(pixels.layers?.mask);
  }
  return out;
}

/**
 * The label of a source picker's default choice.
 * @param {ImageInputInfo} input
 */
function defaultSourceLabel(input) {
  return input.source === "canvas" ? "The visible canvas" : "The active layer";
}

module.exports = {
  CONTROL_IMAGE,
  alphaMask,
  defaultSourceLabel,
  layerId,
  maskInputs,
  maskKey,
  pickedSources,
  sourceInputs,
  sourceKey,
  sourceNeeds,
  withPickedLayers,
};
