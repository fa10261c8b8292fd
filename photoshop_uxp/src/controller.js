// @ts-check
/**
 * The panel's actions: connect, generate (read the document → submit → follow the events →
 * download → insert), cancel, and the history's insert/open. The document is reached only
 * through a `Host` (src/photoshop.js in Photoshop, a fake in tests), the network only through
 * src/client.js, so this file runs unchanged in UXP and in Node.
 */
"use strict";

const { AcetateClient, EventSocket, normalizeBaseUrl } = require("./client.js");
const { HostProblem, InputProblem } = require("./errors.js");
const { describeError, describeJobError, manifestMessage, urlAllowed } = require("./messages.js");
const { anySelected, intersect, placeInto, union } = require("./pixels.js");
const { FINAL_EVENTS, MODE_LAYERS, ProtocolError, groupName } = require("./protocol.js");
const { MODE_LABELS, buildParameters, upsertHistory } = require("./state.js");

/** @typedef {import("./protocol").Mode} Mode */
/** @typedef {import("./protocol").Rect} Rect */
/** @typedef {import("./protocol").JobEvent} JobEvent */
/** @typedef {import("./protocol").ResultRecord} ResultRecord */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */
/** @typedef {import("./pixels").Raster} Raster */
/** @typedef {import("./state").PanelState} PanelState */
/** @typedef {import("./state").Store<PanelState>} PanelStore */
/** @typedef {import("./client").FetchLike} FetchLike */
/** @typedef {import("./client").SocketClass} SocketClass */

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
 * What the controller needs from the editor.
 * @typedef {Object} Host
 * @property {() => DocumentInfo|null} activeDocument
 * @property {(what: {composite?: boolean, layer?: boolean, selection?: boolean}) => Promise<DocumentPixels>} readDocument
 *   one short modal scope
 * @property {(documentId: number, groups: NewGroup[], commandName: string) => Promise<void>} insertGroups
 *   one modal scope, one history state; nothing left behind on failure
 * @property {(bytes: ArrayBuffer, fileName: string) => Promise<void>} openPsd
 */

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

class Cancelled extends Error {}

class Controller {
  /**
   * @param {{host: Host, store: PanelStore, allowed: string[], fetch: FetchLike,
   *   WebSocket: SocketClass, requestTimeoutMs?: number, eventTimeoutMs?: number}} options
   *   `allowed`: the manifest's network entries; `eventTimeoutMs`: after this long without
   *   an event the job is polled over HTTP (a server that does not answer ends the wait).
   */
  constructor({ host, store, allowed, fetch, WebSocket, requestTimeoutMs = 30_000, eventTimeoutMs = 60_000 }) {
    this.host = host;
    this.store = store;
    this.allowed = allowed;
    this.fetch = fetch;
    this.WebSocket = WebSocket;
    this.requestTimeoutMs = requestTimeoutMs;
    this.eventTimeoutMs = eventTimeoutMs;
    /** @type {AcetateClient|null} */
    this.client = null;
    /** @type {EventSocket|null} */
    this.socket = null;
    /** @type {Map<string, {resolve: (event: JobEvent) => void, reject: (error: unknown) => void, last: number}>} */
    this.waiters = new Map();
    this.cancelRequested = false;
  }

  get state() {
    return this.store.state;
  }

  /**
   * Check the server and open the event stream. Resolves with whether it worked; the reason
   * of a failure is in the state (`connection.message`).
   * @returns {Promise<boolean>}
   */
  async connect() {
    this.disconnect();
    const { serverUrl, clientId } = this.state.settings;
    const fail = (/** @type {string} */ message) => {
      this.store.update({ connection: { status: "error", message, socket: "closed" } });
      return false;
    };
    let client;
    try {
      client = new AcetateClient({
        baseUrl: normalizeBaseUrl(serverUrl),
        token: this.state.token,
        fetch: this.fetch,
        timeoutMs: this.requestTimeoutMs,
      });
    } catch {
      return fail(`Server: "${serverUrl}" is not an address like http://127.0.0.1:7865.`);
    }
    if (!/^[\x21-\x7e]*$/.test(client.token)) {
      return fail("Token: use only letters, digits and punctuation (HTTP headers cannot carry other characters).");
    }
    if (!urlAllowed(client.baseUrl, this.allowed)) {
      return fail(manifestMessage(serverUrl, this.allowed));
    }
    this.store.update({ connection: { status: "connecting", message: "Connecting…", socket: "closed" } });
    let health;
    let models;
    try {
      health = await client.health();
      models = await client.models();
    } catch (error) {
      return fail(this.describe(error));
    }
    this.client = client;
    this.socket = new EventSocket({
      url: client.socketUrl,
      WebSocket: this.WebSocket,
      onEvent: (event) => this.onEvent(event),
      onStatus: (socket) => this.store.update({ connection: { ...this.state.connection, socket } }),
    });
    this.store.update({
      models: Array.isArray(models?.bases) ? models.bases : [],
      connection: {
        status: "connected",
        message: `Connected to Acetate ${health.version} (${health.device})`,
        version: health.version,
        device: health.device,
        socket: "connecting",
      },
    });
    this.socket.open();
    if (this.waiters.size > 0) {
      // Reconnected while a job runs: keep following it on the new socket.
      this.socket.subscribe([...this.waiters.keys()]);
    }
    try {
      await this.refreshHistory(clientId);
    } catch (error) {
      console.warn("Acetate: could not load the job history:", error);
    }
    return true;
  }

