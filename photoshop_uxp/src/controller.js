// @ts-check
/**
 * The panel's actions: connect, generate (read the document → submit → follow the events →
 * download → insert), cancel, and the history's insert/open. The document is reached only
 * through a `Host` (src/photoshop.js in Photoshop, a fake in tests), the network only through
 * src/client.js, so this file runs unchanged in UXP and in Node.
 */
"use strict";

const { AcetateClient, ServerError, normalizeBaseUrl } = require("./client.js");
const { HostProblem, InputProblem } = require("./errors.js");
const { EventSocket } = require("./events.js");
const { Landing } = require("./landing.js");
const { JobWatch } = require("./jobs.js");
const { TOO_NEW, TOO_OLD, describeError, describeJobError, manifestMessage, urlAllowed } = require("./messages.js");
const { alphaAsMask, depthFields, recordedDepth, resultDepth } = require("./insertion.js");
const { baseModel, requestFiles } = require("./layerfiles.js");
const { droppedNote, requestLoras } = require("./loras.js");
const { activeInputs, expectedLayers, pickMode } = require("./modes.js");
const { checkImageSize, imageLimits, prepareInputs, readNeeds } = require("./placement.js");
const { API_VERSION, ServerTooNew, ServerTooOld } = require("./protocol.js");
const { buildParameters, inputSource, layoutFromGroup, omittedInputs } = require("./settings.js");
const { pickedSources, sourceNeeds, withPickedLayers } = require("./sources.js");
const { CONTROL_IMAGE, controlImage, structureFields, structureLayer } = require("./structure.js");
const { mergeJobs, progress, recordFinal, upsertHistory } = require("./state.js");

/** @typedef {import("./protocol").JobEvent} JobEvent */
/** @typedef {import("./protocol").ResultRecord} ResultRecord */
/** @typedef {import("./protocol").LayerRecord} LayerRecord */
/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */
/** @typedef {import("./pixels").Raster} Raster */
/** @typedef {import("./protocol").ImageInputInfo} ImageInputInfo */
/** @typedef {import("./placement").DocumentInfo} DocumentInfo */
/** @typedef {import("./placement").DocumentPixels} DocumentPixels */
/** @typedef {import("./placement").LayerInsertion} LayerInsertion */
/** @typedef {import("./placement").Placed} Placed */
/** @typedef {import("./state").PanelState} PanelState */
/** @typedef {import("./state").Store<PanelState>} PanelStore */
/** @typedef {import("./client").FetchLike} FetchLike */
/** @typedef {import("./events").SocketClass} SocketClass */

/** @typedef {import("./landing").Host} Host */

class Cancelled extends Error {}

/** Said when an opened PSD could not be turned into an untitled document. */
const SAVE_AS = " It lives in a temporary folder: use File ▸ Save As to keep it.";

class Controller {
  /**
   * @param {{host: Host, store: PanelStore, allowed: string[], fetch: FetchLike,
   *   WebSocket: SocketClass, requestTimeoutMs?: number, eventTimeoutMs?: number, version?: string}} options
   *   `allowed`: the manifest's network entries; `eventTimeoutMs`: after this long without
   *   an event the job is polled over HTTP (a server that does not answer ends the wait);
   *   `version`: the plugin's version (manifest), sent as `X-Acetate-Client: photoshop/<version>`.
   */
  constructor({ host, store, allowed, fetch, WebSocket, requestTimeoutMs = 30_000, eventTimeoutMs = 60_000, version = "0" }) {
    this.host = host;
    this.clientName = `photoshop/${version}`;
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
    /** @type {Landing|null} the result being inserted as its layers arrive */
    this.landing = null;
  }

  get state() {
    return this.store.state;
  }

  /** The chosen mode's declaration (the server's first mode when the choice is unknown). */
  get mode() {
    return pickMode(this.state.modes, this.state.settings.mode);
  }

  /** The family of the chosen model, when the server said. */
  get family() {
    const model = this.state.models.find((item) => item.name === this.state.settings.model);
    return typeof model?.family === "string" ? model.family : null;
  }

