// @ts-check
/**
 * Between document pixels and the wire: which pixels each mode sends and in which frame, and
 * how a result's layers are grouped, ordered and placed back in the document. Pure functions.
 */
"use strict";

const { HostProblem } = require("./errors.js");
const { anySelected, intersect, placeInto, union } = require("./pixels.js");
const { MODE_LAYERS, groupName } = require("./protocol.js");

/** @typedef {import("./protocol").Mode} Mode */
/** @typedef {import("./protocol").Rect} Rect */
/** @typedef {import("./protocol").ResultRecord} ResultRecord */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */
/** @typedef {import("./pixels").Raster} Raster */

/**
 * @typedef {Object} DocumentInfo
 * @property {number} id
 * @property {string} name
 * @property {number} width
 * @property {number} height
 * @property {8|16|32} bits
 */

/**
 * Pixels read from a document, all in canvas coordinates and clipped to the canvas.
 * @typedef {Object} DocumentPixels
 * @property {DocumentInfo} document
 * @property {Raster} [composite]  the visible image, canvas-sized RGBA
 * @property {(Raster & {rect: Rect})|null} [layer]  the active layer; null when it has no pixels
 * @property {(Raster & {rect: Rect})|null} [selection]  the selection mask cropped to its bounds
 */

/**
 * One layer to add: 8-bit straight RGBA at a canvas position.
 * @typedef {Raster & {name: string, visible: boolean, left: number, top: number}} NewLayer
 */
/** @typedef {{name: string, layers: NewLayer[]}} NewGroup  layers bottom to top */

/**
 * Which document pixels each mode sends, under which request field.
 * @type {Record<Mode, {composite?: string, layer?: string, selection?: string, selectionRequired?: boolean}>}
 */
const SOURCES = {
  fg: {},
  joint: {},
  fg2bg: { layer: "fg" },
  bg2fg: { composite: "bg" },
  img2img: { layer: "image", selection: "mask" },
  inpaint: { layer: "image", selection: "mask", selectionRequired: true },
  layer_on_artwork: { composite: "canvas", selection: "selection" },
  upscale: { layer: "image" },
};

/**
 * The request images for a mode from the document's pixels, and the frame (in canvas
 * coordinates) the server's layer positions are relative to.
 * @param {Mode} mode
 * @param {DocumentPixels} pixels
 * @returns {{images: Record<string, Raster>, frame: Rect, extra: Partial<GenerateParameters>}}
 */
function prepareInputs(mode, pixels) {
  const source = SOURCES[mode];
  const { width, height } = pixels.document;
  /** @type {Record<string, Raster>} */
  const images = {};
  /** @type {Partial<GenerateParameters>} */
  const extra = {};
  let frame = { left: 0, top: 0, width, height };
  const selection = pixels.selection ?? null;
  if (source.composite) {
    if (!pixels.composite) {
      throw new HostProblem("The document has no visible pixels to work on.");
    }
    images[source.composite] = pixels.composite;
    if (source.selection && selection) {
      images[source.selection] = { data: selection.data, width: selection.width, height: selection.height };
      extra.selection_bounds = selection.rect;
    }
  }
  if (source.layer) {
    const layer = pixels.layer ?? null;
    if (source.selectionRequired && !selection) {
      throw new HostProblem("Select the area to repaint first: inpaint works inside the selection.");
    }
    if (!layer && !(source.selectionRequired && selection)) {
      throw new HostProblem("The active layer is empty: select a layer with pixels on it.");
    }
    frame = layer ? layer.rect : /** @type {Rect} */ (selection?.rect);
    if (source.selectionRequired && selection) {
      frame = union(frame, selection.rect);
    }
    const data = layer
      ? placeInto(layer.data, layer.rect, frame, 4)
      : new Uint8Array(frame.width * frame.height * 4);
    images[source.layer] = { data, width: frame.width, height: frame.height };
    if (source.selection && selection) {
      const mask = placeInto(selection.data, selection.rect, frame, 1);
      if (!anySelected(mask)) {
        throw new HostProblem("The selection does not touch the active layer.");
      }
      images[source.selection] = { data: mask, width: frame.width, height: frame.height };
    }
  }
  return { images, frame, extra };
}

/**
 * Group a result's layers for insertion: one group per batch item, layers bottom to top as
 * in DESIGN.md, positions moved from the job's frame into the document.
 * @param {ResultRecord} result
 * @param {Map<string, Raster>} pixels layer file → downloaded pixels
 * @param {{left: number, top: number}} offset where the job's frame sits in the document
 * @param {string} prompt fallback group name when the record has no prompt
 * @returns {NewGroup[]}
 */
function groupLayers(result, pixels, offset, prompt) {
  const order = MODE_LAYERS[result.mode] ?? [];
  const mainPrompt = typeof result.parameters?.prompt === "string" ? result.parameters.prompt : prompt;
  const batches = [...new Set(result.layers.map((layer) => layer.batch_index))].sort((a, b) => a - b);
  return batches.map((batchIndex) => {
    const records = result.layers
      .filter((layer) => layer.batch_index === batchIndex)
      .sort((a, b) => rank(order, a.name) - rank(order, b.name));
    const layers = records.map((record) => {
      const raster = /** @type {Raster} */ (pixels.get(record.file));
      return {
        ...raster,
        name: record.name,
        visible: record.visible !== false,
        left: offset.left + record.left,
        top: offset.top + record.top,
      };
    });
    return { name: groupName(mainPrompt, batchIndex), layers };
  });
}

/**
 * The part of a layer inside the canvas (generated sizes may exceed a small document).
 * @param {NewLayer} layer
 * @param {{width: number, height: number}} canvas
 * @returns {NewLayer|null} null when nothing of it is on the canvas
 */
function clipToCanvas(layer, canvas) {
  const rect = { left: layer.left, top: layer.top, width: layer.width, height: layer.height };
  const inside = intersect(rect, { left: 0, top: 0, width: canvas.width, height: canvas.height });
  if (inside === null) {
    return null;
  }
  if (inside.width === rect.width && inside.height === rect.height) {
    return layer;
  }
  return { ...layer, ...inside, data: placeInto(layer.data, rect, inside, 4) };
}

/**
 * @param {readonly string[]} order
 * @param {string} name
 */
function rank(order, name) {
  const index = order.indexOf(name);
  return index < 0 ? order.length : index;
}

module.exports = { SOURCES, prepareInputs, groupLayers, clipToCanvas };