  /** Close the event stream and forget the server. */
  disconnect() {
    this.socket?.close();
    this.socket = null;
    this.client = null;
    if (this.state.connection.status !== "disconnected") {
      this.store.update({ connection: { status: "disconnected", message: "", socket: "closed" } });
    }
  }

  /**
   * Merge the server's list of this panel's jobs into the history.
   * @param {string} [clientId]
   */
  async refreshHistory(clientId = this.state.settings.clientId) {
    if (!this.client) {
      return;
    }
    const jobs = await this.client.jobs(clientId);
    let history = this.state.history;
    for (const job of jobs) {
      const known = history.find((entry) => entry.id === job.id);
      const result = job.result ?? null;
      history = upsertHistory(history, {
        id: job.id,
        mode: result?.mode ?? known?.mode ?? "fg",
        prompt: String(result?.parameters?.prompt ?? known?.prompt ?? ""),
        status: job.status,
        created: known?.created ?? 0,
        offset: known?.offset ?? { left: 0, top: 0 },
        seed: typeof result?.parameters?.seed === "number" ? result.parameters.seed : known?.seed ?? null,
        layers: result ? result.layers.length : undefined,
        error: job.error?.message,
      });
    }
    this.store.update({ history });
  }

  /**
   * Generate with the current settings and insert the result into the active document.
   * Errors end up in `state.message`; resolves when the whole flow has ended.
   */
  async generate() {
    if (this.state.busy) {
      return;
    }
    this.cancelRequested = false;
    this.store.update({ busy: true, message: null, job: progress("", "reading") });
    /** @type {string|null} */
    let jobId = null;
    try {
      const params = buildParameters(this.state.settings);
      const client = await this.requireClient();
      const document = this.host.activeDocument();
      if (!document) {
        throw new HostProblem("Open a document first: Acetate adds its layers to the active document.");
      }
      const source = SOURCES[params.mode];
      let frame = { left: 0, top: 0, width: document.width, height: document.height };
      /** @type {Record<string, Raster>} */
      let images = {};
      /** @type {Partial<GenerateParameters>} */
      let extra = {};
      if (source.composite || source.layer) {
        const pixels = await this.host.readDocument({
          composite: Boolean(source.composite),
          layer: Boolean(source.layer),
          selection: Boolean(source.selection),
        });
        ({ images, frame, extra } = prepareInputs(params.mode, pixels));
      }
      this.checkCancelled();
      this.store.update({ job: progress("", "uploading") });
      const created = await client.submit({ ...params, ...extra }, images);
      jobId = created.id;
      this.store.update({
        job: { ...progress(jobId, "queued"), position: created.position },
        history: upsertHistory(this.state.history, {
          id: jobId,
          mode: params.mode,
          prompt: params.prompt,
          status: "queued",
          created: Date.now(),
          offset: { left: frame.left, top: frame.top },
          seed: params.seed ?? null,
        }),
      });
      if (this.cancelRequested) {
        await client.cancel(jobId);
      }
      const final = await this.follow(jobId);
      this.recordFinal(jobId, final);
      if (final.type === "cancelled") {
        throw new Cancelled();
      }
      if (final.type === "error") {
        this.store.update({ message: { kind: "error", text: describeJobError(final.code, final.message) } });
        return;
      }
      if (final.type !== "done") {
        return;
      }
      this.checkCancelled();
      await this.place(final.result, { left: frame.left, top: frame.top }, document, params.prompt);
    } catch (error) {
      if (error instanceof Cancelled) {
        this.store.update({ message: { kind: "info", text: "Cancelled." } });
      } else {
        this.store.update({ message: { kind: "error", text: this.describe(error) } });
      }
    } finally {
      if (jobId !== null) {
        this.socket?.unsubscribe([jobId]);
      }
      this.store.update({ busy: false, job: null });
    }
  }

