// @ts-check
/**
 * The wire protocol of the Acetate server, mirrored by hand from `server/acetate/protocol.py`
 * (and DESIGN.md "Contracts"). Shapes only: no network, no DOM, no Photoshop.
 */
"use strict";

/** @typedef {"fg"|"fg2bg"|"bg2fg"|"joint"|"img2img"|"inpaint"|"layer_on_artwork"|"upscale"} Mode */
/** @typedef {"canvas"|"selection"|"fg"|"bg"|"image"|"mask"|"control_image"} ImageField */
/** @typedef {"foreground"|"background"|"blended"} LayerName */

/** @type {readonly Mode[]} */
const MODES = ["fg", "fg2bg", "bg2fg", "joint", "img2img", "inpaint", "layer_on_artwork", "upscale"];

/** Modes with an image input: their layers come back in that input's pixel frame. */
const EDITOR_MODES = new Set(["fg2bg", "bg2fg", "img2img", "inpaint", "layer_on_artwork", "upscale"]);

/** @type {Readonly<Record<Mode, readonly ImageField[]>>} Image inputs each mode cannot run without. */
const REQUIRED_IMAGES = {
  fg: [],
  fg2bg: ["fg"],
  bg2fg: ["bg"],
  joint: [],
  img2img: ["image"],
  inpaint: ["image", "mask"],
  layer_on_artwork: ["canvas"],
  upscale: ["image"],
};

/** @type {Readonly<Record<Mode, readonly ImageField[]>>} Image inputs each mode can use. */
const ALLOWED_IMAGES = {
  fg: ["control_image"],
  fg2bg: ["fg", "control_image"],
  bg2fg: ["bg", "control_image"],
  joint: ["control_image"],
  img2img: ["image", "mask", "control_image"],
  inpaint: ["image", "mask", "control_image"],
  layer_on_artwork: ["canvas", "selection", "control_image"],
  upscale: ["image", "control_image"],
};

/** Masks travel as 1 byte per pixel, every other image as 4 (straight RGBA). */
const MASK_FIELDS = new Set(["selection", "mask"]);

/** @type {Readonly<Record<Mode, readonly LayerName[]>>} Layers per result set, bottom to top. */
const MODE_LAYERS = {
  fg: ["foreground"],
  fg2bg: ["background", "blended"],
  bg2fg: ["foreground", "blended"],
  joint: ["background", "foreground", "blended"],
  img2img: ["foreground"],
  inpaint: ["foreground"],
  layer_on_artwork: ["foreground"],
  upscale: ["foreground"],
};

const SCHEDULERS = ["dpm++_2m_karras", "dpm++_2m_sde_karras", "euler_a", "euler", "unipc", "ddim"];
const DECODES = ["tta", "fast"];
const DEFAULT_PORT = 7865;
const MAX_SEED = 2 ** 32 - 1;
const MAX_SIDE = 8192;
const MAX_PROMPT = 4000;

/**
 * Every non-image request field (`GenerateParameters`); absent means "the server's default".
 * @typedef {Object} GenerateParameters
 * @property {Mode} mode
 * @property {string} [model]
 * @property {string} prompt
 * @property {string} [negative_prompt]
 * @property {{foreground?: string, background?: string, blended?: string}} [layer_prompts]
 * @property {number} [seed]
 * @property {number} [steps]
 * @property {number} [cfg]
 * @property {string} [scheduler]
 * @property {number} [width]
 * @property {number} [height]
 * @property {number} [batch]
 * @property {number} [strength]
 * @property {number} [layer_weight]
 * @property {number} [stop_at]
 * @property {"tta"|"fast"} [decode]
 * @property {number} [scale]
 * @property {number} [margin]
 * @property {number} [feather]
 * @property {Rect} [selection_bounds]
 * @property {string} [client_id]
 */

/** @typedef {{left: number, top: number, width: number, height: number}} Rect */

/**
 * One layer image and where it goes on the canvas (`LayerRecord`).
 * @typedef {Object} LayerRecord
 * @property {string} name
 * @property {number} batch_index
 * @property {string} file
 * @property {number} left
 * @property {number} top
 * @property {number} width
 * @property {number} height
 * @property {boolean} visible
 */

/**
 * The result record: `result` of a job and of the `done` event (`ResultRecord`).
 * @typedef {Object} ResultRecord
 * @property {string} id
 * @property {Mode} mode
 * @property {string} model
 * @property {Record<string, any>} parameters
 * @property {{width: number, height: number}} canvas
 * @property {LayerRecord[]} layers
 * @property {string|null} [psd]
 * @property {string[]} [warnings]
 */

