// @ts-check
/**
 * A fake `photoshop` module for tests: in-memory documents whose layers hold typed-array
 * pixels in the document's bit depth, the Imaging API on real buffers, `executeAsModal` with
 * history suspension, and Photoshop's rules made strict:
 * - every write (layer creation, renaming, visibility, deletion, putPixels, open) throws
 *   outside `executeAsModal`, and a second modal scope throws "host is in a modal state";
 * - putPixels wants image data in the document's bit depth (16-bit: 0..32768);
 * - image data must be disposed, and cannot be used after it was.
 * Every call is recorded in `world.calls` with whether it ran inside a modal scope.
 */
"use strict";

const fs = require("node:fs");

const { ARRAY_OF_BITS, composite, crop, fromByte, fromBytes8Array, intersectBounds, isInside, maskRect, toBytes } = require("./raster.js");

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
    /** How many executeAsModal calls fail with "host is in a modal state" first. */
    busyModal: 0,
    /** @type {string[]} */
    opened: [],
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
    if (world.failures[api] === count) {
      throw new Error(`${api} failed (injected)`);
    }
    if (write && !world.inModal) {
      throw new Error(`${api}: this API can only be called in a modal scope (executeAsModal)`);
    }
  }

  class FakeLayer {
    /**
     * @param {FakeDocument} doc
     * @param {string} name
     * @param {"pixel"|"group"} kind
     */
    constructor(doc, name, kind) {
      this.id = nextId++;
      this._doc = doc;
      this._name = name;
      this._visible = true;
      this.kind = kind;
      /** @type {FakeLayer|null} */
      this.parent = null;
      /** @type {FakeLayer[]|null} top first, like Photoshop */
      this.layers = kind === "group" ? [] : null;
      /** @type {Uint8Array|Uint16Array|Float32Array|null} canvas-sized RGBA in the doc's depth */
      this.pixels = kind === "pixel" ? new ARRAY_OF_BITS[doc.bits](doc.width * doc.height * 4) : null;
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
    set visible(value) {
      record("Layer.visible", { id: this.id, value }, { write: true });
      this._visible = value;
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
     * Add a pixel layer from 8-bit RGBA at a canvas position (outside any modal scope).
     * @param {string} name
     * @param {{data: Uint8Array, width: number, height: number, left?: number, top?: number}} image
     */
    addPixelLayer(name, { data, width, height, left = 0, top = 0 }) {
      const layer = new FakeLayer(this, name, "pixel");
      const pixels = /** @type {any} */ (layer.pixels);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          for (let c = 0; c < 4; c++) {
            pixels[((top + y) * this.width + left + x) * 4 + c] = fromByte(data[(y * width + x) * 4 + c], this.bits);
          }
        }
      }
      this.layers.unshift(layer);
      this._active = layer;
      return layer;
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

    /** @param {{name?: string}} [options] */
    async createPixelLayer(options = {}) {
      record("Document.createPixelLayer", { documentID: this.id, ...options }, { write: true });
      const layer = new FakeLayer(this, options.name ?? "Layer", "pixel");
      this.change("New Layer", () => this.insertAboveActive(layer));
      return layer;
    }
    /** @param {{name?: string, fromLayers?: FakeLayer|FakeLayer[]}} [options] */
    async createLayerGroup(options = {}) {
      const members = options.fromLayers ? [options.fromLayers].flat() : [];
      record("Document.createLayerGroup", { documentID: this.id, name: options.name, fromLayers: members.map((l) => l.id) }, { write: true });
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
    /** @param {{chunky?: boolean, fullRange?: boolean}} [options] */
    async getData(options = {}) {
      record("ImageData.getData", options);
      if (this.disposed) throw new Error("getData: the image data was disposed");
      if (options.chunky === false) throw new Error("fake: only chunky data is supported");
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
    /** @param {any} options */
    async getPixels(options) {
      record("imaging.getPixels", options);
      checkOptions(options, ["documentID", "layerID", "sourceBounds", "targetSize", "colorSpace", "colorProfile", "componentSize", "applyAlpha"], "getPixels");
      const doc = documentById(options.documentID);
      if (options.colorSpace !== undefined && options.colorSpace !== "RGB") throw new Error("fake: RGB only");
      const bits = options.componentSize === undefined || options.componentSize === -1 ? doc.bits : options.componentSize;
      if (![8, 16, 32].includes(bits)) throw new Error(`getPixels: bad componentSize ${options.componentSize}`);
      let rgba8;
      /** @type {any} */
      let rect;
      if (options.layerID !== undefined) {
        const layer = doc.allLayers().find((l) => l.id === options.layerID);
        if (!layer || layer.kind !== "pixel") throw new Error(`getPixels: no pixel layer ${options.layerID}`);
        rect = doc.contentRect(layer);
        if (!rect) throw new Error("getPixels: the layer is empty");
        rgba8 = toBytes(/** @type {any} */ (layer.pixels), doc.bits);
      } else {
        rect = { left: 0, top: 0, right: doc.width, bottom: doc.height };
        rgba8 = composite(doc);
      }
      if (options.sourceBounds) rect = intersectBounds(rect, options.sourceBounds);
      const cropped = crop(rgba8, doc.width, rect, 4);
      const data = bits === 8 ? cropped : fromBytes8Array(cropped, bits);
      const imageData = new ImageData(data, { width: rect.right - rect.left, height: rect.bottom - rect.top, components: 4, colorSpace: "RGB", colorProfile: options.colorProfile ?? doc.colorProfileName });
      return { imageData, sourceBounds: { left: rect.left, top: rect.top, right: rect.right, bottom: rect.bottom }, level: 0 };
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
      if (buffer instanceof Uint16Array && !options.fullRange && buffer.some((v) => v > 32768)) {
        throw new Error("createImageDataFromBuffer: 16-bit values above 32768");
      }
      return new ImageData(buffer.slice(), { width, height, components, colorSpace, colorProfile: options.colorProfile });
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

  const core = {
    isModal: () => world.inModal,
    /**
     * @param {(context: any) => Promise<any>} body
     * @param {{commandName: string}} options
     */
    async executeAsModal(body, options) {
      record("core.executeAsModal", { commandName: options?.commandName });
      if (!options || typeof options.commandName !== "string") throw new Error("executeAsModal needs a commandName");
      if (world.inModal) throw new Error("host is in a modal state");
      if (world.busyModal > 0) {
        world.busyModal -= 1;
        throw new Error("host is in a modal state");
      }
      world.inModal = true;
      world.modalCommands.push(options.commandName);
      let nextSuspension = 1;
      const context = {
        isCancelled: false,
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
          /** @param {{historySuspensionID: number, documentID?: number}} suspension @param {boolean} [commit] */
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
      try {
        return await body(context);
      } finally {
        world.inModal = false;
        for (const doc of documents) {
          if (doc.suspensions.size > 0) throw new Error("executeAsModal ended with a history suspension open");
        }
      }
    },
  };

  const app = {
    get activeDocument() {
      return world.active;
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
      LayerKind: { NORMAL: "pixel", GROUP: "group" },
      ElementPlacement: { PLACEBEFORE: "placeBefore", PLACEAFTER: "placeAfter", PLACEINSIDE: "placeInside", PLACEATBEGINNING: "placeAtBeginning", PLACEATEND: "placeAtEnd" },
      DocumentMode: { RGB: "RGBColorMode", GRAYSCALE: "grayscaleMode", CMYK: "CMYKColorMode" },
      BitsPerChannelType: { EIGHT: "bitDepth8", SIXTEEN: "bitDepth16", THIRTYTWO: "bitDepth32" },
    },
  };
  return { photoshop, world };
}

module.exports = { createFakePhotoshop, SRGB };
