// @ts-check
/**
 * The panel's observable state: connection, job progress, messages and the job history.
 * No DOM, no network.
 */
"use strict";

/** @typedef {import("./protocol").Mode} Mode */
/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").BaseModelInfo} BaseModelInfo */
/** @typedef {import("./protocol").JobRecord} JobRecord */
/** @typedef {import("./settings").Settings} Settings */

/**
 * A past job as the panel lists it. `offset` is where the job's input frame sat in the
 * document, so "Insert" can place its layers again.
 * @typedef {Object} HistoryEntry
 * @property {string} id
 * @property {Mode} mode
 * @property {string} prompt
 * @property {string} status
 * @property {number} created
 * @property {{left: number, top: number}} offset
 * @property {number|null} [seed]
 * @property {number} [layers]
 * @property {string} [error]
 */

/**
 * @typedef {Object} JobProgress
 * @property {string} id
 * @property {string} phase  what the panel is doing: reading, uploading, queued, started, downloading, inserting
 * @property {number|null} position
 * @property {number} step
 * @property {number} total
 * @property {number|null} etaS
 * @property {ArrayBuffer|null} preview  JPEG bytes of the latest preview
 */

/**
 * `outdated`: the server has no `GET /api/modes`, or speaks an older or newer protocol version.
 * @typedef {Object} Connection
 * @property {"disconnected"|"connecting"|"connected"|"error"|"outdated"} status
 * @property {string} message
 * @property {string} [version]
 * @property {string} [device]
 * @property {"open"|"connecting"|"closed"} socket
 * @property {import("./protocol").ClientSeen|null} [seen]  the Origin/Sec-Fetch-* headers the server saw
 * @property {{maxSide: number, maxPixels: number}} [limits]  the server's image limits
 */

/**
 * @typedef {Object} PanelState
 * @property {Settings} settings
 * @property {string} token
 * @property {Connection} connection
 * @property {BaseModelInfo[]} models
 * @property {import("./protocol").LayerFileInfo[]} layerFiles  the server's LayerDiffusion files (`layer_files`)
 * @property {import("./structure").ControlNetInfo[]} [controlnets]  the server's ControlNets (`controlnets`)
 * @property {import("./loras").ModelFileInfo[]} [loras]  the server's LoRAs (`loras`)
 * @property {import("./loras").ModelFileInfo[]} [embeddings]  the server's embeddings (`embeddings`)
 * @property {string|null} defaultModel  the base the server uses when the panel names none
 * @property {ModeInfo[]} modes  the server's modes (`GET /api/modes`), in its order
 * @property {LandedResult|null} landed  the last result inserted, for "Undo whole result"
 * @property {JobProgress|null} job
 * @property {boolean} busy
 * @property {{kind: "error"|"info", text: string}|null} message
 * @property {HistoryEntry[]} history
 */

/**
 * A result's groups in a document (one per batch item), removable in one step.
 * `hidden`: layers the result hid (a scene's layout group), shown again when it is removed.
 * @typedef {{id: string, documentId: number, groupIds: number[], hidden?: number[]}} LandedResult
 */

const HISTORY_LIMIT = 50;

/**
 * A tiny observable store: `update` merges a patch and notifies every listener.
 * @template {object} T
 */
class Store {
  /** @param {T} initial */
  constructor(initial) {
    /** @type {T} */
    this.state = initial;
    /** @type {Set<(state: T, previous: T) => void>} */
    this.listeners = new Set();
  }

  /** @param {Partial<T>} patch */
  update(patch) {
    const previous = this.state;
    this.state = { ...previous, ...patch };
    for (const listener of [...this.listeners]) {
      listener(this.state, previous);
    }
  }