/** @typedef {"queued"|"started"|"done"|"error"|"cancelled"} JobStatus */
/** @typedef {{code: string, message: string, field?: string|null}} ErrorInfo */

/**
 * `GET /api/jobs/{id}` (`JobRecord`).
 * @typedef {Object} JobRecord
 * @property {string} id
 * @property {JobStatus} status
 * @property {number|null} [position]
 * @property {ResultRecord|null} [result]
 * @property {ErrorInfo|null} [error]
 */

/** @typedef {{id: string, position: number}} JobCreated */
/** @typedef {{version: string, device: string, queue_length: number, running: string|null}} Health */
/** @typedef {{name: string, family?: string, tiny?: boolean, test?: boolean, [key: string]: any}} BaseModelInfo */

/**
 * A server → client WebSocket event. `preview` carries the binary frame that followed it.
 * @typedef {(
 *   {type: "queued", job_id: string, position: number} |
 *   {type: "started", job_id: string} |
 *   {type: "progress", job_id: string, step: number, total: number, eta_s: number|null} |
 *   {type: "preview", job_id: string, width: number, height: number, format: string,
 *    image?: ArrayBuffer} |
 *   {type: "layer_ready", job_id: string, layer: LayerRecord} |
 *   {type: "done", job_id: string, result: ResultRecord} |
 *   {type: "error", job_id: string|null, code: string, message: string} |
 *   {type: "cancelled", job_id: string}
 * )} JobEvent
 */

const EVENT_TYPES = new Set([
  "queued",
  "started",
  "progress",
  "preview",
  "layer_ready",
  "done",
  "error",
  "cancelled",
]);
const FINAL_EVENTS = new Set(["done", "error", "cancelled"]);

/** A message from the server that does not follow the protocol. */
class ProtocolError extends Error {}

/**
 * Parse one JSON text frame into an event; anything malformed throws `ProtocolError`.
 * @param {string} text
 * @returns {JobEvent}
 */
function parseEvent(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ProtocolError("the server sent a WebSocket message that is not JSON");
  }
  if (data === null || typeof data !== "object" || !EVENT_TYPES.has(data.type)) {
    throw new ProtocolError(`unknown WebSocket message type ${JSON.stringify(data && data.type)}`);
  }
  if (data.type !== "error" && typeof data.job_id !== "string") {
    throw new ProtocolError(`WebSocket message ${data.type} has no job_id`);
  }
  if (data.type === "done" && !isResultRecord(data.result)) {
    throw new ProtocolError("done message without a valid result record");
  }
  if (data.type === "layer_ready" && !isLayerRecord(data.layer)) {
    throw new ProtocolError("layer_ready message without a valid layer record");
  }
  return data;
}

/**
 * @param {any} value
 * @returns {value is LayerRecord}
 */
function isLayerRecord(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof value.name === "string" &&
    typeof value.file === "string" &&
    ["batch_index", "left", "top", "width", "height"].every((key) => Number.isInteger(value[key]))
  );
}

/**
 * @param {any} value
 * @returns {value is ResultRecord}
 */
function isResultRecord(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof value.id === "string" &&
    Array.isArray(value.layers) &&
    value.layers.every(isLayerRecord)
  );
}

/**
 * `foreground.png` for batch item 0, `foreground_2.png` for item 2.
 * @param {string} name
 * @param {number} batchIndex
 */
function layerFileName(name, batchIndex) {
  return batchIndex === 0 ? `${name}.png` : `${name}_${batchIndex}.png`;
}

/**
 * Group name of one result set, the same as in the PSD and in Krita: the main prompt's first
 * 60 characters (code points, as Python counts them) and the 1-based batch number.
 * @param {string} prompt
 * @param {number} batchIndex
 */
function groupName(prompt, batchIndex) {
  return `${Array.from(prompt).slice(0, 60).join("")} #${batchIndex + 1}`;
}

module.exports = {
  MODES,
  EDITOR_MODES,
  REQUIRED_IMAGES,
  ALLOWED_IMAGES,
  MASK_FIELDS,
  MODE_LAYERS,
  SCHEDULERS,
  DECODES,
  DEFAULT_PORT,
  MAX_SEED,
  MAX_SIDE,
  MAX_PROMPT,
  FINAL_EVENTS,
  ProtocolError,
  parseEvent,
  isLayerRecord,
  isResultRecord,
  layerFileName,
  groupName,
};