  /** Cancel the running generation (the server stops at its next step). */
  async cancel() {
    if (!this.state.busy) {
      return;
    }
    this.cancelRequested = true;
    const jobId = this.state.job?.id;
    if (jobId && this.client) {
      try {
        await this.client.cancel(jobId);
      } catch (error) {
        this.store.update({ message: { kind: "error", text: this.describe(error) } });
      }
    }
  }

  /**
   * Insert a finished job from the history into the active document again.
   * @param {string} jobId
   */
  async insertFromHistory(jobId) {
    await this.runHistoryAction(async (client) => {
      const record = await client.job(jobId);
      if (record.status !== "done" || !record.result) {
        throw new HostProblem(`This job has no result to insert (it is ${record.status}).`);
      }
      const document = this.host.activeDocument();
      if (!document) {
        throw new HostProblem("Open a document first: Acetate adds its layers to the active document.");
      }
      const entry = this.state.history.find((item) => item.id === jobId);
      const offset = entry?.offset ?? { left: 0, top: 0 };
      await this.place(record.result, offset, document, entry?.prompt ?? "");
    });
  }

  /**
   * Download a job's layered PSD and open it as a new document.
   * @param {string} jobId
   */
  async openPsd(jobId) {
    await this.runHistoryAction(async (client) => {
      this.store.update({ job: progress(jobId, "downloading") });
      const bytes = await client.psd(jobId);
      await this.host.openPsd(bytes, `acetate-${jobId}.psd`);
      this.store.update({ message: { kind: "info", text: "Opened the layered PSD as a new document." } });
    });
  }

  /**
   * @private
   * @param {(client: AcetateClient) => Promise<void>} action
   */
  async runHistoryAction(action) {
    if (this.state.busy) {
      return;
    }
    this.store.update({ busy: true, message: null });
    try {
      await action(await this.requireClient());
    } catch (error) {
      this.store.update({ message: { kind: "error", text: this.describe(error) } });
    } finally {
      this.store.update({ busy: false, job: null });
    }
  }

  /**
   * Download a result's layers and insert them (upscale results open as a new document).
   * @private
   * @param {ResultRecord} result
   * @param {{left: number, top: number}} offset
   * @param {DocumentInfo} document
   * @param {string} prompt
   */
  async place(result, offset, document, prompt) {
    const client = /** @type {AcetateClient} */ (this.client);
    if (result.mode === "upscale") {
      this.store.update({ job: progress(result.id, "downloading") });
      await this.host.openPsd(await client.psd(result.id), `acetate-${result.id}.psd`);
      this.store.update({ message: { kind: "info", text: "The upscaled layer opened as a new document." } });
      return;
    }
    this.store.update({ job: progress(result.id, "downloading") });
    /** @type {Map<string, Raster>} */
    const pixels = new Map();
    for (const layer of result.layers) {
      const raster = await client.layerPixels(result.id, layer.file);
      if (
        raster.width !== layer.width ||
        raster.height !== layer.height ||
        raster.left !== layer.left ||
        raster.top !== layer.top
      ) {
        throw new ProtocolError(
          `layer ${layer.file} arrived as ${raster.width}×${raster.height} at ${raster.left},${raster.top}` +
            ` but the result says ${layer.width}×${layer.height} at ${layer.left},${layer.top}`,
        );
      }
      pixels.set(layer.file, raster);
    }
    let cropped = false;
    const groups = groupLayers(result, pixels, offset, prompt).map((group) => ({
      name: group.name,
      layers: group.layers.flatMap((layer) => {
        const clipped = clipToCanvas(layer, document);
        cropped = cropped || clipped !== layer;
        return clipped ? [clipped] : [];
      }),
    }));
    this.store.update({ job: progress(result.id, "inserting") });
    await this.host.insertGroups(document.id, groups, `Acetate: ${MODE_LABELS[result.mode] ?? result.mode}`);
    const count = groups.reduce((sum, group) => sum + group.layers.length, 0);
    const notes = cropped ? ["The result is larger than the document and was cropped to the canvas."] : [];
    const warnings = [...notes, ...(result.warnings ?? [])].join(" ");
    this.store.update({
      message: {
        kind: "info",
        text: `Added ${count} layer${count === 1 ? "" : "s"} in ${groups.length} group${groups.length === 1 ? "" : "s"}.${warnings ? ` ${warnings}` : ""}`,
      },
    });
  }