  /**
   * @param {(state: T, previous: T) => void} listener
   * @returns {() => void} unsubscribe
   */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/**
 * @param {Settings} settings
 * @param {string} [token]
 * @returns {Store<PanelState>}
 */
function createStore(settings, token = "") {
  /** @type {PanelState} */
  const initial = {
    settings,
    token,
    connection: { status: "disconnected", message: "", socket: "closed" },
    models: [],
    layerFiles: [],
    defaultModel: null,
    modes: [],
    landed: null,
    job: null,
    busy: false,
    message: null,
    history: [],
  };
  return new Store(initial);
}

/**
 * Insert or update one history entry (newest first, bounded).
 * @param {HistoryEntry[]} history
 * @param {HistoryEntry} entry
 * @returns {HistoryEntry[]}
 */
function upsertHistory(history, entry) {
  const others = history.filter((item) => item.id !== entry.id);
  const old = history.find((item) => item.id === entry.id);
  const merged = old ? { ...old, ...entry, offset: old.offset ?? entry.offset } : entry;
  return [merged, ...others].sort((a, b) => b.created - a.created).slice(0, HISTORY_LIMIT);
}

/**
 * History entries as saved with the settings (only what the server cannot tell again).
 * @param {unknown} saved
 * @returns {HistoryEntry[]}
 */
function restoreHistory(saved) {
  if (!Array.isArray(saved)) {
    return [];
  }
  return saved
    .filter(
      (item) =>
        item &&
        typeof item.id === "string" &&
        typeof item.mode === "string" &&
        typeof item.created === "number" &&
        item.offset &&
        Number.isInteger(item.offset.left) &&
        Number.isInteger(item.offset.top),
    )
    .map((item) => ({
      id: item.id,
      mode: item.mode,
      prompt: String(item.prompt ?? ""),
      status: String(item.status ?? "unknown"),
      created: item.created,
      offset: { left: item.offset.left, top: item.offset.top },
      seed: typeof item.seed === "number" ? item.seed : null,
    }))
    .slice(0, HISTORY_LIMIT);
}

/**
 * The history with the server's records of this panel's jobs merged in (status, seed, layers;
 * the offsets only the panel knows are kept).
 * @param {HistoryEntry[]} history
 * @param {JobRecord[]} jobs
 * @returns {HistoryEntry[]}
 */
function mergeJobs(history, jobs) {
  for (const job of jobs) {
    const known = history.find((entry) => entry.id === job.id);
    const result = job.result ?? null;
    history = upsertHistory(history, {
      id: job.id,
      mode: result?.mode ?? known?.mode ?? "",
      prompt: String(result?.parameters?.prompt ?? known?.prompt ?? ""),
      status: job.status,
      created: known?.created ?? 0,
      offset: known?.offset ?? { left: 0, top: 0 },
      seed: typeof result?.parameters?.seed === "number" ? result.parameters.seed : (known?.seed ?? null),
      layers: result ? result.layers.length : undefined,
      error: job.error?.message,
    });
  }
  return history;
}

/**
 * The history after a job's final event (status, and the seed and layer count of a result).
 * @param {HistoryEntry[]} history
 * @param {string} jobId
 * @param {import("./protocol").JobEvent} final
 * @returns {HistoryEntry[]}
 */
function recordFinal(history, jobId, final) {
  const entry = history.find((item) => item.id === jobId);
  if (!entry) {
    return history;
  }
  const update = { ...entry, status: final.type };
  if (final.type === "done") {
    update.layers = final.result.layers.length;
    const seed = final.result.parameters?.seed;
    update.seed = typeof seed === "number" ? seed : entry.seed;
  } else if (final.type === "error" || final.type === "cancelled") {
    if (final.type === "error") {
      update.error = final.message;
    }
    if (final.result) {
      update.layers = final.result.layers.length; // a partial result: its layers are kept
    }
  }
  return upsertHistory(history, update);
}

/**
 * @param {string} id
 * @param {string} phase
 * @returns {JobProgress}
 */
function progress(id, phase) {
  return { id, phase, position: null, step: 0, total: 0, etaS: null, preview: null };
}

module.exports = {
  HISTORY_LIMIT,
  Store,
  createStore,
  restoreHistory,
  upsertHistory,
  mergeJobs,
  recordFinal,
  progress,
};
