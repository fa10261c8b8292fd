// @ts-check
/**
 * The only module that touches Photoshop and UXP (`require("photoshop")`, `require("uxp")`):
 * reading pixels, inserting layers, opening files, panel setup and storage. Every read and
 * write runs in a short `executeAsModal` scope; no network request is awaited inside one.
 */
"use strict";

const { HostProblem } = require("./errors.js");
const {
  anySelected,
  documentBits,
  intersect,
  maskToBytes,
  placeInto,
  rectFromBounds,
  splitAlpha,
  toBytes,
  toRgba,
  wireToDocument,
} = require("./pixels.js");
const { neighbour } = require("./placement.js");
const { decodeUtf8, encodeUtf8 } = require("./utf8.js");

/** @typedef {import("./controller").Host} Host */
/** @typedef {import("./placement").DocumentInfo} DocumentInfo */
/** @typedef {import("./placement").DocumentPixels} DocumentPixels */
/** @typedef {import("./placement").Placed} Placed */
/** @typedef {import("./protocol").Rect} Rect */

const SRGB = "sRGB IEC61966-2.1";
/** The profile of mask data (media/imaging.md, createImageDataFromBuffer). */
const GRAY = "Gray Gamma 2.2";
const RGB_MODE = "RGBColorMode";
const SETTINGS_KEY = "acetate.settings";
const TOKEN_KEY = "acetate.token";
/** Before Photoshop 25.10 a second modal request fails at once instead of waiting. */
const MODAL_RETRIES = 8;
const MODAL_RETRY_MS = 250;
/** Since 25.10 `executeAsModal` itself waits this long for another plugin's modal scope. */
const MODAL_TIMEOUT_MS = 3000;
/** Layer kinds read through a rasterised temporary duplicate (constants.md LayerKind). */
const RASTERIZED_KINDS = ["text", "smartObject", "solidColor", "gradientFill", "pattern"];

/**
 * Another plugin holds the modal state: `number` 9 and "Plugin: … is running a modal command"
 * since 25.10 (media/executeasmodal.md), "host is in a modal state" before.
 * @param {unknown} error
 */
function isModalClash(error) {
  const number = /** @type {any} */ (error)?.number;
  const message = error instanceof Error ? error.message : String(error ?? "");
  return number === 9 || /is running a modal command|modal state/i.test(message);
}

/**
 * @typedef {Object} Modules
 * @property {typeof import("photoshop")} photoshop `require("photoshop")`
 * @property {any} uxp `require("uxp")` (its published types do not match the documented
 *   storage and entrypoints API, so it stays untyped)
 * @property {{getItem(key: string): string|null, setItem(key: string, value: string): void}} [localStorage]
 */

/**
 * The controller's `Host`, plus what the panel's start-up needs.
 * @typedef {Host & {
 *   allowedOrigins(): Promise<string[]>,
 *   pluginVersion(): Promise<string>,
 *   loadSaved(): unknown,
 *   save(data: unknown): void,
 *   loadToken(): Promise<string>,
 *   saveToken(token: string): Promise<void>,
 *   setupPanel(panelId: string, handlers: {create: (root: any) => void, destroy?: () => void}): void,
 * }} Adapter
 */

/**
 * The editor adapter. Photoshop passes nothing (the real modules load); tests pass fakes.
 * @param {Modules} [modules]
 * @returns {Adapter}
 */
