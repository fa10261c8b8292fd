// @ts-check
/**
 * A fake `photoshop` module for tests: in-memory documents whose layers hold typed-array
 * pixels in the document's bit depth, the Imaging API on real buffers, `executeAsModal` with
 * history suspension, and Photoshop's rules made strict. Each behaviour names the page it
 * follows: AdobeDocs/uxp-photoshop (snapshot 6edd63f) `ps-reference/…` pages, Adobe's imaging
 * sample, or sd-ppp; what no page states is marked "undocumented" and listed in the README's
 * smoke checklist instead of being trusted.
 * - every write (layer creation, renaming, visibility, deletion, putPixels, open) throws
 *   outside `executeAsModal` (media/executeasmodal.md: "All pixel writes … must run inside");
 * - another plugin's modal scope: error `number` 9, "Plugin: … is running a modal command",
 *   after waiting up to `timeOut` ms (default 1 s; executeasmodal.md, 25.10+); before 25.10
 *   "host is in a modal state" at once (`busyModal`); nested scopes are allowed;
 * - a cancelled scope: `isCancelled`, and every further Photoshop call throws until the scope
 *   returns (executeasmodal.md "User cancellation", "Automatic document closing");
 * - history suspensions left open are resumed when the scope ends: committed when it returns,
 *   rolled back when it throws (executeasmodal.md, resumeHistory notes);
 * - putPixels and putLayerMask want image data in the document's bit depth (16-bit: 0..32768;
 *   32-bit: linear light, media/imaging.md "Value range"); masks are coverage (a 16-bit mask
 *   runs 0..32768, a 32-bit one 0..1), stored and returned in the document's depth;
 * - image data must be disposed, and cannot be used after it was.
 * Every call is recorded in `world.calls` with whether it ran inside a modal scope.
 */
"use strict";

const fs = require("node:fs");

const { ARRAY_OF_BITS, MAX, composite, crop, fromByte, fromBytes8Array, intersectBounds, isInside, maskRect, maskedBytes, toBytes } = require("./raster.js");

const SRGB = "sRGB IEC61966-2.1";

/** @typedef {{left: number, top: number, right: number, bottom: number}} Bounds */

