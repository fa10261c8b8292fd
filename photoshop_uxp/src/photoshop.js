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
  fromBytes,
  intersect,
  placeInto,
  rectFromBounds,
  toBytes,
  toRgba,
} = require("./pixels.js");
const { neighbour } = require("./placement.js");
const { decodeUtf8 } = require("./utf8.js");

/** @typedef {import("./controller").Host} Host */
/** @typedef {import("./placement").DocumentInfo} DocumentInfo */
/** @typedef {import("./placement").DocumentPixels} DocumentPixels */
/** @typedef {import("./placement").Placed} Placed */
/** @typedef {import("./protocol").Rect} Rect */

const SRGB = "sRGB IEC61966-2.1";
const RGB_MODE = "RGBColorMode";
const SETTINGS_KEY = "acetate.settings";
const TOKEN_KEY = "acetate.token";
/** Before Photoshop 25.10 a second modal request fails at once instead of waiting. */
const MODAL_RETRIES = 8;
const MODAL_RETRY_MS = 250;

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
    for (let attempt = 0; ; attempt++) {
      try {
        return await core.executeAsModal(body, { commandName });
      } catch (error) {
        const busy = error instanceof Error && /modal state/i.test(error.message);
        if (!busy || attempt >= MODAL_RETRIES) {
          throw busy ? new HostProblem("Photoshop is busy with another command; try again.") : error;
        }
        await new Promise((resolve) => setTimeout(resolve, MODAL_RETRY_MS));
      }
    }
  }

  /** @param {any} doc @returns {DocumentInfo} */
  function describe(doc) {
    return {
      id: doc.id,
      name: doc.name,
      width: Math.round(Number(doc.width)),
      height: Math.round(Number(doc.height)),
      bits: documentBits(doc.bitsPerChannel),
    };
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
      const bytes = toBytes(data, imageData.componentSize);
      const pixels = kind === "rgba" ? toRgba(bytes, imageData.components) : firstChannel(bytes, imageData.components);
      return { data: pixels, rect: rectFromBounds(result.sourceBounds) };
    } finally {
      await imageData.dispose();
    }
  }

  const { constants } = photoshop;
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

    async readDocument({ composite = false, layer = false, selection = false }) {
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
      return modal("Acetate: read document", async () => {
        /** @type {DocumentPixels} */
        const out = { document: info };
        if (composite) {
          const read = await take(
            await imaging.getPixels({
              documentID: doc.id,
              colorSpace: "RGB",
              colorProfile: SRGB,
              componentSize: 8,
              applyAlpha: false,
            }),
            "rgba",
          );
          out.composite = { data: placeInto(read.data, read.rect, canvas, 4), ...size(canvas) };
        }
        if (active) {
          out.layer = null;
          const bounds = active.bounds;
          if (bounds && bounds.right > bounds.left && bounds.bottom > bounds.top) {
            const read = await take(
              await imaging.getPixels({
                documentID: doc.id,
                layerID: active.id,
                colorSpace: "RGB",
                colorProfile: SRGB,
                componentSize: 8,
                applyAlpha: false,
              }),
              "rgba",
            );
            const rect = intersect(read.rect, canvas);
            if (rect) {
              out.layer = { data: placeInto(read.data, read.rect, rect, 4), ...size(rect), rect };
            }
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
      // Converted before the modal scope so that Photoshop is blocked as briefly as possible.
      const channels = fromBytes(layer.data, documentBits(doc.bitsPerChannel));
      return modal(commandName, async (context) => {
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
          if (!layer.visible) {
            target.visible = false;
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
              // A result's first group goes at the top level, above what was active.
              const top = topLevel(anchor);
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
              // Already gone with its group.
            }
          }
          await context.hostControl.resumeHistory(suspension, false);
          throw error;
        }
      });
    },

    async removeLayers(documentId, ids, commandName) {
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
      await modal("Acetate: open PSD", async () => {
        await app.open(file);
      });
    },

    /** The manifest's network entries (what this build may connect to). */
    async allowedOrigins() {
      const { localFileSystem, formats } = uxp.storage;
      const folder = await localFileSystem.getPluginFolder();
      const entry = await folder.getEntry("manifest.json");
      const manifest = JSON.parse(await entry.read({ format: formats.utf8 }));
      const domains = manifest?.requiredPermissions?.network?.domains;
      return Array.isArray(domains) ? domains.map(String) : [];
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
        await storage.setItem(TOKEN_KEY, token);
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
 * @param {Uint8Array} bytes
 * @param {number} components
 */
function firstChannel(bytes, components) {
  if (components === 1) {
    return bytes;
  }
  const out = new Uint8Array(bytes.length / components);
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

module.exports = { createHost, SRGB };