function createHost(modules) {
  const { photoshop, uxp, localStorage } = modules ?? {
    photoshop: require("photoshop"),
    uxp: require("uxp"),
    localStorage: globalThis.localStorage,
  };
  const { app, core, imaging } = photoshop;

  /**
   * Run `body` as a modal command, retrying while another plugin holds the modal state.
   * @template T
   * @param {string} commandName
   * @param {(context: any) => Promise<T>} body
   * @returns {Promise<T>}
   */
  async function modal(commandName, body) {
    let entered = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return await core.executeAsModal(
          (context) => {
            entered = true;
            return body(context);
          },
          // `timeOut` (25.10+) is missing from @types/photoshop 25.0.4's ExecuteAsModalOptions.
          /** @type {any} */ ({ commandName, timeOut: MODAL_TIMEOUT_MS }),
        );
      } catch (error) {
        // Only a refusal to enter is a clash; an error from inside the scope is the body's.
        const busy = !entered && isModalClash(error);
        if (!busy || attempt >= MODAL_RETRIES || /** @type {any} */ (error)?.number === 9) {
          if (busy) {
            const who = /Plugin: ?(\S+) is running/i.exec(error instanceof Error ? error.message : "")?.[1];
            throw new HostProblem(
              `Photoshop is busy with another command${who ? ` (the plugin ${who} is running one)` : ""}; try again when it has finished.`,
            );
          }
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, MODAL_RETRY_MS));
      }
    }
  }

  /**
   * Undo whatever `body` changed: a history suspension rolled back at the end, so temporary
   * duplicates leave no layer and no history state. When the body fails (or the user
   * cancelled, after which Photoshop refuses further changes), the rollback's own error is
   * dropped and the original one thrown; Photoshop also rolls back open suspensions itself
   * when a scope ends with an exception (media/executeasmodal.md).
   * @template T
   * @param {any} context
   * @param {number} documentID
   * @param {() => Promise<T>} body
   * @returns {Promise<T>}
   */
  async function withoutTrace(context, documentID, body) {
    const suspension = await context.hostControl.suspendHistory({ documentID, name: "Acetate: read" });
    let result;
    try {
      result = await body();
    } catch (error) {
      try {
        await context.hostControl.resumeHistory(suspension, false);
      } catch {
        // Secondary: the scope was cancelled or is failing anyway; Photoshop rolls back.
      }
      throw error;
    }
    await context.hostControl.resumeHistory(suspension, false);
    return result;
  }

  /** @param {any} doc @returns {DocumentInfo} */
  function describe(doc) {
    const width = Math.round(Number(doc.width));
    const height = Math.round(Number(doc.height));
    const active = doc.activeLayers?.[0] ?? null;
    /** @type {DocumentInfo["activeLayer"]} */
    let activeLayer = null;
    if (active) {
      const bounds = safeBounds(active);
      const rect = bounds ? intersect(rectFromBounds(bounds), { left: 0, top: 0, width, height }) : null;
      activeLayer = { id: active.id, topId: topLevel(active).id, kind: String(active.kind), rect };
    }
    const visibleTopIds = [...(doc.layers ?? [])].filter((layer) => layer.visible).map((layer) => layer.id);
    /** @type {{id: number, name: string}[]} every layer, top first (a structure-layer picker) */
    const layers = [];
    /** @param {any[]} list */
    const walk = (list) => {
      for (const item of list) {
        layers.push({ id: item.id, name: String(item.name) });
        walk([...(item.layers ?? [])]);
      }
    };
    walk([...(doc.layers ?? [])]);
    return { id: doc.id, name: doc.name, width, height, bits: documentBits(doc.bitsPerChannel), activeLayer, visibleTopIds, layers };
  }

  /** @param {any} doc */
  function checkMode(doc) {
    if (doc.mode !== RGB_MODE) {
      throw new HostProblem("Acetate works on RGB documents: convert with Image ▸ Mode ▸ RGB Color.");
    }
    if (!["bitDepth8", "bitDepth16", "bitDepth32"].includes(doc.bitsPerChannel)) {
      throw new HostProblem("Acetate works on 8, 16 and 32 bit documents.");
    }
  }

  /** @param {number} id */
  function findDocument(id) {
    for (const doc of app.documents) {
      if (doc.id === id) {
        return doc;
      }
    }
    throw new HostProblem("The document was closed before the result arrived.");
  }

  /**
   * Pixels as 8-bit RGBA (or a 1-channel mask) from an imaging result, disposing it.
   * @param {{imageData: any, sourceBounds: any}} result
   * @param {"rgba"|"mask"} kind
   */
  async function take(result, kind) {
    const { imageData } = result;
    try {
      const data = await imageData.getData({ chunky: true });
      const { componentSize, components } = imageData;
      // A mask (a layer mask in the document's depth, a selection) is coverage, not colour.
      const pixels =
        kind === "rgba" ? toRgba(toBytes(data, componentSize, components), components) : maskToBytes(firstChannel(data, components), componentSize);
      return { data: pixels, rect: rectFromBounds(result.sourceBounds) };
    } finally {
      await imageData.dispose();
    }
  }

  /**
   * The active layer's pixels as the user sees them on it, clipped to the canvas: a pixel
   * layer with its user and vector masks applied to alpha (getPixels returns unmasked pixels);
   * a group through a merged temporary duplicate; text, smart objects and fills through a
   * rasterised temporary duplicate (the duplicates and their history vanish in a rolled-back
   * suspension); the Background opaque. A clipped layer is read on its own, not clipped by
   * its base. Null when the layer has no pixels on the canvas.
   * @param {any} context the modal scope's execution context
   * @param {any} doc
   * @param {any} layer
   * @param {Rect} canvas
   * @returns {Promise<(import("./pixels").Raster & {rect: Rect})|null>}
   */
  async function readLayer(context, doc, layer, canvas) {
    const kind = String(layer.kind);
    if (kind === NORMAL) {
      return readPixelLayer(context, doc, layer, canvas);
    }
    return withoutTrace(context, doc.id, async () => {
      const copy = await layer.duplicate();
      if (kind === GROUP) {
        // Layer.merge works on the selected layers: the duplicate is (README checklist).
        const merged = await copy.merge();
        return readPixelLayer(context, doc, merged ?? copy, canvas);
      }
      await copy.rasterize(constants.RasterizeType.ENTIRELAYER);
      return readPixelLayer(context, doc, copy, canvas);
    });
  }

  /**
   * @param {any} context
   * @param {any} doc
   * @param {any} layer a pixel layer
   * @param {Rect} canvas
   */
  async function readPixelLayer(context, doc, layer, canvas) {
    const bounds = safeBounds(layer);
    const rect = bounds ? intersect(rectFromBounds(bounds), canvas) : null;
    if (!rect) {
      return null;
    }
    // Only the layer's region, always 8-bit sRGB (Photoshop converts deeper documents).
    const read = await take(
      await imaging.getPixels({
        documentID: doc.id,
        layerID: layer.id,
        sourceBounds: boundsOf(rect),
        colorSpace: "RGB",
        colorProfile: SRGB,
        componentSize: 8,
        applyAlpha: false,
      }),
      "rgba",
    );
    const inside = intersect(read.rect, rect);
    if (!inside) {
      return null;
    }
    const data = placeInto(read.data, read.rect, rect, 4);
    if (layer.isBackgroundLayer) {
      for (let i = 3; i < data.length; i += 4) {
        data[i] = 255;
      }
    }
    for (const kind of /** @type {const} */ (["user", "vector"])) {
      const mask = await readMask(context, doc, layer, kind, rect);
      if (mask) {
        for (let p = 0; p < mask.length; p++) {
          data[p * 4 + 3] = Math.round((data[p * 4 + 3] * mask[p]) / 255);
        }
      }
    }
    return { data, width: rect.width, height: rect.height, rect };
  }

  /**
   * A layer's user or vector mask over `rect`, or null when it has none (what getLayerMask
   * does then is undocumented: any failure outside a cancelled scope means "no mask").
   * @param {any} context
   * @param {any} doc
   * @param {any} layer
   * @param {"user"|"vector"} kind
   * @param {Rect} rect
   */
  async function readMask(context, doc, layer, kind, rect) {
    let result;
    try {
      result = await imaging.getLayerMask({ documentID: doc.id, layerID: layer.id, kind, sourceBounds: boundsOf(rect) });
    } catch (error) {
      if (context?.isCancelled) {
        throw error;
      }
      return null;
    }
    if (!result || !result.imageData) {
      return null;
    }
    const read = await take(result, "mask");
    return placeInto(read.data, read.rect, rect, 1);
  }

  /**
   * Refuse, in plain words and before any modal scope, a layer that has no pixels to read.
   * @param {any} layer
   */
  function checkReadable(layer) {
    const kind = String(layer.kind);
    if (kind === NORMAL || kind === GROUP || RASTERIZED_KINDS.includes(kind)) {
      return;
    }
    const what = kind === "threeD" ? "a 3D layer" : kind === "video" ? "a video layer" : `an adjustment layer (${kind})`;
    throw new HostProblem(
      `The active layer "${layer.name}" is ${what}: it has no pixels of its own to send. ` +
        "Select a pixel, text, shape or smart object layer or a group.",
    );
  }

  const { constants } = photoshop;
  const NORMAL = constants.LayerKind.NORMAL;
  const GROUP = constants.LayerKind.GROUP;
  const PLACE_ABOVE = constants.ElementPlacement.PLACEBEFORE;
  const PLACE_BELOW = constants.ElementPlacement.PLACEAFTER;
  const PLACE_INSIDE = constants.ElementPlacement.PLACEINSIDE;

  /** @type {Adapter} */
  const host = {
    activeDocument() {
      const doc = app.activeDocument;
      return doc ? describe(doc) : null;
    },

    async readDocument({ composite = false, layer = false, selection = false, layout = false, layers = {} }) {
      const doc = app.activeDocument;
      if (!doc) {
        throw new HostProblem("Open a document first.");
      }
      checkMode(doc);
      const info = describe(doc);
      const canvas = { left: 0, top: 0, width: info.width, height: info.height };
      const active = layer ? doc.activeLayers[0] : null;
      if (layer && !active) {
        throw new HostProblem("Select a layer first.");
      }
      const selected = selection ? selectionBounds(doc) : null;
      if (active) {
        checkReadable(active);
      }
      // Layers picked in the panel by id, each for a role (structure, source, mask).
      const picked = Object.entries(layers).map(([role, id]) => {
        const found = findLayer(doc, id);
        if (!found) {
          throw new HostProblem(`The ${role} layer is no longer in the document: pick another one.`);
        }
        checkReadable(found);
        return { role, layer: found };
      });
      const group = layout ? layoutGroup(doc) : null;
      /** @type {any[]} bottom → top */
      const children = group ? [...group.layers].reverse().filter((child) => child.visible) : [];
      if (group) {
        if (children.length === 0) {
          throw new HostProblem(`The group "${group.name}" has no visible layers: add one layer per object, named after it, painted where it goes.`);
        }
        for (const child of children) {
          checkReadable(child);
          if (String(child.name).trim() === "") {
            throw new HostProblem(`A layer in "${group.name}" has no name: its name is the object's prompt.`);
          }
        }
      }
      return modal("Acetate: read document", async (context) => {
        /** @type {DocumentPixels} */
        const out = { document: info };
        if (group) {
          /** @type {import("./placement").LayoutItem[]} */
          const items = [];
          for (const child of children) {
            const pixels = await readLayer(context, doc, child, canvas);
            const item = pixels ? paintedMask(pixels) : null;
            if (!item) {
              throw new HostProblem(`The layer "${child.name}" in "${group.name}" has no painted pixels on the canvas: paint where the object goes.`);
            }
            items.push({ id: child.id, name: String(child.name).trim(), ...item });
          }
          out.layout = { group: { id: group.id, name: group.name }, items };
        }
        if (composite) {
          // The visible image without the layout group: the group is hidden inside a history
          // suspension that is rolled back, so the document is left as it was, with no
          // history state (ps_reference/objects/options/executioncontext.md, resumeHistory).
          const readComposite = async () =>
            take(
              await imaging.getPixels({
                documentID: doc.id,
                colorSpace: "RGB",
                colorProfile: SRGB,
                componentSize: 8,
                applyAlpha: false,
              }),
              "rgba",
            );
          const read = group && group.visible
            ? await withoutTrace(context, doc.id, async () => {
                group.visible = false;
                return readComposite();
              })
            : await readComposite();
          out.composite = { data: placeInto(read.data, read.rect, canvas, 4), ...size(canvas) };
        }
        if (active) {
          out.layer = await readLayer(context, doc, active, canvas);
        }
        if (picked.length > 0) {
          out.layers = {};
          for (const { role, layer: item } of picked) {
            out.layers[role] = await readLayer(context, doc, item, canvas);
          }
        }
        if (selection) {
          out.selection = null;
          const rect = selected ? intersect(selected, canvas) : null;
          if (rect) {
            const read = await take(
              await imaging.getSelection({ documentID: doc.id, sourceBounds: boundsOf(rect) }),
              "mask",
            );
            const mask = placeInto(read.data, read.rect, rect, 1);
            if (anySelected(mask)) {
              out.selection = { data: mask, ...size(rect), rect };
            }
          }
        }
        return out;
      });
    },

    async insertLayer(documentId, insertion, commandName) {
      const doc = findDocument(documentId);
      checkMode(doc);
      const { layer } = insertion;
      // Converted before the modal scope so that Photoshop is blocked as briefly as possible
      // (16-bit: 0..32768, 32-bit: linear light; pixels.js). With `alphaMask` the colour goes in
      // opaque (RGB as decoded, also under alpha 0) and the alpha becomes the layer's mask.
      const bits = documentBits(doc.bitsPerChannel);
      const depth = layer.depth ?? 8;
      const split = layer.alphaMask ? splitAlpha(layer.data, depth === 16 ? 0xffff : 0xff) : null;
      const channels = wireToDocument(split ? split.color : layer.data, depth, bits);
      const maskChannels = split ? wireToDocument(split.alpha, depth, bits, 1) : null;
      return modal(commandName, async (context) => {
        // The user may have switched documents while the job ran; creating layers in an
        // inactive document is undocumented, so the job's document is made active first.
        if (app.activeDocument?.id !== doc.id) {
          app.activeDocument = doc;
        }
        // One history state per inserted layer, named after it (a suspension cannot be held
        // across the network waits between layers).
        const suspension = await context.hostControl.suspendHistory({ documentID: doc.id, name: commandName });
        /** @type {any[]} */
        const created = [];
        try {
          const anchor = doc.activeLayers[0] ?? null;
          const target = await doc.createPixelLayer({ name: layer.name });
          if (!target) {
            throw new Error(`Photoshop did not create the layer ${layer.name}`);
          }
          created.push(target);
          const imageData = await imaging.createImageDataFromBuffer(channels, {
            width: layer.width,
            height: layer.height,
            components: 4,
            chunky: true,
            colorSpace: "RGB",
            colorProfile: SRGB,
          });
          try {
            await imaging.putPixels({
              documentID: doc.id,
              layerID: target.id,
              imageData,
              targetBounds: { left: layer.left, top: layer.top, width: layer.width, height: layer.height },
              replace: true,
              commandName,
            });
          } finally {
            await imageData.dispose();
          }
          if (maskChannels) {
            const maskData = await imaging.createImageDataFromBuffer(maskChannels, {
              width: layer.width,
              height: layer.height,
              components: 1,
              chunky: true,
              colorSpace: "Grayscale",
              colorProfile: GRAY,
            });
            try {
              await imaging.putLayerMask({
                documentID: doc.id,
                layerID: target.id,
                imageData: maskData,
                targetBounds: { left: layer.left, top: layer.top, width: layer.width, height: layer.height },
                replace: true,
                commandName,
              });
            } finally {
              await maskData.dispose();
            }
          }
          if (!layer.visible) {
            target.visible = false;
          }
          // e.g. a scene's layout group, hidden (not deleted) with the result's first layer,
          // in the same history state.
          for (const id of insertion.hide ?? []) {
            const hidden = findLayer(doc, id);
            if (hidden && hidden.visible) {
              hidden.visible = false;
            }
          }
          // New layers land above the active layer (inside it when it is a group): every
          // layer and group is moved to its place explicitly.
          let group = insertion.group.id === null ? null : findLayer(doc, insertion.group.id);
          if (group && group.kind !== GROUP) {
            group = null;
          }
          if (group === null) {
            group = await doc.createLayerGroup({ name: insertion.group.name, fromLayers: [target] });
            if (!group) {
              throw new Error(`Photoshop did not create the group ${insertion.group.name}`);
            }
            created.push(group);
            const next = neighbour(live(doc, insertion.group.siblings), insertion.group.rank);
            if (next) {
              await group.move(next.item.layer, next.place === "above" ? PLACE_ABOVE : PLACE_BELOW);
            } else {
              // A result's first group goes at the top level, above the layer that was active
              // before the result's first insertion (every creation makes the new item active).
              const remembered = insertion.group.anchor != null ? findLayer(doc, insertion.group.anchor) : null;
              const top = topLevel(remembered ?? anchor);
              if (top && top.id !== group.id) {
                await group.move(top, PLACE_ABOVE);
              }
            }
          } else {
            const next = neighbour(live(doc, insertion.siblings), insertion.rank);
            if (next) {
              await target.move(next.item.layer, next.place === "above" ? PLACE_ABOVE : PLACE_BELOW);
            } else {
              await target.move(group, PLACE_INSIDE);
            }
          }
          await context.hostControl.resumeHistory(suspension, true);
          return { layerId: target.id, groupId: group.id };
        } catch (error) {
          for (const item of created.reverse()) {
            try {
              item.delete();
            } catch {
              // Already gone with its group, or the user cancelled (no changes possible then).
            }
          }
          try {
            await context.hostControl.resumeHistory(suspension, false);
          } catch {
            // After a cancel Photoshop refuses this and rolls back itself: report the original.
          }
          throw error;
        }
      });
    },

    async removeLayers(documentId, ids, commandName, reveal = []) {
      const doc = findDocument(documentId);
      const present = ids.map((id) => findLayer(doc, id)).filter((layer) => layer !== null);
      if (present.length === 0) {
        return 0;
      }
      await modal(commandName, async (context) => {
        const suspension = await context.hostControl.suspendHistory({ documentID: doc.id, name: commandName });
        try {
          for (const layer of present) {
            layer.delete();
          }
          for (const id of reveal) {
            const shown = findLayer(doc, id);
            if (shown && !shown.visible) {
              shown.visible = true;
            }
          }
        } catch (error) {
          await context.hostControl.resumeHistory(suspension, false);
          throw error;
        }
        await context.hostControl.resumeHistory(suspension, true);
      });
      return present.length;
    },

    async openPsd(bytes, fileName) {
      const { localFileSystem, formats } = uxp.storage;
      const folder = await localFileSystem.getTemporaryFolder();
      const file = await folder.createFile(fileName, { overwrite: true });
      await file.write(bytes, { format: formats.binary });
      // A document opened from the plugin's temporary folder would be saved back there by
      // Ctrl+S: it is duplicated into an untitled document and the temporary one closed.
      return modal("Acetate: open PSD", async () => {
        const opened = await app.open(file);
        try {
          await opened.duplicate(fileName.replace(/\.psd$/i, ""));
          opened.closeWithoutSaving();
          return true;
        } catch {
          return false; // the panel tells the user to use File ▸ Save As
        }
      });
    },

    /** The manifest's network entries (what this build may connect to). */
    async allowedOrigins() {
      const manifest = await readManifest();
      const domains = manifest?.requiredPermissions?.network?.domains;
      return Array.isArray(domains) ? domains.map(String) : [];
    },

    /** The plugin's version (manifest), sent as `X-Acetate-Client: photoshop/<version>`. */
    async pluginVersion() {
      const manifest = await readManifest();
      return typeof manifest?.version === "string" ? manifest.version : "0";
    },

    /** @returns {unknown} the saved panel data, or null */
    loadSaved() {
      try {
        const text = localStorage?.getItem(SETTINGS_KEY);
        return text ? JSON.parse(text) : null;
      } catch {
        return null;
      }
    },

    /** @param {unknown} data */
    save(data) {
      localStorage?.setItem(SETTINGS_KEY, JSON.stringify(data));
    },

    /** The server token, kept in UXP's secure storage rather than with the settings. */
    async loadToken() {
      try {
        // secure-storage.md: getItem resolves with a Uint8Array; the panel stores UTF-8 bytes.
        const bytes = await uxp.storage.secureStorage.getItem(TOKEN_KEY);
        return bytes ? decodeUtf8(new Uint8Array(bytes)) : "";
      } catch {
        return "";
      }
    },

    /** @param {string} token */
    async saveToken(token) {
      const storage = uxp.storage.secureStorage;
      if (token) {
        // As UTF-8 bytes: how secure storage encodes a string value is undocumented.
        await storage.setItem(TOKEN_KEY, encodeUtf8(token));
      } else {
        await storage.removeItem(TOKEN_KEY).catch(() => {});
      }
    },

    /**
     * Register the panel's lifecycle (called once, at load).
     * @param {string} panelId
     * @param {{create: (root: any) => void, destroy?: () => void}} handlers
     */
    setupPanel(panelId, handlers) {
      uxp.entrypoints.setup({ panels: { [panelId]: handlers } });
    },
  };

  /** @returns {Promise<any>} the plugin's manifest.json */
  async function readManifest() {
    const { localFileSystem, formats } = uxp.storage;
    const folder = await localFileSystem.getPluginFolder();
    const entry = await folder.getEntry("manifest.json");
    return JSON.parse(await entry.read({ format: formats.utf8 }));
  }

  /**
   * The layout group of a scene: the active layer when it is a group, else the group holding
   * the active layer (classes/layer.md: `layers` of a group layer, `parent`).
   * @param {any} doc
   */
  function layoutGroup(doc) {
    const active = doc.activeLayers?.[0] ?? null;
    const group = active && String(active.kind) === GROUP ? active : active?.parent && String(active.parent.kind) === GROUP ? active.parent : null;
    if (!group) {
      throw new HostProblem(
        "Select the layout group: a group with one layer per object, each named after what it shows and painted where it goes.",
      );
    }
    return group;
  }

  /** @param {any} doc @returns {Rect|null} */
  function selectionBounds(doc) {
    let bounds = null;
    try {
      bounds = doc.selection ? doc.selection.bounds : null;
    } catch {
      return null; // Photoshop throws when nothing is selected.
    }
    if (!bounds || bounds.right <= bounds.left || bounds.bottom <= bounds.top) {
      return null;
    }
    return rectFromBounds(bounds);
  }

  return host;
}

