// @ts-check
/**
 * The panel's actions: connect, generate (read the document → submit → follow the events →
 * download → insert), cancel, and the history's insert/open. The document is reached only
 * through a `Host` (src/photoshop.js in Photoshop, a fake in tests), the network only through
 * src/client.js, so this file runs unchanged in UXP and in Node.
 */
"use strict";

const { AcetateClient, normalizeBaseUrl } = require("./client.js");
const { HostProblem, InputProblem } = require("./errors.js");
const { EventSocket } = require("./events.js");
const { JobWatch } = require("./jobs.js");
const { describeError, describeJobError, manifestMessage, urlAllowed } = require("./messages.js");
const { SOURCES, clipToCanvas, groupLayers, prepareInputs } = require("./placement.js");
const { ProtocolError } = require("./protocol.js");
const { MODE_LABELS, buildParameters } = require("./settings.js");
const { mergeJobs, progress, recordFinal, upsertHistory } = require("./state.js");

/** @typedef {import("./protocol").JobEvent} JobEvent */
/** @typedef {import("./protocol").ResultRecord} ResultRecord */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */
/** @typedef {import("./pixels").Raster} Raster */
/** @typedef {import("./placement").DocumentInfo} DocumentInfo */
/** @typedef {import("./placement").DocumentPixels} DocumentPixels */
/** @typedef {import("./placement").NewGroup} NewGroup */
/** @typedef {import("./state").PanelState} PanelState */
/** @typedef {import("./state").Store<PanelState>} PanelStore */
/** @typedef {import("./client").FetchLike} FetchLike */
/** @typedef {import("./events").SocketClass} SocketClass */

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
    /** @type {AcetateClient|null} */
    this.client = null;
    /** @type {EventSocket|null} */
    this.socket = null;
    this.jobs = new JobWatch({ eventTimeoutMs });
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
    if (this.jobs.ids.length > 0) {
      // Reconnected while a job runs: keep following it on the new socket.
      this.socket.subscribe(this.jobs.ids);
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
    const history = mergeJobs(this.state.history, jobs);
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
      this.store.update({ history: recordFinal(this.state.history, jobId, final) });
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
   * Subscribe to a job and resolve with its final event.
   * @private
   * @param {string} jobId
   * @returns {Promise<JobEvent>}
   */
  follow(jobId) {
    const client = /** @type {AcetateClient} */ (this.client);
    const final = this.jobs.follow(jobId, (id) => client.job(id));
    this.socket?.subscribe([jobId]);
    return final;
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
    this.jobs.deliver(event);
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

module.exports = { Controller };