  /**
   * Check the server, load its modes and models, and open the event stream. Resolves with
   * whether it worked; the reason of a failure is in the state (`connection.message`).
   * @returns {Promise<boolean>}
   */
  async connect() {
    this.disconnect();
    const { serverUrl, clientId } = this.state.settings;
    const fail = (/** @type {string} */ message, status = /** @type {"error"|"outdated"} */ ("error")) => {
      this.store.update({ connection: { status, message, socket: "closed" } });
      return false;
    };
    let client;
    try {
      client = new AcetateClient({
        baseUrl: normalizeBaseUrl(serverUrl),
        token: this.state.token,
        fetch: this.fetch,
        timeoutMs: this.requestTimeoutMs,
        client: this.clientName,
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
    let modes;
    let models;
    try {
      health = await client.health();
      if (typeof health?.api_version !== "number") {
        throw new ServerTooOld("it does not report an api_version");
      }
      const versions = `it is Acetate ${health.version} with protocol ${health.api_version}; this panel speaks protocol ${API_VERSION}`;
      if (health.api_version > API_VERSION) {
        throw new ServerTooNew(versions);
      }
      if (health.api_version !== API_VERSION) {
        throw new ServerTooOld(versions);
      }
      try {
        modes = await client.modes();
      } catch (error) {
        throw error instanceof ServerError && error.status === 404 ? new ServerTooOld("it has no GET /api/modes") : error;
      }
      models = await client.models();
    } catch (error) {
      if (error instanceof ServerTooOld || error instanceof ServerTooNew) {
        this.store.update({ modes: [] });
        const headline = error instanceof ServerTooNew ? TOO_NEW : TOO_OLD;
        return fail(`${headline} (${error.message}).`, "outdated");
      }
      return fail(this.describe(error));
    }
    this.client = client;
    this.socket = new EventSocket({
      url: () => client.socketUrl(),
      WebSocket: this.WebSocket,
      onEvent: (event) => this.onEvent(event),
      onStatus: (socket) => this.store.update({ connection: { ...this.state.connection, socket } }),
    });
    this.store.update({
      models: Array.isArray(models?.bases) ? models.bases : [],
      layerFiles: Array.isArray(models?.layer_files) ? models.layer_files : [],
      controlnets: Array.isArray(models?.controlnets) ? models.controlnets : [],
      loras: Array.isArray(models?.loras) ? models.loras : [],
      embeddings: Array.isArray(models?.embeddings) ? models.embeddings : [],
      defaultModel: typeof models?.default_base === "string" ? models.default_base : null,
      modes,
      connection: {
        status: "connected",
        message: `Connected to Acetate ${health.version} · protocol ${health.api_version} (${health.device})`,
        version: health.version,
        device: health.device,
        socket: "connecting",
        seen: health.client_seen ?? null,
        limits: imageLimits(health),
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
   * Generate with the current settings and insert the result into the active document, each
   * layer as its `layer_ready` event arrives. Errors end up in `state.message`; resolves when
   * the whole flow has ended.
   */
  async generate() {
    if (this.state.busy) {
      return;
    }
    if (this.state.connection.status === "outdated") {
      this.store.update({ message: { kind: "error", text: this.state.connection.message } });
      return;
    }
    this.cancelRequested = false;
    this.store.update({ busy: true, message: null, job: progress("", "reading") });
    /** @type {string|null} */
    let jobId = null;
    /** @type {Landing|null} */
    let landing = null;
    try {
      const client = await this.requireClient();
      const mode = this.mode;
      if (!mode) {
        throw new HostProblem("The server offers no modes.");
      }
      const params = buildParameters(this.state.settings, mode, this.family);
      const { models, settings, defaultModel, layerFiles } = this.state;
      const base = baseModel(models, settings.model, defaultModel);
      const files = requestFiles(settings, mode, base, layerFiles);
      if (files) params.layer_files = files;
      const { loras, dropped } = requestLoras(settings.values, mode.name, base, this.state.loras);
      if (loras) params.loras = loras;
      // Structure: a layer of the document, read in the frame of the other inputs (structure.js).
      const structure = structureFields(settings.values, mode, this.state.controlnets ?? [], base);
      const structureId = structure.control ? structureLayer(settings.values) : null;
      const document = this.host.activeDocument();
      if (!document) {
        throw new HostProblem("Open a document first: Acetate adds its layers to the active document.");
      }
      // A list placed by regions (a scene's objects) comes from the selected layer group; an
      // optional input the user left out is generated by the server instead (a background).
      const layout = layoutFromGroup(this.state.settings, mode);
      const omitted = omittedInputs(this.state.settings, mode);
      // An input with other sources is read from the one the user picked (decompose: the
      // whole canvas instead of the active layer).
      // A layer picked for the main image or the mask is read instead (sources.js).
      const picked = pickedSources(
        settings.values,
        mode,
        activeInputs(mode, params)
          .filter((input) => !omitted.has(input.field) && input.field !== CONTROL_IMAGE)
          .map((input) => ({ ...input, source: inputSource(this.state.settings, input) })),
      );
      const inputs = picked.inputs;
      const layers = { ...picked.layers, ...(structureId !== null ? { structure: structureId } : {}) };
      const needs = { ...sourceNeeds(readNeeds(inputs), picked.layers), layout: layout !== null, layers };
      // 16- and 32-bit documents get 16-bit results (insertion.js).
      const depth = resultDepth(mode, document.bits);
      Object.assign(params, depthFields(depth));
      // Refused (or warned about) before a single pixel is read: only the region a mode needs
      // is read, always as 8 bits, and never more than the server accepts.
      const limits = this.state.connection.limits ?? imageLimits(null);
      /** @type {string[]} */
      const warnings = dropped.length > 0 ? [droppedNote(dropped)] : [];
      if (needs.composite) {
        const warning = checkImageSize("The document", document, limits);
        if (warning) warnings.push(warning);
      }
      if (needs.layer && document.activeLayer?.rect) {
        const warning = checkImageSize("The active layer", document.activeLayer.rect, limits);
        if (warning) warnings.push(warning);
      }
      if (warnings.length > 0) {
        this.store.update({ message: { kind: "info", text: warnings.join(" ") } });
      }
      let frame = { left: 0, top: 0, width: document.width, height: document.height };
      /** @type {Record<string, Raster>} */
      let images = {};
      /** @type {Record<string, "rgba"|"mask">} */
      let kinds = {};
      /** @type {Partial<GenerateParameters>} */
      let extra = {};
      /** @type {number[]} */
      let hide = [];
      let hideLabel = "The layout group";
      let anchor = this.anchorFor(document);
      if (needs.composite || needs.layer || needs.selection || needs.layout || Object.keys(layers).length > 0) {
        const pixels = withPickedLayers(await this.host.readDocument(needs), picked.layers);
        ({ images, kinds, frame, extra } = prepareInputs(mode, inputs, pixels));
        if (layout && pixels.layout) {
          fillFromLayout(layout, pixels.layout, frame, params, images, kinds);
          hide = [pixels.layout.group.id];
        }
        if (structureId !== null) {
          images[CONTROL_IMAGE] = controlImage(pixels.layers?.structure, frame);
          kinds[CONTROL_IMAGE] = "rgba";
          Object.assign(params, structure);
        }
      }
      const replaced = replacedLayers(inputs, images, document);
      if (replaced && hide.length === 0) {
        ({ hide, label: hideLabel } = replaced);
        anchor = replaced.anchor ?? anchor;
      }
      if (mode.frame && omitted.has(mode.frame)) {
        generatedSize(mode, document, params);
      }
      this.checkCancelled();
      this.store.update({ job: progress("", "uploading") });
      const created = await client.submit({ ...params, ...extra }, images, kinds);
      jobId = created.id;
      const offset = { left: frame.left, top: frame.top };
      if (!mode.frame_scale) {
        // A scaled frame (upscale) does not fit the document: it opens as a new one instead.
        landing = new Landing({
          client,
          host: this.host,
          mode,
          modeName: mode.name,
          document,
          offset,
          prompt: params.prompt,
          jobId,
          anchor,
          expected: expectedLayers(mode, listCounts(mode, params), Object.keys(images)),
          titles: layerTitles(mode, params),
          hide,
          hideLabel,
          depth,
          alphaMask: alphaAsMask(settings.values),
        });
        this.landing = landing;
      }
      this.store.update({
        job: { ...progress(jobId, "queued"), position: created.position },
        history: upsertHistory(this.state.history, {
          id: jobId,
          mode: mode.name,
          prompt: params.prompt,
          status: "queued",
          created: Date.now(),
          offset,
          seed: params.seed ?? null,
        }),
      });
      if (this.cancelRequested) {
        await client.cancel(jobId);
      }
      const final = await this.follow(jobId);
      this.store.update({ history: recordFinal(this.state.history, jobId, final) });
      if (final.type === "done") {
        if (this.cancelRequested) {
          warnings.push("The job finished before the cancel reached the server.");
        }
        if (landing) {
          this.store.update({ job: progress(jobId, "inserting") });
          await landing.finish(final.result);
          this.reportLanded(landing, final.result, warnings);
        } else {
          await this.openAsDocument(final.result, mode);
        }
        return;
      }
      // A job that stopped after finishing some layers keeps them (docs/protocol.md, Partial
      // results): the ones not inserted yet go in too, and the message says what happened.
      const partial = final.type === "error" || final.type === "cancelled" ? (final.result ?? null) : null;
      if (landing && partial) {
        this.store.update({ job: progress(jobId, "inserting") });
        await landing.finish(partial);
      } else {
        await landing?.settle();
      }
      const kept = landing && landing.inserted > 0 ? this.describeKept(landing, partial) : "";
      if (final.type === "cancelled") {
        if (!kept) {
          throw new Cancelled();
        }
        this.store.update({ message: { kind: "info", text: `Cancelled. ${kept}` } });
      }
      if (final.type === "error") {
        const text = describeJobError(final.code, final.message);
        this.store.update({ message: { kind: "error", text: kept ? `${text} ${kept}` : text } });
      }
    } catch (error) {
      if (error instanceof Cancelled) {
        this.store.update({ message: { kind: "info", text: "Cancelled." } });
      } else {
        this.store.update({ message: { kind: "error", text: this.describe(error) } });
      }
    } finally {
      if (landing) {
        await landing.chain;
        if (landing.groups.size > 0) {
          this.store.update({
            landed: { id: landing.jobId, documentId: landing.document.id, groupIds: landing.groupIds, hidden: landing.hidden },
          });
        }
      }
      if (this.landing === landing) {
        this.landing = null;
      }
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
   * Remove every group of the last inserted result, in one history state.
   */
  async undoResult() {
    const landed = this.state.landed;
    if (this.state.busy || !landed) {
      return;
    }
    this.store.update({ busy: true, message: null });
    try {
      const removed = await this.host.removeLayers(landed.documentId, landed.groupIds, "Acetate: remove result", landed.hidden ?? []);
      this.store.update({
        landed: null,
        message: { kind: "info", text: removed > 0 ? `Removed the result (${removed} group${removed === 1 ? "" : "s"}).` : "The result's groups are already gone." },
      });
    } catch (error) {
      this.store.update({ message: { kind: "error", text: this.describe(error) } });
    } finally {
      this.store.update({ busy: false });
    }
  }

  /**
   * Insert a finished job from the history into the active document again.
   * @param {string} jobId
   */
  async insertFromHistory(jobId) {
    await this.runHistoryAction(async (client) => {
      const record = await client.job(jobId);
      // A partial result (a job that failed or was cancelled after finishing some layers)
      // can be inserted too.
      if (!record.result || record.result.layers.length === 0) {
        throw new HostProblem(`This job has no result to insert (it is ${record.status}).`);
      }
      const result = record.result;
      const mode = this.state.modes.find((item) => item.name === result.mode) ?? null;
      if (mode?.frame_scale) {
        await this.openAsDocument(result, mode);
        return;
      }
      const document = this.host.activeDocument();
      if (!document) {
        throw new HostProblem("Open a document first: Acetate adds its layers to the active document.");
      }
      const entry = this.state.history.find((item) => item.id === jobId);
      const prompt = typeof result.parameters?.prompt === "string" ? result.parameters.prompt : (entry?.prompt ?? "");
      const landing = new Landing({
        client,
        host: this.host,
        mode,
        modeName: result.mode,
        document,
        offset: entry?.offset ?? { left: 0, top: 0 },
        prompt,
        jobId,
        anchor: this.anchorFor(document),
        depth: recordedDepth(result.parameters, document.bits),
        alphaMask: alphaAsMask(this.state.settings.values),
      });
      this.store.update({ job: progress(jobId, "inserting") });
      try {
        await landing.finish(result);
      } finally {
        if (landing.groups.size > 0) {
          this.store.update({ landed: { id: jobId, documentId: document.id, groupIds: landing.groupIds } });
        }
      }
      this.reportLanded(landing, result);
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
      const untitled = await this.host.openPsd(bytes, `acetate-${jobId}.psd`);
      this.store.update({ message: { kind: "info", text: `Opened the layered PSD as a new document.${untitled ? "" : SAVE_AS}` } });
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
   * A result whose frame is scaled (upscale) opens as a new document: its layered PSD.
   * @private
   * @param {ResultRecord} result
   * @param {ModeInfo|null} mode
   */
  async openAsDocument(result, mode) {
    const client = /** @type {AcetateClient} */ (this.client);
    this.store.update({ job: progress(result.id, "downloading") });
    const untitled = await this.host.openPsd(await client.psd(result.id), `acetate-${result.id}.psd`);
    this.store.update({ message: { kind: "info", text: `${mode?.label ?? result.mode}: the result opened as a new document.${untitled ? "" : SAVE_AS}` } });
  }

  /**
   * @private
   * @param {Landing} landing
   * @param {ResultRecord} result
   * @param {string[]} [before] said before the job ran (e.g. a large document)
   */
  reportLanded(landing, result, before = []) {
    const count = landing.inserted;
    const groups = landing.groups.size;
    const notes = [
      ...before,
      ...(landing.cropped ? ["The result is larger than the document and was cropped to the canvas."] : []),
      ...(landing.hidden.length > 0 ? [`${landing.hiddenNote} (Undo whole result shows ${landing.hidden.length === 1 ? "it" : "them"} again).`] : []),
    ];
    const warnings = [...notes, ...(result.warnings ?? [])].join(" ");
    this.store.update({
      message: {
        kind: "info",
        text: `Added ${count} layer${count === 1 ? "" : "s"} in ${groups} group${groups === 1 ? "" : "s"}.${warnings ? ` ${warnings}` : ""}`,
      },
    });
  }

  /**
   * What a stopped job left in the document: "Kept the 3 layers finished before it stopped
   * (not made: a moon, blended)."
   * @private
   * @param {Landing} landing
   * @param {ResultRecord|null} partial
   */
  describeKept(landing, partial) {
    const count = landing.inserted;
    const missing = partial ? landing.missing(partial) : [];
    const hidden = landing.hidden.length > 0 ? ` ${landing.hiddenNote}.` : "";
    return (
      `Kept the ${count} layer${count === 1 ? "" : "s"} finished before it stopped` +
      `${missing.length > 0 ? ` (not made: ${missing.join(", ")})` : ""}.${hidden}`
    );
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
    // Also after a cancel: a finished layer is kept (docs/protocol.md, Partial results).
    if (event.type === "layer_ready" && this.landing?.jobId === event.job_id) {
      this.landing.add(event.layer);
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

  /**
   * The top-level layer a new result goes above: the one holding the active layer, or — when
   * that is a group of the last result (Photoshop leaves the last created layer active) — the
   * top group of that result, so that results stack as a flat list of groups, newest on top.
   * @private
   * @param {DocumentInfo} document
   * @returns {number|null}
   */
  anchorFor(document) {
    const top = document.activeLayer?.topId ?? null;
    const landed = this.state.landed;
    if (top !== null && landed && landed.documentId === document.id && landed.groupIds.includes(top)) {
      return landed.groupIds[landed.groupIds.length - 1];
    }
    return top;
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
    /** @type {Record<string, string>} */
    const labels = {};
    const mode = this.mode;
    if (mode) {
      mode.options.forEach((option) => (labels[option.name] = option.label));
      mode.inputs.forEach((input) => (labels[input.field] = input.label));
      mode.lists.forEach((list) => (labels[list.field] = list.label));
    }
    return describeError(error, { serverUrl: this.state.settings.serverUrl, allowed: this.allowed, labels });
  }
}

/**
 * What a result replaces: for a `replaced` input that was sent, the active layer it was read
 * from, or every visible top-level layer when it was the canvas. They are hidden with the
 * result's first layer (never deleted); the result goes above the topmost of them (`anchor`;
 * null: above the active layer's top-level layer, as usual).
 * @param {ImageInputInfo[]} inputs the inputs sent, each with the source it was read from
 * @param {Record<string, Raster>} images
 * @param {DocumentInfo} document
 * @returns {{hide: number[], label: string, anchor: number|null}|null}
 */
function replacedLayers(inputs, images, document) {
  const input = inputs.find((item) => item.replaced && item.field in images);
  if (!input) {
    return null;
  }
  if (input.source === "layer" && document.activeLayer) {
    return { hide: [document.activeLayer.id], label: "The source layer", anchor: null };
  }
  if (input.source === "canvas") {
    const ids = document.visibleTopIds ?? [];
    return { hide: ids, label: ids.length === 1 ? "The source layer" : "The source layers", anchor: ids[0] ?? null };
  }
  return null;
}

/**
 * Fill a region list (a scene's `objects`) from the layout group's child layers, bottom →
 * top: the layer's name is the item's title (its prompt), its painted pixels the region — a
 * mask cropped to its bounds, sent as the raw part `<list>.<i>.mask` — placed in the frame.
 * @param {{list: import("./protocol").ListInputInfo, region: string, title: string|null}} layout
 * @param {NonNullable<DocumentPixels["layout"]>} group
 * @param {import("./protocol").Rect} frame
 * @param {GenerateParameters} params
 * @param {Record<string, Raster>} images
 * @param {Record<string, "rgba"|"mask">} kinds
 */
function fillFromLayout(layout, group, frame, params, images, kinds) {
  const { list } = layout;
  if (group.items.length < list.min_items || group.items.length > list.max_items) {
    throw new HostProblem(
      `The group "${group.group.name}" has ${group.items.length} visible layer${group.items.length === 1 ? "" : "s"}; ` +
        `${list.label} takes ${list.min_items} to ${list.max_items} (one layer per object).`,
    );
  }
  params[list.field] = group.items.map((item, index) => {
    const key = `${list.field}.${index}.mask`;
    images[key] = { data: item.data, width: item.width, height: item.height };
    kinds[key] = "mask";
    /** @type {Record<string, any>} */
    const entry = { [layout.region]: { left: item.rect.left - frame.left, top: item.rect.top - frame.top } };
    if (layout.title) {
      entry[layout.title] = item.name;
    }
    return entry;
  });
}

/**
 * A mode whose frame input was left out generates at `width`×`height`: unless typed, the
 * document's size, so that the result (and regions in document pixels) fit the document.
 * @param {ModeInfo} mode
 * @param {DocumentInfo} document
 * @param {GenerateParameters} params
 */
function generatedSize(mode, document, params) {
  for (const [side, value] of /** @type {const} */ ([["width", document.width], ["height", document.height]])) {
    const option = mode.options.find((item) => item.name === side);
    if (!option || params[side] !== undefined) {
      continue;
    }
    const step = option.multiple_of ?? 1;
    const low = option.minimum ?? 1;
    const high = option.maximum ?? Infinity;
    if (value % step !== 0 || value < low || value > high) {
      throw new HostProblem(
        `Generating without the canvas makes a ${option.label.toLowerCase()} of ${low}–${high} px in steps of ${step}, ` +
          `but the document is ${document.width}×${document.height} px: resize the canvas (Image ▸ Canvas Size), ` +
          `type ${option.label}, or use the visible canvas.`,
      );
    }
    params[side] = value;
  }
}

/**
 * How many items each counted layer repeats for: a list field's length or an option's value.
 * @param {ModeInfo} mode
 * @param {GenerateParameters} params
 * @returns {Record<string, number>}
 */
function listCounts(mode, params) {
  /** @type {Record<string, number>} */
  const counts = {};
  for (const layer of mode.layers) {
    const field = layer.count_from;
    if (field) {
      const value = params[field];
      counts[field] = Array.isArray(value) ? value.length : Number(value ?? 0) || 0;
    }
  }
  return counts;
}

/**
 * The names counted layers will have when their declaration titles them from a list item
 * field (`object_2` → "a moon"), as the server makes them (first 60 characters).
 * @param {ModeInfo} mode
 * @param {GenerateParameters} params
 * @returns {Record<string, string>}
 */
function layerTitles(mode, params) {
  /** @type {Record<string, string>} */
  const titles = {};
  for (const layer of mode.layers) {
    const items = layer.count_from ? params[layer.count_from] : null;
    if (!layer.title_from || !Array.isArray(items)) {
      continue;
    }
    items.forEach((item, index) => {
      const text = Array.from(String(item?.[/** @type {string} */ (layer.title_from)] ?? "").trim()).slice(0, 60).join("").trim();
      if (text) {
        titles[layer.name.replace("{i}", String(index))] = text;
      }
    });
  }
  return titles;
}

module.exports = { Controller, fillFromLayout, generatedSize, listCounts, layerTitles };