/**
 * A layer's bounds, or null when reading them fails.
 * @param {any} layer
 * @returns {{left: number, top: number, right: number, bottom: number}|null}
 */
function safeBounds(layer) {
  try {
    const bounds = layer.bounds;
    return bounds && bounds.right > bounds.left && bounds.bottom > bounds.top ? bounds : null;
  } catch {
    return null;
  }
}

/**
 * A layer or group anywhere in the document by id, or null when it is gone.
 * @param {any} doc
 * @param {number} id
 * @returns {any}
 */
function findLayer(doc, id) {
  /** @type {any[]} */
  const stack = [...(doc.layers ?? [])];
  while (stack.length > 0) {
    const layer = stack.pop();
    if (layer.id === id) {
      return layer;
    }
    stack.push(...(layer.layers ?? []));
  }
  return null;
}

/**
 * The placed items that still exist, with their layers.
 * @param {any} doc
 * @param {Placed[]} placed
 * @returns {(Placed & {layer: any})[]}
 */
function live(doc, placed) {
  return placed.flatMap((item) => {
    const layer = findLayer(doc, item.id);
    return layer ? [{ ...item, layer }] : [];
  });
}

/**
 * The top-level layer that holds `layer` (itself when it is at the top level).
 * @param {any} layer
 * @returns {any}
 */
