// @ts-check
/**
 * The wire protocol of the Acetate server, mirrored by hand from `server/acetate/protocol.py`
 * (and DESIGN.md "Contracts"). Shapes only: no network, no DOM, no Photoshop.
 */
"use strict";

/** A mode's name, as `GET /api/modes` lists it (the panel knows no mode by name). */
/** @typedef {string} Mode */

/** The protocol version this panel speaks (`api_version` of /api/health and /api/modes). */
const API_VERSION = 2;

/**
 * An option a mode reads (`OptionInfo`). Absent keys mean null.
 * @typedef {Object} OptionInfo
 * @property {string} name
 * @property {string} label
 * @property {string} help
 * @property {"int"|"float"|"bool"|"enum"|"text"|"prompts"|"region"} type
 *   `region` (list items): a box `{left, top, width, height}` in canvas pixels, or a mask
 *   `{left, top}` whose pixels go up as the part `<list>.<i>.mask` (docs/protocol.md, Scenes)
 * @property {any} [default]
 * @property {Record<string, any>|null} [family_defaults]
 * @property {number|null} [minimum]
 * @property {number|null} [maximum]
 * @property {boolean|null} [exclusive_minimum]
 * @property {number|null} [multiple_of]
 * @property {string[]|null} [choices]
 * @property {number|null} [max_length]
 * @property {boolean} advanced
 * @property {string|null} [depends_on]
 */

/**
 * An image or mask a mode takes, and where an editor reads it from (`ImageInputInfo`).
 * @typedef {Object} ImageInputInfo
 * @property {string} field
 * @property {string} label
 * @property {string} help
 * @property {"rgba"|"mask"} kind
 * @property {"canvas"|"layer"|"selection"} source
 * @property {boolean} required
 * @property {boolean} frame
 * @property {string|null} [relative_to]
 * @property {Record<string, string[]>|null} [when]
 * @property {boolean|null} [replaced] the result replaces what this image is read from: it lands
 *   right above that layer, which is hidden (shown again by "Undo whole result")
 * @property {("canvas"|"layer"|"selection")[]|null} [other_sources] sources the user may pick
 *   instead of `source` (decompose: the whole canvas instead of the active layer)
 */

/**
 * A list-valued input whose items carry their own fields (`ListInputInfo`).
 * @typedef {Object} ListInputInfo
 * @property {string} field
 * @property {string} label
 * @property {string} help
 * @property {number} min_items
 * @property {number} max_items
 * @property {OptionInfo[]} item_options
 * @property {ImageInputInfo[]} item_images
 */

/**
 * A layer a mode returns per result set, bottom → top; with `count_from` the name holds
 * `{i}` and the layer repeats once per item of that request field; `only_without`: returned
 * only when that image input is not sent (a generated background); `title_from`: the list item
 * field whose text is each counted layer's record `name` (its `key` keeps the pattern)
 * (`LayerInfo`).
 * @typedef {{name: string, label: string, visible: boolean, keeps_alpha: boolean, count_from?: string|null,
 *   only_without?: string|null, title_from?: string|null}} LayerInfo
 */

/**
 * A model family a mode runs on (or why not); `files`: part → the official kinds of
 * LayerDiffusion file that fill it, preferred first (`FamilyInfo`).
 * @typedef {{family: string, label: string, supported: boolean, reason?: string|null, files?: Record<string, string[]>}} FamilyInfo
 */

/**
 * One mode as `GET /api/modes` publishes it (`ModeInfo`).
 * @typedef {Object} ModeInfo
 * @property {string} name
 * @property {string} label
 * @property {string} help
 * @property {boolean} prompt_required
 * @property {ImageInputInfo[]} inputs
 * @property {ListInputInfo[]} lists
 * @property {string|null} [frame]
 * @property {string|null} [frame_scale]
 * @property {LayerInfo[]} layers
 * @property {OptionInfo[]} options
 * @property {FamilyInfo[]} families
 */

const DEFAULT_PORT = 7865;
const MAX_SEED = 2 ** 32 - 1;
const MAX_BATCH = 16;
const MAX_PROMPT = 4000;

/**
 * The request's non-image fields: the fixed ones, plus whatever options and list inputs the
 * chosen mode declares (list inputs as arrays of objects); absent means "the server's default".
 * @typedef {{mode: Mode, prompt: string, model?: string, seed?: number, batch?: number,
 *   client_id?: string, selection_bounds?: Rect, [option: string]: any}} GenerateParameters
 */

/** @typedef {{left: number, top: number, width: number, height: number}} Rect */

/**
 * One layer image and where it goes on the canvas (`LayerRecord`). `name` is what the layer is
 * called in the document; `key` (absent: `name`) is the mode's layer name it comes from
 * (`object_0` for a scene object named after its prompt): layers are stacked and looked up by
 * `layerKey`, never by `name`, and downloaded by `file`.
 * @typedef {Object} LayerRecord
 * @property {string} name
 * @property {string} [key]
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
 * @property {Record<string, {name: string, sha256: string}>} [files]  official kind → the LayerDiffusion file used for it
 */
/* Records from the server may carry fields this panel does not know: they are ignored. */

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
/**
 * What the server saw of the panel's request (`client_seen`: UXP's Origin is undocumented).
 * @typedef {{origin?: string|null, sec_fetch_site?: string|null, sec_fetch_mode?: string|null}} ClientSeen
 */
/**
 * Image limits the server publishes (`limits` in `GET /api/health`, when present).
 * @typedef {{max_side?: number, max_pixels?: number, [key: string]: any}} ImageLimits
 */
