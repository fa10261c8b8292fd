// @ts-check
/**
 * How a result's layers go into the document, beyond where (placement.js): in which depth they
 * are fetched, and whether a transparent layer keeps its alpha or gets it as a layer mask. Pure
 * functions.
 *
 * Depth: a 16- or 32-bit document asks the server for 16-bit results (`bit_depth: 16`, when the
 * mode declares that option) and fetches each layer as `?format=rgba16` (0..65535); the adapter
 * converts to the document's representation (16-bit: 0..32768; 32-bit: linear-light floats from
 * the 16-bit sRGB values; pixels.js). An 8-bit document sends nothing about depth and fetches
 * 8-bit RGBA, byte for byte as before. `bit_depth` is derived from the document, never a
 * control (modes.js DOCUMENT_OPTIONS).
 *
 * Alpha as a mask (`values[ALPHA_MASK_KEY] === "true"`, off by default): each layer is inserted
 * opaque, with the decoded RGB under every pixel (also where alpha is 0: not zeroed), and a
 * layer mask equal to its alpha, so the edge can be painted.
 */
"use strict";

/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {8|16} WireDepth */

/** The request option that asks for 16-bit results. */
const BIT_DEPTH = "bit_depth";
/** The settings key of the "alpha as an editable mask" option. */
const ALPHA_MASK_KEY = "insert.alpha_mask";

/**
 * The depth to request and fetch results in for a document of `bits` bits per channel.
 * @param {ModeInfo|null} mode
 * @param {8|16|32} bits
 * @returns {WireDepth}
 */
function resultDepth(mode, bits) {
  const declared = Boolean(mode?.options.some((option) => option.name === BIT_DEPTH));
  return declared && bits >= 16 ? 16 : 8;
}

/**
 * The request field for a depth (nothing for 8 bits: the server's default).
 * @param {WireDepth} depth
 * @returns {{bit_depth?: 16}}
 */
function depthFields(depth) {
  return depth === 16 ? { [BIT_DEPTH]: 16 } : {};
}

/**
 * The depth to fetch a finished result's layers in (history insertion): 16 bits only when the
 * job made them (`parameters.bit_depth`) and the document holds more than 8.
 * @param {Record<string, any>|undefined} parameters the result record's parameters
 * @param {8|16|32} bits
 * @returns {WireDepth}
 */
function recordedDepth(parameters, bits) {
  return parameters?.[BIT_DEPTH] === 16 && bits >= 16 ? 16 : 8;
}

/**
 * Whether results go in as opaque layers with their alpha as a layer mask.
 * @param {Record<string, string>} values
 */
function alphaAsMask(values) {
  return values[ALPHA_MASK_KEY] === "true";
}

module.exports = { ALPHA_MASK_KEY, BIT_DEPTH, alphaAsMask, depthFields, recordedDepth, resultDepth };
