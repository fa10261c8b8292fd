// @ts-check
/**
 * Between document pixels and the wire: which pixels each mode sends and in which frame, and
 * how a result's layers are grouped, ordered and placed back in the document. Pure functions.
 */
"use strict";

const { HostProblem } = require("./errors.js");
const { compareRanks } = require("./modes.js");
const { anySelected, intersect, placeInto, union } = require("./pixels.js");

/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").ImageInputInfo} ImageInputInfo */
/** @typedef {import("./protocol").Rect} Rect */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */
/** @typedef {import("./pixels").Raster} Raster */

/**
 * @typedef {Object} DocumentInfo
 * @property {number} id
 * @property {string} name
 * @property {number} width
 * @property {number} height
 * @property {8|16|32} bits
 * @property {{id: number, topId: number, kind: string, rect: Rect|null}|null} [activeLayer]
 *   the active layer when the document was looked at: its id, the top-level layer holding it,
 *   its kind and its bounds on the canvas (null: empty)
 * @property {{id: number, name: string}[]} [layers] every layer, top first (groups before
 *   their children): what the Structure section offers
 * @property {number[]} [visibleTopIds] the visible top-level layers, top first: what the canvas
 *   shows (what a result split from the whole canvas replaces)
 */

/**
 * Pixels read from a document, all in canvas coordinates and clipped to the canvas.
 * @typedef {Object} DocumentPixels
 * @property {DocumentInfo} document
 * @property {Raster} [composite]  the visible image, canvas-sized RGBA
 * @property {(Raster & {rect: Rect})|null} [layer]  the active layer; null when it has no pixels
 * @property {(Raster & {rect: Rect})|null} [selection]  the selection mask cropped to its bounds
 * @property {Record<string, (Raster & {rect: Rect})|null>} [layers]  the layers picked in the
 *   panel, by role (`structure`, `source`, `mask`: `readDocument({layers})`); null for one
 *   without pixels
 * @property {{group: {id: number, name: string}, items: LayoutItem[]}} [layout]  a scene's
 *   layout group: its visible child layers, bottom → top (the composite then excludes it)
 */

/**
 * One child layer of a layout group: its name (the object's prompt) and its painted pixels as
 * a mask (255 painted) cropped to their bounds `rect`.
 * @typedef {Raster & {id: number, name: string, rect: Rect}} LayoutItem
 */

/**
 * One layer to add: straight RGBA at a canvas position, 8-bit or (`depth` 16) 16-bit 0..65535;
 * `alphaMask`: inserted opaque with its alpha as a layer mask (insertion.js).
 * @typedef {{data: Uint8Array|Uint16Array, width: number, height: number, name: string, visible: boolean,
 *   left: number, top: number, depth?: 8|16, alphaMask?: boolean}} NewLayer
 */

/** A layer or group already in the document and its place in the order (bottom → top). */
/** @typedef {{id: number, rank: number[]}} Placed */

/**
 * One layer to insert into a result's group. `group.id` null: the group does not exist yet
 * (it is created, named, and placed among `group.siblings`, the result's other groups);
 * else the layer goes among `siblings`, the layers already in that group.
 * @typedef {Object} LayerInsertion
 * @property {NewLayer} layer
 * @property {number[]} rank
 * @property {Placed[]} siblings
 * @property {{id: number|null, name: string, rank: number[], siblings: Placed[], anchor?: number|null}} group
 *   `anchor`: the top-level layer a result's first group goes above
 * @property {number[]} [hide]  layers hidden in the same history state (a scene's layout group)
 */

/** @typedef {{composite: boolean, layer: boolean, selection: boolean, layout?: boolean}} Needs */

/**
 * What to read from the document for these inputs, by their source.
 * @param {ImageInputInfo[]} inputs
 * @returns {Needs}
 */
function readNeeds(inputs) {
  return {
    composite: inputs.some((input) => input.source === "canvas"),
    layer: inputs.some((input) => input.source === "layer"),
    selection: inputs.some((input) => input.source === "selection"),
  };
}

/**
 * The request images from the document's pixels, read by each input's `source` (canvas: the
 * visible composite; layer: the active layer; selection: the selection as a mask), and the
 * frame (in canvas coordinates) that the server's layer positions are relative to: the
 * `frame` input's pixel frame, else the canvas.
 * @param {ModeInfo} mode
 * @param {ImageInputInfo[]} inputs the inputs this request sends (`activeInputs`)
 * @param {DocumentPixels} pixels
 * @returns {{images: Record<string, Raster>, kinds: Record<string, "rgba"|"mask">, frame: Rect, extra: Partial<GenerateParameters>}}
 */
