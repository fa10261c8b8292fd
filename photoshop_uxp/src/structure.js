// @ts-check
/**
 * Structure from a layer (ControlNet), pure logic: which modes take it, which ControlNets fit
 * a base, the request fields, and the `control_image` made from the chosen layer.
 *
 * A mode takes structure when it reads the `control` option and has a `control_image` input
 * (`GET /api/modes`). The panel's Structure section picks a kind (`canny`: the server takes
 * the layer's edges; `image`: the layer is a ready lineart, depth or pose image), a layer of
 * the document (`values["structure.layer"]`, its id), a strength and a ControlNet (`GET
 * /api/models` → `controlnets` of the base's family, tiny with tiny; "" = the server's
 * default). Without a layer or with kind `none`, nothing about structure is sent.
 *
 * The layer is read in the frame of the mode's other inputs (the canvas for text modes, the
 * frame input's rect otherwise) and composited over white: the server reads only the RGB of a
 * control image, and a sketch's transparent pixels would be black, hiding black strokes.
 */
"use strict";

const { InputProblem } = require("./errors.js");
const { fitsBase } = require("./layerfiles.js");
const { placeInto } = require("./pixels.js");
const { CONTROL_IMAGE, layerId } = require("./sources.js");

/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").BaseModelInfo} BaseModelInfo */
/** @typedef {import("./protocol").Rect} Rect */
/** @typedef {{data: Uint8Array, width: number, height: number}} Raster */
/** @typedef {{name: string, family: string, tiny?: boolean}} ControlNetInfo */

/** The options the Structure section edits instead of one control each. */
const STRUCTURE_OPTIONS = ["control", "controlnet", "control_strength"];
/** Where the chosen layer's id lives in `settings.values`. */
const LAYER_KEY = "structure.layer";
const KINDS = ["canny", "image"];
/** @type {Record<string, string>} */
const KIND_LABELS = { none: "None", canny: "Edges of the layer (canny)", image: "Layer as is" };

/**
 * @param {ModeInfo|null} mode
 * @returns {boolean}
 */
function takesStructure(mode) {
  if (!mode || !mode.options.some((option) => option.name === "control")) {
    return false;
  }
  return mode.inputs.some((input) => input.field === CONTROL_IMAGE);
}

/**
 * The ControlNets that run on `base`: its family, tiny with tiny.
 * @param {ControlNetInfo[]} controlnets
 * @param {BaseModelInfo|null|undefined} base
 * @returns {string[]}
 */
function fittingControlNets(controlnets, base) {
  return controlnets.filter((item) => fitsBase(item, base)).map((item) => item.name);
}

/**
 * The layer id the structure is read from, or null (no structure).
 * @param {Record<string, string>} values
 * @returns {number|null}
 */
function structureLayer(values) {
  return layerId(values[LAYER_KEY]);
}

/**
 * The request's structure fields: none without a layer or with kind none; a ControlNet only
 * while it fits the base (else the server's default).
 * @param {Record<string, string>} values
 * @param {ModeInfo|null} mode
 * @param {ControlNetInfo[]} controlnets
 * @param {BaseModelInfo|null|undefined} base
 * @returns {{control?: string, control_strength?: number, controlnet?: string}}
 */
function structureFields(values, mode, controlnets, base) {
  const kind = values.control ?? "";
  if (!takesStructure(mode) || !KINDS.includes(kind) || structureLayer(values) === null) {
    return {};
  }
  /** @type {{control?: string, control_strength?: number, controlnet?: string}} */
  const fields = { control: kind };
  const text = (values.control_strength ?? "").trim();
  const strength = text === "" ? 1.0 : Number(text);
  if (!Number.isFinite(strength) || strength < 0 || strength > 2) {
    throw new InputProblem("control_strength", "Structure strength: a number from 0 to 2");
  }
  fields.control_strength = strength;
  const name = values.controlnet ?? "";
  if (name && fittingControlNets(controlnets, base).includes(name)) {
    fields.controlnet = name;
  }
  return fields;
}

/**
 * 8-bit straight RGBA composited over opaque white (alpha 255).
 * @param {Uint8Array} rgba
 * @returns {Uint8Array}
 */
function overWhite(rgba) {
  const out = new Uint8Array(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const alpha = rgba[i + 3];
    for (let c = 0; c < 3; c++) {
      out[i + c] = Math.floor((rgba[i + c] * alpha + 255 * (255 - alpha) + 127) / 255);
    }
    out[i + 3] = 255;
  }
  return out;
}

/**
 * The control image: the layer's pixels placed into `frame`, over white (an empty layer: white).
 * @param {(Raster & {rect: Rect})|null|undefined} layer
 * @param {Rect} frame
 * @returns {Raster}
 */
function controlImage(layer, frame) {
  const data = layer ? placeInto(layer.data, layer.rect, frame, 4) : new Uint8Array(frame.width * frame.height * 4);
  return { data: overWhite(data), width: frame.width, height: frame.height };
}

module.exports = {
  CONTROL_IMAGE,
  STRUCTURE_OPTIONS,
  LAYER_KEY,
  KINDS,
  KIND_LABELS,
  takesStructure,
  fittingControlNets,
  structureLayer,
  structureFields,
  overWhite,
  controlImage,
};