function createFakePhotoshop() {
  let nextId = 1;
  /** @type {FakeDocument[]} */
  const documents = [];
  const world = {
    /** @type {{api: string, args: any, inModal: boolean}[]} */
    calls: [],
    /** @type {string[]} */
    modalCommands: [],
    inModal: false,
    /** @type {Set<ImageData>} */
    liveImageData: new Set(),
    /** @type {FakeDocument|null} */
    active: null,
    /** api → the call number (1-based) that throws */
    failures: /** @type {Record<string, number>} */ ({}),
    /** How many executeAsModal calls fail with "host is in a modal state" first (before 25.10). */
    busyModal: 0,
    /** Another plugin holding the modal state until `until` (Date.now() ms), 25.10+ behaviour. */
    otherModal: /** @type {{plugin: string, until: number}|null} */ (null),
    /** `timeOut` of every executeAsModal call, in order. */
    timeOuts: /** @type {(number|undefined)[]} */ ([]),
    /** The user cancels the modal scope at this call (api name, 1-based count from now). */
    cancelAt: /** @type {{api: string, n: number}|null} */ (null),
    /** Set while a cancelled scope is still running. */
    cancelled: false,
    /** History suspensions Photoshop resumed itself when a scope ended (commit or rollback). */
    autoResumed: /** @type {{name: string, commit: boolean}[]} */ ([]),
    /** @type {string[]} */
    opened: [],
    /** @type {any} the running modal scope's execution context */
    context: null,
    documents,
    /**
     * @param {{width: number, height: number, bits?: 8|16|32, name?: string, mode?: string}} options
     */
    addDocument({ width, height, bits = 8, name = "Untitled", mode = "RGBColorMode" }) {
      const doc = new FakeDocument(nextId++, name, width, height, bits, mode);
      documents.push(doc);
      world.active = doc;
      return doc;
    },
    /**
     * Fail the n-th call of an API from now on (1 = the next).
     * @param {string} api
     * @param {number} [n]
     */
    failOn(api, n = 1) {
      const done = world.calls.filter((call) => call.api === api).length;
      world.failures[api] = done + n;
    },
    /**
     * The user presses Cancel on the progress bar when the n-th call of `api` from now runs.
     * @param {string} api @param {number} [n]
     */
    cancelOn(api, n = 1) {
      world.cancelAt = { api, n: world.calls.filter((call) => call.api === api).length + n };
    },
    /** @param {string} api */
    callsOf(api) {
      return world.calls.filter((call) => call.api === api);
    },
  };

  /**
   * @param {string} api
   * @param {any} args
   * @param {{write?: boolean}} [options]
   */
  function record(api, args, { write = false } = {}) {
    world.calls.push({ api, args, inModal: world.inModal });
    const count = world.callsOf(api).length;
    if (world.cancelled && !api.startsWith("ImageData.")) {
      // executeasmodal.md: "When the user cancels a modal scope, then JavaScript cannot make any
      // further document changes until it returns from the modal scope."
      throw new Error(`${api}: the modal scope was cancelled`);
    }
    if (world.inModal && world.cancelAt && world.cancelAt.api === api && world.cancelAt.n === count) {
      world.cancelAt = null;
      world.cancelled = true;
      throw new Error("User cancelled the operation");
    }
    if (world.failures[api] === count) {
      throw new Error(`${api} failed (injected)`);
    }
    if (write && !world.inModal) {
      throw new Error(`${api}: this API can only be called in a modal scope (executeAsModal)`);
    }
  }

  /**
   * Layer kinds (modules/constants.md LayerKind, values from @types/photoshop): "pixel" and
   * "group"; content layers the fake renders like pixels but getPixels refuses ("text",
   * "smartObject", "solidColor", "gradientFill", "pattern"); adjustment layers (any other
   * kind, e.g. "curves") have no pixels.
   */
  const CONTENT_KINDS = ["text", "smartObject", "solidColor", "gradientFill", "pattern"];

  class FakeLayer {
    /**
     * @param {FakeDocument} doc
     * @param {string} name
     * @param {string} kind
     */
    constructor(doc, name, kind) {
      this.id = nextId++;
      this._doc = doc;
      this._name = name;
      this._visible = true;
      this.kind = kind;
      /** @type {FakeLayer|null} */
      this.parent = null;
      /**
       * classes/layer.md `layers`: "The layers of this group layer" (null for other kinds);
       * top first, as Document.layers and the Layers panel list them (classes/layers.md does
       * not state the order: README smoke checklist).
       * @type {FakeLayer[]|null}
       */
      this.layers = kind === "group" ? [] : null;
      /** @type {Uint8Array|Uint16Array|Float32Array|null} canvas-sized RGBA in the doc's depth */
      this.pixels = kind === "pixel" || CONTENT_KINDS.includes(kind) ? new ARRAY_OF_BITS[doc.bits](doc.width * doc.height * 4) : null;
      /**
       * canvas-sized user (pixel) mask in the document's depth (MAX[bits] = shown)
       * @type {Uint8Array|Uint16Array|Float32Array|null}
       */
      this.userMask = null;
      /** @type {Uint8Array|null} canvas-sized vector mask, rendered */
      this.vectorMask = null;
      /** Layer.isBackgroundLayer (classes/layer.md) */
      this.isBackgroundLayer = false;
      /** Layer.isClippingMask (classes/layer.md) */
      this.isClippingMask = false;
      this._deleted = false;
    }
    get typename() {
      return "Layer";
    }
    get document() {
      return this._doc;
    }
    get name() {
      return this._name;
    }
    set name(value) {
      record("Layer.name", { id: this.id, value }, { write: true });
      this._name = value;
    }
    get visible() {
      return this._visible;
    }
    /**
     * classes/layer.md `visible`: "Read-write | True when the layer is visible." Whether a
     * visibility change is a History state depends on Photoshop's History Options ("Make Layer
     * Visibility Changes Undoable"), which preferences/preferenceshistory.md does not expose:
     * the fake takes the strict case, a state of its own unless a history suspension is open
     * (objects/options/executioncontext.md), so a read that hides a group must roll it back.
     */
    set visible(value) {
      record("Layer.visible", { id: this.id, value }, { write: true });
      if (this._deleted) throw new Error("visible: the layer is gone");
      if (this._visible === Boolean(value)) return;
      this._doc.change(value ? "Show Layer" : "Hide Layer", () => {
        this._visible = Boolean(value);
      });
    }
    /** Bounds of the non-transparent pixels (a group: of its members), like Photoshop's. */
    get bounds() {
      const rect = this._doc.contentRect(this);
      return rect ?? { left: 0, top: 0, right: 0, bottom: 0, width: 0, height: 0 };
    }
    /**
     * Move next to another layer (placeBefore: above it, placeAfter: below it) or into a
     * group (placeInside: at its top), as Photoshop's Layer.move does.
     * @param {FakeLayer} relative
     * @param {string} placement
     */
    move(relative, placement) {
      record("Layer.move", { id: this.id, relative: relative?.id, placement }, { write: true });
      if (!relative || relative._deleted || this._deleted) throw new Error("move: the layer is gone");
      if (relative === this || isInside(relative, this)) throw new Error("move: cannot move a layer into itself");
      if (placement === "placeInside" && relative.kind !== "group") throw new Error("move: placeInside needs a group");
      if (!["placeBefore", "placeAfter", "placeInside"].includes(placement)) throw new Error(`fake: move ${placement} is not faked`);
      this._doc.change("Move", () => {
        const active = this._doc._active;
        this._doc.remove(this);
        this._doc._active = active;
        if (placement === "placeInside") {
          /** @type {FakeLayer[]} */ (relative.layers).unshift(this);
          this.parent = relative;
          return;
        }
        const siblings = this._doc.siblingsOf(relative);
        const index = siblings.indexOf(relative);
        siblings.splice(placement === "placeBefore" ? index : index + 1, 0, this);
        this.parent = relative.parent;
      });
    }
    /**
     * classes/layer.md duplicate: "creating a copy above it in layer stack, and returns the
     * newly created layer". That the copy becomes the active layer is undocumented (it is what
     * Layer ▸ Duplicate does in the UI; README smoke checklist).
     * @param {any} [relativeObject] @param {string} [placement] @param {string} [name]
     */
    async duplicate(relativeObject, placement, name) {
      record("Layer.duplicate", { id: this.id, relativeObject: relativeObject?.id, placement, name }, { write: true });
      if (relativeObject !== undefined) throw new Error("fake: duplicate elsewhere is not faked");
      const doc = this._doc;
      /** @param {FakeLayer} layer @returns {FakeLayer} */
      const copy = (layer) => {
        const twin = new FakeLayer(doc, layer._name, layer.kind);
        twin._visible = layer._visible;
        twin.pixels = layer.pixels ? layer.pixels.slice() : null;
        twin.userMask = layer.userMask ? layer.userMask.slice() : null;
        twin.vectorMask = layer.vectorMask ? layer.vectorMask.slice() : null;
        twin.isClippingMask = layer.isClippingMask;
        if (layer.layers) {
          twin.layers = layer.layers.map(copy);
          twin.layers.forEach((child) => (child.parent = twin));
        }
        return twin;
      };
      const twin = copy(this);
      twin._name = name ?? `${this._name} copy`;
      doc.change("Duplicate Layer", () => {
        const siblings = doc.siblingsOf(this);
        siblings.splice(siblings.indexOf(this), 0, twin);
        twin.parent = this.parent;
        doc._active = twin;
      });
      return twin;
    }
    /**
     * classes/layer.md merge: "operates on the currently selected layers … If one layer is
     * selected, it is merged down with the layer beneath … The merged layer will now be the
     * active layer." A selected group merges into one pixel layer (Layer ▸ Merge Group).
     */
    async merge() {
      record("Layer.merge", { id: this.id }, { write: true });
      const doc = this._doc;
      const active = doc._active;
      if (!active) throw new Error("merge: no layer is selected");
      /** @type {FakeLayer} */
      let merged;
      if (active.kind === "group") {
        merged = new FakeLayer(doc, active._name, "pixel");
        const flat = composite({ width: doc.width, height: doc.height, bits: doc.bits, layers: [active] });
        merged.pixels = fromBytes8Array(flat, doc.bits);
        doc.change("Merge Group", () => {
          const siblings = doc.siblingsOf(active);
          siblings.splice(siblings.indexOf(active), 1, merged);
          merged.parent = active.parent;
          active._deleted = true;
          doc._active = merged;
        });
        return merged;
      }
      const siblings = doc.siblingsOf(active);
      const below = siblings[siblings.indexOf(active) + 1];
      if (!below || below.kind !== "pixel") throw new Error("merge: the layer below must be a pixel layer");
      doc.change("Merge Down", () => {
        const top = maskedBytes(active, doc);
        const bottom = toBytes(/** @type {any} */ (below.pixels), doc.bits);
        const flat = composite({ width: doc.width, height: doc.height, bits: doc.bits, layers: [
          { kind: "pixel", visible: true, pixels: fromBytes8Array(top, doc.bits) },
          { kind: "pixel", visible: true, pixels: fromBytes8Array(bottom, doc.bits) },
        ] });
        below.pixels = fromBytes8Array(flat, doc.bits);
        siblings.splice(siblings.indexOf(active), 1);
        active._deleted = true;
        doc._active = below;
      });
      return below;
    }
    /**
     * classes/layer.md rasterize(RasterizeType): the layer becomes a pixel layer; ENTIRELAYER
     * also bakes the vector mask into the pixels; the user mask stays.
     * @param {string} target
     */
    async rasterize(target) {
      record("Layer.rasterize", { id: this.id, target }, { write: true });
      if (!CONTENT_KINDS.includes(this.kind)) throw new Error(`rasterize: a ${this.kind} layer has nothing to rasterize`);
      if (target !== "entire") throw new Error(`fake: rasterize ${target} is not faked`);
      this._doc.change("Rasterize Layer", () => {
        if (this.vectorMask) {
          const bytes = toBytes(/** @type {any} */ (this.pixels), this._doc.bits);
          for (let p = 0; p < this.vectorMask.length; p++) bytes[p * 4 + 3] = Math.round((bytes[p * 4 + 3] * this.vectorMask[p]) / 255);
          this.pixels = fromBytes8Array(bytes, this._doc.bits);
          this.vectorMask = null;
        }
        this.kind = "pixel";
      });
    }
    delete() {
      record("Layer.delete", { id: this.id }, { write: true });
      if (this._deleted) {
        throw new Error(`layer ${this.id} was already deleted`);
      }
      this._doc.remove(this);
      const mark = (/** @type {FakeLayer} */ layer) => {
        layer._deleted = true;
        (layer.layers ?? []).forEach(mark);
      };
      mark(this);
    }
  }

  class FakeDocument {
    /**
     * @param {number} id
     * @param {string} name
     * @param {number} width
     * @param {number} height
     * @param {8|16|32} bits
     * @param {string} mode
     */
    constructor(id, name, width, height, bits, mode) {
      this.id = id;
      this.name = name;
      this.width = width;
      this.height = height;
      this.bits = bits;
      this.mode = mode;
      this.colorProfileName = SRGB;
      /** classes/document.md `path`: the file it was opened from ("" for a new document) */
      this.path = "";
      /** @type {FakeLayer[]} top first */
      this.layers = [];
      /** @type {FakeLayer|null} */
      this._active = null;
      /** @type {Uint8Array|null} canvas-sized selection mask */
      this.selectionMask = null;
      /** @type {{name: string, before: any}[]} */
      this.history = [];
      /** @type {Map<number, any>} open history suspensions */
      this.suspensions = new Map();
      const doc = this;
      this.selection = {
        get bounds() {
          const mask = doc.selectionMask;
          if (!mask) {
            return null;
          }
          return maskRect(mask, doc.width, doc.height);
        },
        get solid() {
          return doc.selectionMask !== null && doc.selectionMask.every((v) => v === 0 || v === 255);
        },
      };
    }
    get bitsPerChannel() {
      return `bitDepth${this.bits}`;
    }
    get activeLayers() {
      return this._active ? [this._active] : [];
    }

    // ---- test helpers (not Photoshop API) ----

    /**
     * Add a layer from 8-bit RGBA at a canvas position (outside any modal scope), on top (or
     * at the top of `parent`). `kind`: "pixel" (default), a content kind ("text", …) or an
     * adjustment kind; `background`: the Background layer (opaque, at the bottom).
     * @param {string} name
     * @param {{data: Uint8Array, width: number, height: number, left?: number, top?: number}} image
     * @param {{kind?: string, background?: boolean, userMask?: Uint8Array, vectorMask?: Uint8Array, clipped?: boolean, parent?: FakeLayer}} [options]
     *   `userMask`: canvas-sized, 8-bit (255 = shown), stored in the document's depth
     */
    addPixelLayer(name, { data, width, height, left = 0, top = 0 }, options = {}) {
      const layer = new FakeLayer(this, name, options.kind ?? "pixel");
      const pixels = /** @type {any} */ (layer.pixels);
      if (pixels) {
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            for (let c = 0; c < 4; c++) {
              const v = options.background && c === 3 ? 255 : data[(y * width + x) * 4 + c];
              pixels[((top + y) * this.width + left + x) * 4 + c] = fromByte(v, this.bits, c === 3);
            }
          }
        }
      }
      layer.userMask = options.userMask ? ARRAY_OF_BITS[this.bits].from(options.userMask, (v) => fromByte(v, this.bits, true)) : null;
      layer.vectorMask = options.vectorMask ?? null;
      layer.isBackgroundLayer = Boolean(options.background);
      layer.isClippingMask = Boolean(options.clipped);
      if (options.background) {
        this.layers.push(layer);
      } else if (options.parent) {
        /** @type {FakeLayer[]} */ (options.parent.layers).unshift(layer);
        layer.parent = options.parent;
      } else {
        this.layers.unshift(layer);
      }
      this._active = layer;
      return layer;
    }
    /**
     * Add an empty group on top (test helper).
     * @param {string} name
     */
    addGroup(name) {
      const group = new FakeLayer(this, name, "group");
      this.layers.unshift(group);
      this._active = group;
      return group;
    }
    /** @param {FakeLayer|null} layer */
    setActive(layer) {
      this._active = layer;
    }
    /**
     * Select with a canvas-sized mask, or a rectangle (fully selected inside).
     * @param {Uint8Array|{left: number, top: number, width: number, height: number}|null} selection
     */
    select(selection) {
      if (selection === null || selection instanceof Uint8Array) {
        this.selectionMask = selection;
        return;
      }
      const mask = new Uint8Array(this.width * this.height);
      for (let y = selection.top; y < selection.top + selection.height; y++) {
        mask.fill(255, y * this.width + selection.left, y * this.width + selection.left + selection.width);
      }
      this.selectionMask = mask;
    }
    /** Undo the last history state. */
    undo() {
      const state = this.history.pop();
      if (!state) {
        throw new Error("nothing to undo");
      }
      this.restore(state.before);
    }
    /** The layer tree as plain data: [{name, kind, visible, layers?}] top first. */
    tree() {
      /** @param {FakeLayer} layer @returns {any} */
      const describe = (layer) => ({
        name: layer.name,
        kind: layer.kind,
        visible: layer.visible,
        ...(layer.layers ? { layers: layer.layers.map(describe) } : {}),
      });
      return this.layers.map(describe);
    }
    /** Every layer, depth first, top first. */
    allLayers() {
      /** @type {FakeLayer[]} */
      const out = [];
      const walk = (/** @type {FakeLayer[]} */ list) =>
        list.forEach((layer) => {
          out.push(layer);
          walk(layer.layers ?? []);
        });
      walk(this.layers);
      return out;
    }

    // ---- internals ----

    /** @param {FakeLayer} layer */
    siblingsOf(layer) {
      return layer.parent ? /** @type {FakeLayer[]} */ (layer.parent.layers) : this.layers;
    }
    /** @param {FakeLayer} layer */
    remove(layer) {
      const siblings = this.siblingsOf(layer);
      const index = siblings.indexOf(layer);
      if (index < 0) {
        throw new Error(`layer ${layer.id} is not in the document`);
      }
      siblings.splice(index, 1);
      if (this._active === layer || (this._active && isInside(this._active, layer))) {
        this._active = siblings[index] ?? siblings[index - 1] ?? layer.parent ?? null;
      }
    }
    /**
     * Insert above the active layer (inside its group), as Photoshop does for new layers;
     * when the active layer is a group, at the top inside it.
     * @param {FakeLayer} layer
     */
    insertAboveActive(layer) {
      const anchor = this._active;
      if (anchor && anchor.kind === "group") {
        /** @type {FakeLayer[]} */ (anchor.layers).unshift(layer);
        layer.parent = anchor;
        this._active = layer;
        return;
      }
      const siblings = anchor ? this.siblingsOf(anchor) : this.layers;
      const index = anchor ? siblings.indexOf(anchor) : 0;
      siblings.splice(Math.max(index, 0), 0, layer);
      layer.parent = anchor ? anchor.parent : null;
      this._active = layer;
    }
    /** @param {FakeLayer} layer @returns {any} */
    contentRect(layer) {
      if (layer.kind === "group") {
        const rects = (layer.layers ?? []).map((child) => this.contentRect(child)).filter(Boolean);
        if (rects.length === 0) return null;
        const left = Math.min(...rects.map((r) => r.left));
        const top = Math.min(...rects.map((r) => r.top));
        const right = Math.max(...rects.map((r) => r.right));
        const bottom = Math.max(...rects.map((r) => r.bottom));
        return { left, top, right, bottom, width: right - left, height: bottom - top };
      }
      const pixels = /** @type {any} */ (layer.pixels);
      const alpha = new Uint8Array(this.width * this.height);
      for (let i = 0; i < alpha.length; i++) alpha[i] = pixels[i * 4 + 3] > 0 ? 1 : 0;
      return maskRect(alpha, this.width, this.height);
    }
    snapshot() {
      /** @param {FakeLayer} layer @returns {any} */
      const save = (layer) => ({
        layer,
        name: layer._name,
        visible: layer._visible,
        kind: layer.kind,
        vectorMask: layer.vectorMask,
        userMask: layer.userMask ? layer.userMask.slice() : null,
        pixels: layer.pixels ? layer.pixels.slice() : null,
        children: layer.layers ? layer.layers.map(save) : null,
      });
      return { layers: this.layers.map(save), active: this._active };
    }
    /** @param {any} snapshot */
    restore(snapshot) {
      /** @param {any} saved @param {FakeLayer|null} parent */
      const load = (saved, parent) => {
        const layer = saved.layer;
        layer._name = saved.name;
        layer._visible = saved.visible;
        layer.kind = saved.kind;
        layer.vectorMask = saved.vectorMask;
        layer.userMask = saved.userMask ? saved.userMask.slice() : null;
        layer.pixels = saved.pixels ? saved.pixels.slice() : null;
        layer.parent = parent;
        layer._deleted = false;
        if (saved.children) layer.layers = saved.children.map((/** @type {any} */ child) => load(child, layer));
        return layer;
      };
      this.layers = snapshot.layers.map((/** @type {any} */ saved) => load(saved, null));
      this._active = snapshot.active;
    }
    /**
     * A modal write outside a history suspension is its own history state.
     * @param {string} name
     * @param {() => void} change
     */
    change(name, change) {
      const before = this.suspensions.size === 0 ? this.snapshot() : null;
      change();
      if (before) this.history.push({ name, before });
    }

    // ---- Photoshop API ----

    /**
     * Layer creation in a document that is not the active one is undocumented (README smoke
     * checklist): the fake refuses it, so the plugin must make the job's document active first.
     * @param {string} api
     */
    requireActive(api) {
      if (world.active !== this) throw new Error(`fake: ${api} on a document that is not active (undocumented)`);
    }
    /**
     * classes/document.md duplicate(name?): "Creates a duplicate of the document, making the
     * duplicate active."
     * @param {string} [name]
     */
    async duplicate(name) {
      record("Document.duplicate", { documentID: this.id, name }, { write: true });
      const twin = world.addDocument({ width: this.width, height: this.height, bits: this.bits, name: name ?? `${this.name} copy`, mode: this.mode });
      twin.layers = [...this.layers];
      return twin;
    }
    /** classes/document.md closeWithoutSaving */
    closeWithoutSaving() {
      record("Document.closeWithoutSaving", { documentID: this.id }, { write: true });
      documents.splice(documents.indexOf(this), 1);
      if (world.active === this) world.active = documents.at(-1) ?? null;
    }

    /**
     * classes/document.md createPixelLayer; the new layer goes above the active layer, inside
     * it when it is a group (shared/reference/photoshop-uxp.md "Real Photoshop behaviour").
     * @param {{name?: string}} [options]
     */
    async createPixelLayer(options = {}) {
      record("Document.createPixelLayer", { documentID: this.id, ...options }, { write: true });
      this.requireActive("createPixelLayer");
      const layer = new FakeLayer(this, options.name ?? "Layer", "pixel");
      this.change("New Layer", () => this.insertAboveActive(layer));
      return layer;
    }
    /**
     * classes/document.md createLayerGroup({name, fromLayers}): the group takes the layers'
     * place; without layers it goes where a new layer would. The new group becomes the active
     * layer, so the next created layer lands inside it (reference "Real Photoshop behaviour").
     * @param {{name?: string, fromLayers?: FakeLayer|FakeLayer[]}} [options]
     */
    async createLayerGroup(options = {}) {
      const members = options.fromLayers ? [options.fromLayers].flat() : [];
      record("Document.createLayerGroup", { documentID: this.id, name: options.name, fromLayers: members.map((l) => l.id) }, { write: true });
      this.requireActive("createLayerGroup");
      const group = new FakeLayer(this, options.name ?? "Group", "group");
      this.change("New Group", () => {
        if (members.length === 0) {
          this.insertAboveActive(group);
          return;
        }
        const siblings = this.siblingsOf(members[0]);
        if (!members.every((layer) => this.siblingsOf(layer) === siblings)) {
          throw new Error("createLayerGroup: layers from different groups");
        }
        const index = Math.min(...members.map((layer) => siblings.indexOf(layer)));
        const ordered = siblings.filter((layer) => members.includes(layer));
        group.parent = members[0].parent;
        for (const layer of ordered) siblings.splice(siblings.indexOf(layer), 1);
        siblings.splice(index, 0, group);
        group.layers = ordered;
        ordered.forEach((layer) => (layer.parent = group));
        this._active = group;
      });
      return group;
    }
  }

  class ImageData {
    /**
     * @param {Uint8Array|Uint16Array|Float32Array} data
     * @param {{width: number, height: number, components: number, colorSpace: string, colorProfile?: string}} info
     */
    constructor(data, info) {
      this._data = data;
      this.width = info.width;
      this.height = info.height;
      this.components = info.components;
      this.colorSpace = info.colorSpace;
      this.colorProfile = info.colorProfile ?? "";
      this.componentSize = data instanceof Uint8Array ? 8 : data instanceof Uint16Array ? 16 : 32;
      this.hasAlpha = info.components === 2 || info.components === 4;
      this.pixelFormat = { 1: "Grayscale", 2: "GrayscaleAlpha", 3: "RGB", 4: "RGBA" }[info.components];
      this.chunky = true;
      this.isChunky = true;
      this.type = "image/uncompressed";
      this.disposed = false;
      world.liveImageData.add(this);
    }
    /**
     * media/imaging.md getData: `fullRange` "is only used for 16 bit data. If true then the
     * returned 16 bit pixel data use the full 16 bit range [0..65535]"; else 0..32768.
     * @param {{chunky?: boolean, fullRange?: boolean}} [options]
     */
    async getData(options = {}) {
      record("ImageData.getData", options);
      if (this.disposed) throw new Error("getData: the image data was disposed");
      if (options.chunky === false) throw new Error("fake: only chunky data is supported");
      if (options.fullRange && this._data instanceof Uint16Array) {
        return Uint16Array.from(this._data, (v) => Math.round((v * 65535) / 32768));
      }
      return this._data.slice();
    }
    async dispose() {
      record("ImageData.dispose", {});
      this.disposed = true;
      world.liveImageData.delete(this);
    }
  }

  /** @param {number} id */
  function documentById(id) {
    const doc = id === undefined ? world.active : documents.find((d) => d.id === id);
    if (!doc) throw new Error(`no document with id ${id}`);
    return doc;
  }

  /** @param {any} options @param {string[]} allowed @param {string} api */
  function checkOptions(options, allowed, api) {
    for (const key of Object.keys(options)) {
      if (!allowed.includes(key)) throw new Error(`${api}: unknown option ${key}`);
    }
  }

  const imaging = {
    /**
     * media/imaging.md getPixels. `layerID` must name a pixel layer (Adobe's imaging sample
     * refuses other kinds; sd-ppp merges/rasterises duplicates first); the pixels come back
     * without the layer's masks (reference "Real Photoshop behaviour": read getLayerMask and
     * multiply); "An opaque RGB pixel has only three components": the Background layer and the
     * composite of a document with a Background come back with `components` 3; sourceBounds is
     * trimmed to the region holding pixels; 32-bit data carries a "(Linear RGB Profile)" name.
     * Without `layerID` it is the document composite as it is now: hidden layers and groups
     * (classes/layer.md `visible`) are left out, also while a history suspension is open.
     * @param {any} options
     */
    async getPixels(options) {
      record("imaging.getPixels", options);
      checkOptions(options, ["documentID", "layerID", "sourceBounds", "targetSize", "colorSpace", "colorProfile", "componentSize", "applyAlpha"], "getPixels");
      const doc = documentById(options.documentID);
      if (options.colorSpace !== undefined && options.colorSpace !== "RGB") throw new Error("fake: RGB only");
      const bits = options.componentSize === undefined || options.componentSize === -1 ? doc.bits : options.componentSize;
      if (![8, 16, 32].includes(bits)) throw new Error(`getPixels: bad componentSize ${options.componentSize}`);
      if (options.applyAlpha) throw new Error("fake: applyAlpha (matting on white) is not faked");
      let rgba8;
      /** @type {any} */
      let rect;
      let opaque = false;
      if (options.layerID !== undefined) {
        const layer = doc.allLayers().find((l) => l.id === options.layerID);
        if (!layer) throw new Error(`getPixels: no layer ${options.layerID}`);
        if (layer.kind !== "pixel") throw new Error(`getPixels: layer ${options.layerID} is not a pixel layer (${layer.kind})`);
        rect = doc.contentRect(layer);
        if (!rect) throw new Error("getPixels: the layer is empty");
        rgba8 = toBytes(/** @type {any} */ (layer.pixels), doc.bits);
        opaque = layer.isBackgroundLayer;
      } else {
        rect = { left: 0, top: 0, right: doc.width, bottom: doc.height };
        rgba8 = composite(doc);
        opaque = doc.layers.some((layer) => layer.isBackgroundLayer && layer.visible);
      }
      if (options.sourceBounds) rect = intersectBounds(rect, options.sourceBounds);
      let cropped = crop(rgba8, doc.width, rect, 4);
      if (opaque) {
        const rgb = new Uint8Array((cropped.length / 4) * 3);
        for (let p = 0; p < cropped.length / 4; p++) rgb.set(cropped.subarray(p * 4, p * 4 + 3), p * 3);
        cropped = rgb;
      }
      const components = opaque ? 3 : 4;
      const data = bits === 8 ? cropped : components === 4 ? fromBytes8Array(cropped, bits) : fromBytes8Array(cropped, bits); // (3-component deep data is not used by the plugin)
      const profile = (options.colorProfile ?? doc.colorProfileName) + (bits === 32 ? " (Linear RGB Profile)" : "");
      const imageData = new ImageData(data, { width: rect.right - rect.left, height: rect.bottom - rect.top, components, colorSpace: "RGB", colorProfile: profile });
      return { imageData, sourceBounds: { left: rect.left, top: rect.top, right: rect.right, bottom: rect.bottom }, level: 0 };
    },
    /**
     * media/imaging.md getLayerMask({documentID, layerID, kind: "user"|"vector", sourceBounds}):
     * a single-channel grayscale mask. It has no `componentSize` option: the mask comes in the
     * document's depth, as getPixels does without one ("the componentSize of the source pixel
     * data is used"). What it does for a layer without such a mask is undocumented: the fake
     * throws (README smoke checklist).
     * @param {any} options
     */
    async getLayerMask(options) {
      record("imaging.getLayerMask", options);
      checkOptions(options, ["documentID", "layerID", "kind", "sourceBounds", "targetSize"], "getLayerMask");
      const doc = documentById(options.documentID);
      const layer = doc.allLayers().find((l) => l.id === options.layerID);
      if (!layer) throw new Error(`getLayerMask: no layer ${options.layerID}`);
      const kind = options.kind ?? "user";
      const mask = kind === "user" ? layer.userMask : kind === "vector" ? layer.vectorMask : undefined;
      if (mask === undefined) throw new Error(`getLayerMask: bad kind ${kind}`);
      if (mask === null) throw new Error(`getLayerMask: the layer has no ${kind} mask`);
      let rect = { left: 0, top: 0, right: doc.width, bottom: doc.height };
      if (options.sourceBounds) rect = intersectBounds(rect, options.sourceBounds);
      // The vector mask is kept rendered as 8 bits; the user mask in the document's depth.
      const deep = kind === "user" ? mask : ARRAY_OF_BITS[doc.bits].from(mask, (v) => fromByte(v, doc.bits, true));
      const data = crop(deep, doc.width, rect, 1);
      const imageData = new ImageData(data, { width: rect.right - rect.left, height: rect.bottom - rect.top, components: 1, colorSpace: "Grayscale", colorProfile: "Gray Gamma 2.2" });
      return { imageData, sourceBounds: rect };
    },
    /**
     * media/imaging.md putLayerMask({documentID, layerID, kind, imageData, replace,
     * targetBounds, commandName}): writes a layer's user (pixel) mask; "Only `user` is accepted";
     * the image data "must be … a single component using the grayscale color model"; `layerID`
     * is required; `targetBounds` takes `left`, `top` ("width and height are not used"); with
     * `replace` (default true) "the existing mask in the layer is discarded before creating a
     * new mask". Strict where the page is silent (README smoke checklist):
     * - the data must be in the document's depth, as for putPixels (the plugins that write masks,
     *   PhaHa and Foraxx, convert to the document's depth first);
     * - a new mask reveals everything outside the data (Adobe-style samples first put a black
     *   canvas-sized mask when they want to hide the rest);
     * - the Background layer cannot have a mask (Photoshop's Add Layer Mask is off for it);
     * - data outside the canvas is refused, as putPixels does.
     * @param {any} options
     */
    async putLayerMask(options) {
      record("imaging.putLayerMask", { ...options, imageData: undefined }, { write: true });
      checkOptions(options, ["documentID", "layerID", "kind", "imageData", "replace", "targetBounds", "commandName"], "putLayerMask");
      const doc = documentById(options.documentID);
      if (typeof options.layerID !== "number") throw new Error("putLayerMask: layerID is required");
      const layer = doc.allLayers().find((l) => l.id === options.layerID);
      if (!layer || layer._deleted) throw new Error(`putLayerMask: no layer ${options.layerID}`);
      if (layer.isBackgroundLayer) throw new Error("putLayerMask: the Background layer cannot have a mask");
      if ((options.kind ?? "user") !== "user") throw new Error(`putLayerMask: only "user" masks are editable, not ${options.kind}`);
      /** @type {ImageData} */
      const image = options.imageData;
      if (!image) throw new Error("putLayerMask: imageData is required");
      if (image.disposed) throw new Error("putLayerMask: the image data was disposed");
      if (image.components !== 1 || image.colorSpace !== "Grayscale") {
        throw new Error(`putLayerMask: mask data must be 1-component Grayscale, not ${image.components}-component ${image.colorSpace}`);
      }
      if (image.componentSize !== doc.bits) {
        throw new Error(`putLayerMask: ${image.componentSize}-bit mask data into a ${doc.bits}-bit document`);
      }
      const left = options.targetBounds?.left ?? 0;
      const top = options.targetBounds?.top ?? 0;
      const size = options.targetBounds ?? {};
      // "width and height are not used" — @types/photoshop requires them: they must agree.
      if ((size.width !== undefined && size.width !== image.width) || (size.height !== undefined && size.height !== image.height)) {
        throw new Error(`putLayerMask: targetBounds ${size.width}×${size.height} but the data is ${image.width}×${image.height}`);
      }
      if (left < 0 || top < 0 || left + image.width > doc.width || top + image.height > doc.height) {
        throw new Error(`putLayerMask: ${image.width}×${image.height} at ${left},${top} is outside the ${doc.width}×${doc.height} canvas`);
      }
      doc.change(options.commandName ?? "Put Layer Mask", () => {
        const replace = options.replace ?? true;
        const mask = !replace && layer.userMask ? layer.userMask : new ARRAY_OF_BITS[doc.bits](doc.width * doc.height).fill(MAX[doc.bits]);
        const data = image._data;
        for (let y = 0; y < image.height; y++) {
          mask.set(data.subarray(y * image.width, (y + 1) * image.width), (top + y) * doc.width + left);
        }
        layer.userMask = mask;
      });
    },
    /** @param {any} options */
    async getSelection(options) {
      record("imaging.getSelection", options);
      checkOptions(options, ["documentID", "sourceBounds", "targetSize"], "getSelection");
      const doc = documentById(options.documentID);
      if (!doc.selectionMask) throw new Error("getSelection: there is no selection");
      let rect = { left: 0, top: 0, right: doc.width, bottom: doc.height };
      if (options.sourceBounds) rect = intersectBounds(rect, options.sourceBounds);
      const data = crop(doc.selectionMask, doc.width, rect, 1);
      const imageData = new ImageData(data, { width: rect.right - rect.left, height: rect.bottom - rect.top, components: 1, colorSpace: "Grayscale", colorProfile: "Gray Gamma 2.2" });
      return { imageData, sourceBounds: rect };
    },
    /**
     * @param {Uint8Array|Uint16Array|Float32Array} buffer
     * @param {any} options
     */
    async createImageDataFromBuffer(buffer, options) {
      record("imaging.createImageDataFromBuffer", { ...options, type: buffer.constructor.name });
      checkOptions(options, ["width", "height", "components", "chunky", "colorProfile", "colorSpace", "fullRange"], "createImageDataFromBuffer");
      const { width, height, components, colorSpace } = options;
      if (!(buffer instanceof Uint8Array || buffer instanceof Uint16Array || buffer instanceof Float32Array)) {
        throw new Error("createImageDataFromBuffer: needs a Uint8Array, Uint16Array or Float32Array");
      }
      if (buffer.length !== width * height * components) {
        throw new Error(`createImageDataFromBuffer: ${buffer.length} values for ${width}×${height}×${components}`);
      }
      if (!["RGB", "Grayscale"].includes(colorSpace)) throw new Error(`bad colorSpace ${colorSpace}`);
      // media/imaging.md: the "(Linear RGB Profile)" text "should not be included when
      // specifying a profile" for 32-bit data.
      if (/\(Linear/i.test(options.colorProfile ?? "")) throw new Error(`createImageDataFromBuffer: unknown profile ${options.colorProfile}`);
      if (buffer instanceof Uint16Array && !options.fullRange && buffer.some((v) => v > 32768)) {
        throw new Error("createImageDataFromBuffer: 16-bit values above 32768");
      }
      // `fullRange`: "Set to true if you are providing pixel data that use the full 16 bit
      // range [0..65535]": kept in Photoshop's own 0..32768.
      const values = buffer instanceof Uint16Array && options.fullRange ? Uint16Array.from(buffer, (v) => Math.round((v * 32768) / 65535)) : buffer.slice();
      return new ImageData(values, { width, height, components, colorSpace, colorProfile: options.colorProfile });
    },
    /** @param {any} options */
    async putPixels(options) {
      record("imaging.putPixels", { ...options, imageData: undefined }, { write: true });
      checkOptions(options, ["documentID", "layerID", "imageData", "replace", "targetBounds", "commandName"], "putPixels");
      const doc = documentById(options.documentID);
      const layer = doc.allLayers().find((l) => l.id === options.layerID);
      if (!layer || layer.kind !== "pixel") throw new Error(`putPixels: layer ${options.layerID} is not a pixel layer`);
      /** @type {ImageData} */
      const image = options.imageData;
      if (image.disposed) throw new Error("putPixels: the image data was disposed");
      if (image.componentSize !== doc.bits) {
        throw new Error(`putPixels: ${image.componentSize}-bit data into a ${doc.bits}-bit document`);
      }
      if (image.components !== 4 || image.colorSpace !== "RGB") throw new Error("fake: RGBA data only");
      const left = options.targetBounds?.left ?? 0;
      const top = options.targetBounds?.top ?? 0;
      const size = options.targetBounds ?? {};
      if ((size.width !== undefined && size.width !== image.width) || (size.height !== undefined && size.height !== image.height)) {
        throw new Error(`putPixels: targetBounds ${size.width}×${size.height} but the data is ${image.width}×${image.height}`);
      }
      if (left < 0 || top < 0 || left + image.width > doc.width || top + image.height > doc.height) {
        throw new Error(`putPixels: ${image.width}×${image.height} at ${left},${top} is outside the ${doc.width}×${doc.height} canvas`);
      }
      doc.change("Put Pixels", () => {
        const pixels = /** @type {any} */ (layer.pixels);
        if (options.replace) pixels.fill(0);
        const data = image._data;
        for (let y = 0; y < image.height; y++) {
          const from = y * image.width * 4;
          pixels.set(data.subarray(from, from + image.width * 4), ((top + y) * doc.width + left) * 4);
        }
      });
    },
  };

  /** @param {number} ms */
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const core = {
    isModal: () => world.inModal,
    /**
     * media/executeasmodal.md. `timeOut` (25.10+, default 1000 ms): while another plugin is
     * modal the request waits up to that long, then fails with `number` 9 and a message naming
     * that plugin. Nested scopes run inside the outer one. When the scope ends, suspensions
     * still open are committed (normal return) or rolled back (exception).
     * @param {(context: any) => Promise<any>} body
     * @param {{commandName: string, timeOut?: number}} options
     */
    async executeAsModal(body, options) {
      record("core.executeAsModal", { commandName: options?.commandName, timeOut: options?.timeOut });
      if (!options || typeof options.commandName !== "string") throw new Error("executeAsModal needs a commandName");
      world.timeOuts.push(options.timeOut);
      if (world.inModal) {
        return body(world.context); // a nested scope shares the outer one's state
      }
      if (world.busyModal > 0) {
        world.busyModal -= 1;
        throw new Error("host is in a modal state");
      }
      if (world.otherModal) {
        const wait = world.otherModal.until - Date.now();
        const timeOut = options.timeOut ?? 1000;
        if (wait > timeOut) {
          await sleep(timeOut);
          const error = /** @type {Error & {number?: number}} */ (new Error(`Plugin: ${world.otherModal.plugin} is running a modal command`));
          error.number = 9;
          throw error;
        }
        await sleep(Math.max(wait, 0));
        world.otherModal = null;
      }
      world.inModal = true;
      world.cancelled = false;
      world.modalCommands.push(options.commandName);
      let nextSuspension = 1;
      const context = {
        get isCancelled() {
          return world.cancelled;
        },
        onCancel: null,
        reportProgress: () => {},
        hostControl: {
          /** @param {{documentID: number, name: string}} info */
          async suspendHistory({ documentID, name }) {
            record("hostControl.suspendHistory", { documentID, name });
            const doc = documentById(documentID);
            const id = nextSuspension++;
            doc.suspensions.set(id, { name, before: doc.snapshot() });
            return { historySuspensionID: id, documentID };
          },
          /**
           * objects/options/executioncontext.md resumeHistory(params, commit?): "if false, the
           * current modified document state is dropped, and the document returns to the state
           * when `suspendHistory` was invoked" (no History state); committed, one named state.
           * @param {{historySuspensionID: number, documentID?: number}} suspension @param {boolean} [commit]
           */
          async resumeHistory(suspension, commit = true) {
            record("hostControl.resumeHistory", { ...suspension, commit });
            const doc = documents.find((d) => d.suspensions.has(suspension.historySuspensionID));
            if (!doc) throw new Error("resumeHistory: unknown suspension");
            const state = doc.suspensions.get(suspension.historySuspensionID);
            doc.suspensions.delete(suspension.historySuspensionID);
            if (commit) doc.history.push(state);
            else doc.restore(state.before);
          },
        },
      };
      world.context = context;
      let failed = false;
      try {
        return await body(context);
      } catch (error) {
        failed = true;
        throw error;
      } finally {
        world.inModal = false;
        world.cancelled = false;
        world.context = null;
        for (const doc of documents) {
          for (const [id, state] of [...doc.suspensions.entries()]) {
            doc.suspensions.delete(id);
            world.autoResumed.push({ name: state.name, commit: !failed });
            if (failed) doc.restore(state.before);
            else doc.history.push(state);
          }
        }
      }
    },
  };

  const app = {
    get activeDocument() {
      return world.active;
    },
    /** classes/photoshop.md: `activeDocument` is writable (a change of state: modal only). */
    set activeDocument(doc) {
      record("app.activeDocument", { documentID: doc?.id }, { write: true });
      if (!documents.includes(doc)) throw new Error("activeDocument: not an open document");
      world.active = doc;
    },
    get documents() {
      return documents;
    },
    /** @param {{nativePath: string}} file */
    async open(file) {
      record("app.open", { path: file?.nativePath }, { write: true });
      if (!file || typeof file.nativePath !== "string") throw new Error("app.open needs a File entry");
      const head = fs.readFileSync(file.nativePath).subarray(0, 4).toString("latin1");
      if (head !== "8BPS") throw new Error("app.open: not a PSD file");
      world.opened.push(file.nativePath);
      const doc = world.addDocument({ width: 1, height: 1, name: file.nativePath.split("/").pop() });
      doc.path = file.nativePath;
      return doc;
    },
  };

  const photoshop = {
    app,
    core,
    imaging,
    action: {
      batchPlay: async () => {
        throw new Error("fake: batchPlay is not faked (the plugin does not use it)");
      },
    },
    constants: {
      // Values as in @types/photoshop 25.0.4 dom/Constants.d.ts
      LayerKind: {
        NORMAL: "pixel", GROUP: "group", TEXT: "text", SMARTOBJECT: "smartObject", SOLIDFILL: "solidColor",
        GRADIENTFILL: "gradientFill", PATTERNFILL: "pattern", CURVES: "curves", LEVELS: "levels",
        HUESATURATION: "hueSaturation", LAYER3D: "threeD", VIDEO: "video",
      },
      RasterizeType: { ENTIRELAYER: "entire", FILLCONTENT: "content", TEXTCONTENTS: "type", SHAPE: "shape", PLACED: "placed" },
      ElementPlacement: { PLACEBEFORE: "placeBefore", PLACEAFTER: "placeAfter", PLACEINSIDE: "placeInside", PLACEATBEGINNING: "placeAtBeginning", PLACEATEND: "placeAtEnd" },
      DocumentMode: { RGB: "RGBColorMode", GRAYSCALE: "grayscaleMode", CMYK: "CMYKColorMode" },
      BitsPerChannelType: { EIGHT: "bitDepth8", SIXTEEN: "bitDepth16", THIRTYTWO: "bitDepth32" },
    },
  };
  return { photoshop, world };
}

module.exports = { createFakePhotoshop, SRGB };
