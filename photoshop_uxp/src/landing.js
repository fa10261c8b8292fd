// @ts-check
/**
 * Landing a result in the document: its layers inserted as they arrive, each in its own
 * history state, stacked as the mode declares them whatever the arrival order.
 */
"use strict";

const { compareRanks, layerDeclaration, layerRank } = require("./modes.js");
const { clipToCanvas } = require("./placement.js");
const { ProtocolError, groupName, layerKey } = require("./protocol.js");

/** @typedef {import("./client").AcetateClient} AcetateClient */
/** @typedef {import("./protocol").ResultRecord} ResultRecord */
/** @typedef {import("./protocol").LayerRecord} LayerRecord */
/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./placement").DocumentInfo} DocumentInfo */
/** @typedef {import("./placement").DocumentPixels} DocumentPixels */
/** @typedef {import("./placement").LayerInsertion} LayerInsertion */
/** @typedef {import("./placement").Placed} Placed */

/**
 * What the controller needs from the editor.
 * @typedef {Object} Host
 * @property {() => DocumentInfo|null} activeDocument
 * @property {(what: {composite?: boolean, layer?: boolean, selection?: boolean, layout?: boolean, layers?: Record<string, number>}) => Promise<DocumentPixels>} readDocument
 *   one short modal scope; `layout`: the active layout group's child layers, and the composite
 *   without that group (the document left unchanged, no history state); `layers`: role → the id
 *   of a layer picked in the panel, read like the active layer into `DocumentPixels.layers`
 * @property {(documentId: number, insertion: LayerInsertion, commandName: string) => Promise<{layerId: number, groupId: number}>} insertLayer
 *   one modal scope, one named history state; nothing left behind on failure
 * @property {(documentId: number, ids: number[], commandName: string, reveal?: number[]) => Promise<number>} removeLayers
 *   the layers or groups that still exist, in one history state (showing `reveal` again);
 *   resolves with how many
 * @property {(bytes: ArrayBuffer, fileName: string) => Promise<boolean>} openPsd
 *   opens it as a new untitled document; false when it stayed the temporary file
 */

/**
 * Inserting one result's layers into a document as they arrive, each in its own history
 * state: one group per batch item (created with that item's first layer, named after the
 * prompt), layers ordered bottom → top as the mode declares them whatever the arrival order.
 * Downloads happen outside modal scopes; insertions run one at a time, in arrival order.
 */
class Landing {
  /**
   * @param {{client: AcetateClient, host: Host, mode: ModeInfo|null, modeName: string,
   *   document: DocumentInfo, offset: {left: number, top: number}, prompt: string, jobId: string,
   *   anchor?: number|null, expected?: string[], titles?: Record<string, string>, hide?: number[],
   *   hideLabel?: string, depth?: 8|16, alphaMask?: boolean}} options
   *   `anchor`: the top-level layer the result's groups go above (remembered before the first
   *   insertion: Photoshop makes every created layer and group active); `expected`: the layer
   *   keys of one batch item, bottom → top (`expectedLayers`: `only_without` layers of sent
   *   inputs left out, so its first is the item's lowest layer); `titles`: key → the name a
   *   layer will have (a scene object's prompt), for saying which were not made; `hide`:
   *   layers hidden with the first insertion (a scene's layout group, the layer a decompose
   *   split); `hideLabel`: what they are, for the message; `depth`: the layers are fetched as
   *   16-bit RGBA (insertion.js); `alphaMask`: inserted opaque with their alpha as a layer mask
   */
  constructor({ client, host, mode, modeName, document, offset, prompt, jobId, anchor = null, expected = [], titles = {}, hide = [], hideLabel = "The layout group", depth = 8, alphaMask = false }) {
    this.depth = depth;
    this.alphaMask = alphaMask;
    this.anchor = anchor;
    this.hideLabel = hideLabel;
    this.expected = expected;
    this.titles = titles;
    /** @type {number[]} still to hide (with the next insertion) */
    this.hide = [...hide];
    /** @type {number[]} hidden by this result (shown again by "Undo whole result") */
    this.hidden = [];
    this.client = client;
    this.host = host;
    this.mode = mode;
    this.modeName = modeName;
    this.document = document;
    this.offset = offset;
    this.prompt = prompt;
    this.jobId = jobId;
    /** @type {Set<string>} layer files already taken */
    this.files = new Set();
    /** @type {Map<number, {id: number, layers: Placed[]}>} batch index → its group */
    this.groups = new Map();
    /** @type {Promise<void>} */
    this.chain = Promise.resolve();
    /** @type {unknown} the first failure; later layers are not inserted */
    this.error = null;
    this.inserted = 0;
    this.cropped = false;
  }

  /** What the message says about the layers this result hid ("" when none). */
  get hiddenNote() {
    if (this.hidden.length === 0) {
      return "";
    }
    return `${this.hideLabel} ${this.hidden.length === 1 ? "is" : "are"} hidden`;
  }