function prepareInputs(mode, inputs, pixels) {
  const { width, height } = pixels.document;
  const canvas = { left: 0, top: 0, width, height };
  const layer = pixels.layer ?? null;
  const selection = pixels.selection ?? null;
  const frameInput = inputs.find((input) => input.frame) ?? null;
  /** Masks that must be given, relative to the frame input. */
  const frameMasks = inputs.filter(
    (input) => input.source === "selection" && input.required && frameInput && (input.relative_to ?? frameInput.field) === frameInput.field,
  );
  for (const input of inputs.filter((item) => item.required)) {
    if (input.source === "canvas" && !pixels.composite) {
      throw new HostProblem("The document has no visible pixels to work on.");
    }
    if (input.source === "selection" && !selection) {
      throw new HostProblem(`Select an area first: ${mode.label} needs a selection (${input.label}).`);
    }
    if (input.source === "layer" && !layer && !(input === frameInput && frameMasks.length > 0 && selection)) {
      throw new HostProblem("The active layer is empty: select a layer with pixels on it.");
    }
  }
  /** @type {Rect} */
  let frame = canvas;
  if (frameInput?.source === "layer") {
    frame = layer ? layer.rect : /** @type {Rect} */ (selection?.rect ?? canvas);
    if (selection && frameMasks.length > 0) {
      frame = layer ? union(frame, selection.rect) : selection.rect;
    }
  } else if (frameInput?.source === "selection" && selection) {
    frame = selection.rect;
  }
  /** @type {Record<string, Raster>} */
  const images = {};
  /** @type {Record<string, "rgba"|"mask">} */
  const kinds = {};
  /** @type {Partial<GenerateParameters>} */
  const extra = {};
  for (const input of inputs) {
    if (input.source === "selection") {
      if (!selection) {
        continue;
      }
      const reference = inputs.find((item) => item.field === input.relative_to) ?? frameInput;
      if (input.kind === "mask" && reference?.source === "canvas" && !extra.selection_bounds) {
        // A mask over the canvas travels cropped to its bounds, placed by selection_bounds.
        images[input.field] = { data: selection.data, width: selection.width, height: selection.height };
        extra.selection_bounds = selection.rect;
      } else {
        const mask = placeInto(selection.data, selection.rect, frame, 1);
        if (!anySelected(mask)) {
          throw new HostProblem("The selection does not touch the active layer.");
        }
        images[input.field] = input.kind === "mask" ? { data: mask, width: frame.width, height: frame.height } : grayToRgba(mask, frame);
      }
    } else if (input.source === "canvas") {
      if (!pixels.composite) {
        continue;
      }
      const data = sameRect(frame, canvas) ? pixels.composite.data : placeInto(pixels.composite.data, canvas, frame, 4);
      images[input.field] = { data, width: frame.width, height: frame.height };
    } else {
      if (!layer && !input.required) {
        continue;
      }
      const data = layer ? placeInto(layer.data, layer.rect, frame, 4) : new Uint8Array(frame.width * frame.height * 4);
      images[input.field] = { data, width: frame.width, height: frame.height };
    }
    kinds[input.field] = input.kind === "mask" ? "mask" : "rgba";
  }
  return { images, kinds, frame, extra };
}

/**
 * @param {Rect} a
 * @param {Rect} b
 */
function sameRect(a, b) {
  return a.left === b.left && a.top === b.top && a.width === b.width && a.height === b.height;
}

/**
 * A mask as opaque gray RGBA (an rgba input read from the selection).
 * @param {Uint8Array} mask
 * @param {Rect} rect
 * @returns {Raster}
 */
function grayToRgba(mask, rect) {
  const data = new Uint8Array(mask.length * 4);
  mask.forEach((value, i) => data.set([value, value, value, 255], i * 4));
  return { data, width: rect.width, height: rect.height };
}

/**
 * Where a new item goes among placed ones ordered bottom → top by rank: above the highest one
 * ranked below it, else below the lowest one ranked above it; null among none.
 * @template {Placed} T
 * @param {T[]} placed
 * @param {number[]} rank
 * @returns {{item: T, place: "above"|"below"}|null}
 */
function neighbour(placed, rank) {
  const sorted = [...placed].sort((a, b) => compareRanks(a.rank, b.rank));
  const below = sorted.filter((item) => compareRanks(item.rank, rank) <= 0).pop();
  if (below) {
    return { item: below, place: "above" };
  }
  return sorted.length > 0 ? { item: sorted[0], place: "below" } : null;
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

/** The documented image limits (docs/protocol.md, Limits) when the server publishes none. */
const DEFAULT_LIMITS = { maxSide: 8192, maxPixels: 64 * 1024 * 1024 };
/** Above this many pixels the panel warns that reading and sending takes long. */
const WARN_PIXELS = 16 * 1000 * 1000;

/**
 * The server's image limits from `GET /api/health` (`limits`), else the documented ones.
 * @param {import("./protocol").Health|null|undefined} health
 * @returns {{maxSide: number, maxPixels: number}}
 */
function imageLimits(health) {
  const limits = health && typeof health.limits === "object" && health.limits !== null ? health.limits : {};
  /** @param {unknown} value @param {number} fallback */
  const positive = (value, fallback) => (typeof value === "number" && Number.isFinite(value) && value > 0 ? value : fallback);
  return {
    maxSide: positive(limits.max_side, DEFAULT_LIMITS.maxSide),
    maxPixels: positive(limits.max_pixels, DEFAULT_LIMITS.maxPixels),
  };
}

/**
 * Refuse, before any pixel is read, an image the server would refuse; a warning text for a
 * large one (UXP warns near 600 MB of plugin memory), else null.
 * @param {string} what e.g. "The document"
 * @param {{width: number, height: number}} size
 * @param {{maxSide: number, maxPixels: number}} limits
 * @returns {string|null}
 */
function checkImageSize(what, size, limits) {
  const pixels = size.width * size.height;
  const megapixels = (/** @type {number} */ n) => `${Math.round((n / (1024 * 1024)) * 10) / 10} megapixels`;
  if (size.width > limits.maxSide || size.height > limits.maxSide || pixels > limits.maxPixels) {
    throw new HostProblem(
      `${what} is ${size.width}×${size.height} px (${megapixels(pixels)}); the server accepts images up to ` +
        `${limits.maxSide} px a side and ${megapixels(limits.maxPixels)}. Work on a smaller area ` +
        "(a selection or layer, where the mode reads one) or reduce the size with Image ▸ Image Size.",
    );
  }
  if (pixels > WARN_PIXELS) {
    return `${what} is large (${size.width}×${size.height} px): reading and sending it takes a while and much memory.`;
  }
  return null;
}

module.exports = { readNeeds, prepareInputs, neighbour, clipToCanvas, imageLimits, checkImageSize, DEFAULT_LIMITS };