function topLevel(layer) {
  let current = layer;
  while (current && current.parent) {
    current = current.parent;
  }
  return current ?? null;
}

/**
 * A layer's painted (non-transparent) pixels as a mask (255 painted, 0 not), cropped to their
 * bounds; null when none is painted.
 * @param {{data: Uint8Array, width: number, height: number, rect: Rect}} pixels 8-bit RGBA over `rect`
 * @returns {{data: Uint8Array, width: number, height: number, rect: Rect}|null}
 */
function paintedMask({ data, width, height, rect }) {
  let [left, top, right, bottom] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4 + 3] > 0) {
        left = Math.min(left, x);
        right = Math.max(right, x);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
      }
    }
  }
  if (right < 0) {
    return null;
  }
  const out = { width: right - left + 1, height: bottom - top + 1 };
  const mask = new Uint8Array(out.width * out.height);
  for (let y = 0; y < out.height; y++) {
    for (let x = 0; x < out.width; x++) {
      mask[y * out.width + x] = data[((top + y) * width + left + x) * 4 + 3] > 0 ? 255 : 0;
    }
  }
  return { data: mask, ...out, rect: { left: rect.left + left, top: rect.top + top, ...out } };
}

/**
 * @template {import("./pixels").Channels} T
 * @param {T} bytes
 * @param {number} components
 * @returns {T}
 */
function firstChannel(bytes, components) {
  if (components === 1) {
    return bytes;
  }
  const out = /** @type {T} */ (new (/** @type {any} */ (bytes.constructor))(bytes.length / components));
  for (let i = 0; i < out.length; i++) {
    out[i] = bytes[i * components];
  }
  return out;
}

/** @param {Rect} rect */
function boundsOf(rect) {
  return { left: rect.left, top: rect.top, right: rect.left + rect.width, bottom: rect.top + rect.height };
}

/** @param {Rect} rect */
function size(rect) {
  return { width: rect.width, height: rect.height };
}

module.exports = { createHost, paintedMask, SRGB };