  /**
   * Resolve with the job's final event; poll over HTTP when events stop coming.
   * @private
   * @param {string} jobId
   * @returns {Promise<JobEvent>}
   */
  follow(jobId) {
    const client = /** @type {AcetateClient} */ (this.client);
    /** @type {ReturnType<typeof setInterval>|undefined} */
    let timer;
    let polling = false;
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, last: Date.now() };
      this.waiters.set(jobId, waiter);
      this.socket?.subscribe([jobId]);
      timer = setInterval(async () => {
        if (polling || Date.now() - waiter.last < this.eventTimeoutMs) {
          return;
        }
        polling = true;
        try {
          const record = await client.job(jobId);
          waiter.last = Date.now();
          if (record.status === "done" && record.result) {
            resolve({ type: "done", job_id: jobId, result: record.result });
          } else if (record.status === "error") {
            const error = record.error ?? { code: "error", message: "unknown error" };
            resolve({ type: "error", job_id: jobId, code: error.code, message: error.message });
          } else if (record.status === "cancelled") {
            resolve({ type: "cancelled", job_id: jobId });
          }
        } catch (error) {
          reject(error);
        } finally {
          polling = false;
        }
      }, Math.max(50, Math.min(1000, this.eventTimeoutMs / 4)));
    }).finally(() => {
      clearInterval(timer);
      this.waiters.delete(jobId);
    });
  }

  /**
   * @private
   * @param {JobEvent} event
   */
  onEvent(event) {
    if (event.job_id === null) {
      console.warn("Acetate: server reported", event);
      return;
    }
    const waiter = this.waiters.get(event.job_id);
    if (waiter) {
      waiter.last = Date.now();
    }
    const job = this.state.job;
    if (job && job.id === event.job_id) {
      if (event.type === "queued") {
        this.store.update({ job: { ...job, phase: "queued", position: event.position } });
      } else if (event.type === "started") {
        this.store.update({ job: { ...job, phase: "started", position: null } });
      } else if (event.type === "progress") {
        this.store.update({
          job: { ...job, phase: "started", step: event.step, total: event.total, etaS: event.eta_s ?? null },
        });
      } else if (event.type === "preview" && event.image) {
        this.store.update({ job: { ...job, preview: event.image } });
      }
    }
    if (waiter && FINAL_EVENTS.has(event.type)) {
      waiter.resolve(event);
    }
  }

  /**
   * @private
   * @param {string} jobId
   * @param {JobEvent} final
   */
  recordFinal(jobId, final) {
    const entry = this.state.history.find((item) => item.id === jobId);
    if (!entry) {
      return;
    }
    const update = { ...entry, status: final.type };
    if (final.type === "done") {
      update.layers = final.result.layers.length;
      const seed = final.result.parameters?.seed;
      update.seed = typeof seed === "number" ? seed : entry.seed;
    } else if (final.type === "error") {
      update.error = final.message;
    }
    this.store.update({ history: upsertHistory(this.state.history, update) });
  }

  /** @private */
  async requireClient() {
    if (this.client && this.state.connection.status === "connected") {
      return this.client;
    }
    if (!(await this.connect()) || !this.client) {
      throw new InputProblem("serverUrl", this.state.connection.message);
    }
    return this.client;
  }

  /** @private */
  checkCancelled() {
    if (this.cancelRequested) {
      throw new Cancelled();
    }
  }

  /**
   * @private
   * @param {unknown} error
   */
  describe(error) {
    return describeError(error, { serverUrl: this.state.settings.serverUrl, allowed: this.allowed });
  }
}

/**
 * @param {string} id
 * @param {string} phase
 * @returns {import("./state").JobProgress}
 */
function progress(id, phase) {
  return { id, phase, position: null, step: 0, total: 0, etaS: null, preview: null };
}

module.exports = { Controller, SOURCES, prepareInputs, groupLayers, clipToCanvas };