  /** The result's groups in the document, bottom batch item first. */
  get groupIds() {
    return [...this.groups.entries()].sort((a, b) => a[0] - b[0]).map(([, group]) => group.id);
  }

  /**
   * Queue a layer (from `layer_ready`, or the final record); one already taken is ignored.
   * @param {LayerRecord} record
   */
  add(record) {
    if (this.files.has(record.file)) {
      return;
    }
    this.files.add(record.file);
    this.chain = this.chain.then(async () => {
      if (this.error === null) {
        try {
          await this.insert(record);
        } catch (error) {
          this.error = error;
        }
      }
    });
  }

  /**
   * Wait until every queued layer is in (or the first failure, which is thrown).
   */
  async settle() {
    await this.chain;
    if (this.error !== null) {
      throw this.error;
    }
  }

  /**
   * The expected layers of a (partial) result that it does not have, by the name they would
   * have had, e.g. ["a moon", "blended"].
   * @param {ResultRecord} result
   * @returns {string[]}
   */
  missing(result) {
    const batches = Math.max(1, Number(result.parameters?.batch ?? 1) || 1);
    const present = [...new Set(result.layers.map((layer) => layer.batch_index))].sort((a, b) => a - b);
    /** @type {string[]} */
    const out = [];
    // The result sets that started: the ones with layers, and the one after the last of them.
    const started = new Set([...present, present.length > 0 ? present[present.length - 1] + 1 : 0]);
    for (const index of [...started].filter((item) => item < batches).sort((a, b) => a - b)) {
      const have = new Set(result.layers.filter((layer) => layer.batch_index === index).map(layerKey));
      const suffix = batches > 1 ? ` #${index + 1}` : "";
      for (const key of this.expected) {
        if (!have.has(key)) {
          out.push(`${this.titles[key] ?? key}${suffix}`);
        }
      }
    }
    const last = Math.max(...started);
    if (last + 1 < batches) {
      out.push(`result sets #${last + 2}–#${batches}`);
    }
    return out;
  }

  /**
   * Queue every layer of the final record not seen yet, in the mode's order, and wait.
   * @param {ResultRecord} result
   */
  async finish(result) {
    const layers = [...result.layers].sort(
      (a, b) => a.batch_index - b.batch_index || compareRanks(layerRank(this.mode, layerKey(a)), layerRank(this.mode, layerKey(b))),
    );
    layers.forEach((layer) => this.add(layer));
    await this.settle();
  }

  /**
   * @private
   * @param {LayerRecord} record
   */
  async insert(record) {
    const raster = await this.client.layerPixels(this.jobId, record.file, this.depth);
    if (
      raster.width !== record.width ||
      raster.height !== record.height ||
      raster.left !== record.left ||
      raster.top !== record.top
    ) {
      throw new ProtocolError(
        `layer ${record.file} arrived as ${raster.width}×${raster.height} at ${raster.left},${raster.top}` +
          ` but the result says ${record.width}×${record.height} at ${record.left},${record.top}`,
      );
    }
    // Declarations and stacking go by the record's key (`object_0`), the document's layer is
    // named after `name` (the object's prompt).
    const key = layerKey(record);
    const declared = layerDeclaration(this.mode, key);
    const visible = typeof record.visible === "boolean" ? record.visible : (declared?.visible ?? true);
    const layer = clipToCanvas(
      {
        data: raster.data,
        width: raster.width,
        height: raster.height,
        name: record.name,
        visible,
        left: this.offset.left + record.left,
        top: this.offset.top + record.top,
        depth: raster.depth,
        alphaMask: this.alphaMask,
      },
      this.document,
    );
    if (layer === null || layer.width !== raster.width || layer.height !== raster.height) {
      this.cropped = true;
    }
    if (layer === null) {
      return;
    }
    const rank = layerRank(this.mode, key);
    const group = this.groups.get(record.batch_index) ?? null;
    const hide = this.hide;
    const name = groupName(this.prompt, record.batch_index, this.mode?.label ?? this.modeName);
    const placed = await this.host.insertLayer(
      this.document.id,
      {
        layer,
        rank,
        siblings: group ? group.layers : [],
        group: {
          id: group ? group.id : null,
          name,
          rank: [record.batch_index],
          siblings: [...this.groups.entries()].map(([index, other]) => ({ id: other.id, rank: [index] })),
          anchor: this.anchor,
        },
        hide,
      },
      `Acetate: ${record.name} (${name})`,
    );
    if (hide.length > 0) {
      this.hidden.push(...hide);
      this.hide = [];
    }
    const layers = group && group.id === placed.groupId ? group.layers : [];
    layers.push({ id: placed.layerId, rank });
    this.groups.set(record.batch_index, { id: placed.groupId, layers });
    this.inserted += 1;
  }
}

module.exports = { Landing };