/** @typedef {{version: string, api_version?: number, device: string, queue_length: number, running: string|null, client_seen?: ClientSeen, limits?: ImageLimits}} Health */
/** @typedef {{api_version: number, modes: ModeInfo[]}} ModesInfo */
/** @typedef {{name: string, family?: string, tiny?: boolean, test?: boolean, [key: string]: any}} BaseModelInfo */
/**
 * A LayerDiffusion file `GET /api/models` lists (`layer_files`): `kind` is the official kind it
 * fills; `trained` is null for a released file, else its `acetate.*` metadata.
 * @typedef {{name: string, kind: string, family: string, tiny?: boolean, trained?: Record<string, string>|null}} LayerFileInfo
 */

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
 *   {type: "error", job_id: string|null, code: string, message: string, field?: string|null,
 *    result?: ResultRecord|null} |
 *   {type: "cancelled", job_id: string, result?: ResultRecord|null}
 * )} JobEvent
 * `result` of `error`/`cancelled`: a partial result, the layers finished before the job stopped
 * (docs/protocol.md, Partial results); absent or null when none was.
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
  if ((data.type === "error" || data.type === "cancelled") && data.result != null && !isResultRecord(data.result)) {
    throw new ProtocolError(`${data.type} message with a partial result that is not a valid result record`);
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
    (value.key === undefined || value.key === null || typeof value.key === "string") &&
    ["batch_index", "left", "top", "width", "height"].every((key) => Number.isInteger(value[key]))
  );
}

/**
 * The mode's layer name a record comes from: `key`, else `name` (docs/protocol.md, Job and
 * result records). Stacking order, declarations and expected layers go by it.
 * @param {LayerRecord} record
 */
function layerKey(record) {
  return typeof record.key === "string" && record.key !== "" ? record.key : record.name;
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
 * Group name of one result set, the same as in the PSD and in Krita: the main prompt, trimmed,
 * its first 60 characters (code points, as Python counts them) — the mode's label when the
 * prompt is empty — and the 1-based batch number.
 * @param {string} prompt
 * @param {number} batchIndex
 * @param {string} [modeLabel]
 */
function groupName(prompt, batchIndex, modeLabel = "") {
  const text = Array.from(prompt.trim()).slice(0, 60).join("") || modeLabel;
  return `${text} #${batchIndex + 1}`;
}

/** The server predates `GET /api/modes` (or speaks an older protocol version). */
class ServerTooOld extends Error {}

/** The server speaks a newer protocol version than this panel: the panel needs an update. */
class ServerTooNew extends Error {}

/**
 * `GET /api/modes` checked for what the panel relies on; unknown fields are kept and ignored,
 * modes it cannot use (malformed entries) are dropped.
 * @param {any} data
 * @returns {ModeInfo[]}
 */
function parseModes(data) {
  if (data === null || typeof data !== "object" || !Array.isArray(data.modes)) {
    throw new ProtocolError("GET /api/modes did not answer with a list of modes");
  }
  if (typeof data.api_version === "number" && data.api_version > API_VERSION) {
    throw new ServerTooNew(`the server speaks protocol ${data.api_version}, this panel ${API_VERSION}`);
  }
  if (data.api_version !== API_VERSION) {
    throw new ServerTooOld(`the server speaks protocol ${JSON.stringify(data.api_version)}, this panel ${API_VERSION}`);
  }
  /** @param {any} value */
  const list = (value) => (Array.isArray(value) ? value : []);
  /** @param {any} value */
  const named = (value) => value !== null && typeof value === "object" && typeof value.name === "string";
  /** @param {any} option @returns {OptionInfo} */
  const option = (option) => ({ ...option, label: String(option.label ?? option.name), help: String(option.help ?? ""), advanced: Boolean(option.advanced) });
  /** @param {any} input @returns {ImageInputInfo} */
  const image = (input) => ({
    ...input,
    label: String(input.label ?? input.field),
    help: String(input.help ?? ""),
    kind: input.kind === "mask" ? "mask" : "rgba",
    required: Boolean(input.required),
    frame: Boolean(input.frame),
  });
  const knownSource = (/** @type {any} */ input) =>
    input !== null && typeof input === "object" && typeof input.field === "string" && ["canvas", "layer", "selection"].includes(input.source);
  return list(data.modes)
    .filter((mode) => named(mode) && Array.isArray(mode.layers) && mode.layers.every(named))
    .map((mode) => ({
      ...mode,
      label: String(mode.label ?? mode.name),
      help: String(mode.help ?? ""),
      prompt_required: mode.prompt_required !== false,
      // An input read from a source this panel does not know cannot be sent: if it is
      // required, the mode is refused when generating (see placement.js).
      inputs: list(mode.inputs).filter((input) => input && typeof input.field === "string").map(image),
      lists: list(mode.lists)
        .filter((item) => item && typeof item.field === "string")
        .map((item) => ({
          ...item,
          label: String(item.label ?? item.field),
          help: String(item.help ?? ""),
          min_items: Number.isInteger(item.min_items) ? item.min_items : 0,
          max_items: Number.isInteger(item.max_items) ? item.max_items : 16,
          item_options: list(item.item_options).filter(named).map(option),
          item_images: list(item.item_images).filter(knownSource).map(image),
        })),
      options: list(mode.options).filter(named).map(option),
      families: list(mode.families).filter((family) => family && typeof family.family === "string"),
    }));
}

module.exports = {
  API_VERSION,
  DEFAULT_PORT,
  MAX_SEED,
  MAX_BATCH,
  MAX_PROMPT,
  FINAL_EVENTS,
  ProtocolError,
  ServerTooOld,
  ServerTooNew,
  parseEvent,
  parseModes,
  isLayerRecord,
  isResultRecord,
  layerKey,
  groupName,
};
