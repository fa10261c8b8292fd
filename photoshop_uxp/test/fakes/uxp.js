// @ts-check
/**
 * A fake `uxp` module for tests: storage folders backed by real directories (the plugin folder
 * is this repository's photoshop_uxp/), secure storage, entrypoints, a localStorage, and UXP's
 * network globals (`fetch`, `WebSocket`) on real sockets, sending the Origin / Sec-Fetch-*
 * headers a test chooses: no Adobe page says what UXP sends, so tests run every plausible
 * value (none, `null`, `file://`, `uxp://…`) against the real server.
 */
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const WS = require("ws");

const formats = { utf8: Symbol("utf8"), binary: Symbol("binary") };

class FakeFile {
  /** @param {string} nativePath */
  constructor(nativePath) {
    this.nativePath = nativePath;
    this.name = path.basename(nativePath);
    this.isFile = true;
  }
  /** @param {{format?: symbol}} [options] */
  async read(options = {}) {
    const bytes = fs.readFileSync(this.nativePath);
    if (options.format === formats.binary) {
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    }
    return bytes.toString("utf8");
  }
  /**
   * @param {string|ArrayBuffer|ArrayBufferView} data
   * @param {{format?: symbol}} [options]
   */
  async write(data, options = {}) {
    if (options.format === formats.binary) {
      if (typeof data === "string") throw new Error("write: binary format needs an ArrayBuffer");
      const view = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
      fs.writeFileSync(this.nativePath, view);
    } else {
      if (typeof data !== "string") throw new Error("write: utf8 format needs a string");
      fs.writeFileSync(this.nativePath, data, "utf8");
    }
  }
}

class FakeFolder {
  /** @param {string} nativePath */
  constructor(nativePath) {
    this.nativePath = nativePath;
    this.isFolder = true;
  }
  /** @param {string} name */
  async getEntry(name) {
    const target = path.join(this.nativePath, name);
    if (!fs.existsSync(target)) throw new Error(`no entry ${name}`);
    return new FakeFile(target);
  }
  /**
   * @param {string} name
   * @param {{overwrite?: boolean}} [options]
   */
  async createFile(name, options = {}) {
    if (name.includes("/") || name.includes("\\")) throw new Error("createFile: a name, not a path");
    const target = path.join(this.nativePath, name);
    if (fs.existsSync(target) && !options.overwrite) throw new Error(`createFile: ${name} exists`);
    fs.writeFileSync(target, "");
    return new FakeFile(target);
  }
}

/**
 * What the "real UXP" sends on every request and WebSocket upgrade, and what it may reach.
 * @typedef {Object} NetworkOptions
 * @property {string|null} [origin]  the `Origin` header; null/undefined: none (UXP's is
 *   undocumented: AdobeDocs/uxp-photoshop has no page on it; see the README smoke checklist)
 * @property {string|null} [secFetchSite]  `Sec-Fetch-Site`; none by default
 * @property {string|null} [secFetchMode]  `Sec-Fetch-Mode`; none by default
 * @property {string[]} [domains]  the manifest's `requiredPermissions.network.domains`
 */

/** @param {string} url */
function originOf(url) {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}`;
}

/**
 * UXP's `fetch` (uxp-api/reference-js/global-members/data-transfers/fetch.md) on node:http, so
 * that exactly the chosen headers go out (Node's own fetch adds `Sec-Fetch-Mode: cors`):
 * - "TypeError If init.body is set and init.method is either GET or HEAD" — a `body` key
 *   on a GET is refused even when undefined (the doc says "is set"; refusing the key is the
 *   strict reading);
 * - a URL outside the manifest's network domains fails like a network error (TypeError; the
 *   text real UXP uses, "Permission denied to the url … Manifest entry not found.", is from a
 *   third-party project note, see shared/reference/photoshop-uxp.md §3);
 * - a network failure is a TypeError ("Network error or timeout → TypeError", fetch.md).
 * @param {NetworkOptions} network
 * @param {{url: string, method: string, headers: Record<string, string>, hasBody: boolean}[]} log
 */
function makeFetch(network, log) {
  /**
   * @param {string} url
   * @param {{method?: string, headers?: Record<string, string>, body?: any}} [init]
   */
  return async function fetch(url, init = {}) {
    const method = (init.method ?? "GET").toUpperCase();
    const headers = { ...(init.headers ?? {}) };
    log.push({ url, method, headers, hasBody: "body" in init });
    if ("body" in init && (method === "GET" || method === "HEAD")) {
      throw new TypeError(`fetch: init.body is set on a ${method} request`);
    }
    if (network.domains && !network.domains.includes(originOf(url))) {
      throw new TypeError(`Permission denied to the url ${url}. Manifest entry not found.`);
    }
    if (network.origin != null) headers.Origin = network.origin;
    if (network.secFetchSite != null) headers["Sec-Fetch-Site"] = network.secFetchSite;
    if (network.secFetchMode != null) headers["Sec-Fetch-Mode"] = network.secFetchMode;
    const body = init.body === undefined ? null : typeof init.body === "string" ? Buffer.from(init.body, "utf8") : Buffer.from(init.body.buffer ?? init.body, init.body.byteOffset ?? 0, init.body.byteLength);
    if (body) headers["Content-Length"] = String(body.length);
    return new Promise((resolve, reject) => {
      const request = http.request(url, { method, headers }, (response) => {
        /** @type {Buffer[]} */
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("error", (error) => reject(new TypeError(error.message)));
        response.on("end", () => {
          const all = Buffer.concat(chunks);
          const bytes = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
          const status = response.statusCode ?? 0;
          resolve({
            status,
            ok: status >= 200 && status < 300,
            headers: { get: (/** @type {string} */ name) => {
              const value = response.headers[name.toLowerCase()];
              return value === undefined ? null : String(value);
            } },
            arrayBuffer: async () => bytes,
            text: async () => all.toString("utf8"),
            json: async () => JSON.parse(all.toString("utf8")),
          });
        });
      });
      request.on("error", (error) => reject(new TypeError(`Network request failed: ${error.message}`)));
      if (body) request.write(body);
      request.end();
    });
  };
}

/**
 * UXP's `WebSocket(url, protocols)` (uxp-api/reference-js/global-members/data-transfers/
 * web-socket.md): no way to add headers, so the token goes as `?token=` and the proof of being
 * the panel as `?ticket=`. The upgrade carries the chosen Origin / Sec-Fetch-* headers.
 * @param {NetworkOptions} network
 * @param {string[]} log
 */
function makeWebSocket(network, log) {
  return class UxpWebSocket extends WS {
    /** @param {string} url @param {string|string[]} [protocols] */
    constructor(url, protocols) {
      /** @type {Record<string, string>} */
      const headers = {};
      if (network.origin != null) headers.Origin = network.origin;
      if (network.secFetchSite != null) headers["Sec-Fetch-Site"] = network.secFetchSite;
      if (network.secFetchMode != null) headers["Sec-Fetch-Mode"] = network.secFetchMode;
      if (network.domains && !network.domains.includes(originOf(url))) {
        throw new Error(`Permission denied to the url ${url}. Manifest entry not found.`);
      }
      super(url, protocols, { headers });
      log.push(url);
    }
  };
}

/**
 * @param {{pluginDir: string, tempDir: string, network?: NetworkOptions}} folders
 */
function createFakeUxp({ pluginDir, tempDir, network = {} }) {
  /** @type {{url: string, method: string, headers: Record<string, string>, hasBody: boolean}[]} */
  const requests = [];
  /** @type {string[]} */
  const sockets = [];
  /** @type {Map<string, Uint8Array>} */
  const secrets = new Map();
  /** @type {Map<string, string>} */
  const local = new Map();
  /** @type {any[]} */
  const setups = [];
  const uxp = {
    host: { name: "Photoshop", version: "25.0.0" },
    entrypoints: {
      /** @param {any} entrypoints */
      setup(entrypoints) {
        if (setups.length > 0) throw new Error("entrypoints.setup can only be called once");
        setups.push(entrypoints);
      },
    },
    storage: {
      formats,
      localFileSystem: {
        getTemporaryFolder: async () => new FakeFolder(tempDir),
        getPluginFolder: async () => new FakeFolder(pluginDir),
        getDataFolder: async () => new FakeFolder(tempDir),
      },
      // uxp-api/reference-js/modules/uxp/key-value-storage/secure-storage.md: setItem takes
      // `string | ArrayBuffer | TypedArray` and rejects an empty value; getItem resolves with a
      // Uint8Array. How a *string* is turned into bytes is not documented: the fake stores
      // UTF-16LE code units so that a plugin relying on UTF-8 for strings would fail here (the
      // plugin stores UTF-8 bytes itself; README smoke checklist).
      secureStorage: {
        /** @param {string} key */
        async getItem(key) {
          const value = secrets.get(key);
          return value === undefined ? null : value.slice();
        },
        /** @param {string} key @param {string|ArrayBuffer|ArrayBufferView} value */
        async setItem(key, value) {
          if (typeof key !== "string") throw new TypeError("setItem: the key must be a string");
          /** @type {Uint8Array} */
          let bytes;
          if (typeof value === "string") bytes = new Uint8Array(Buffer.from(value, "utf16le"));
          else if (value instanceof ArrayBuffer) bytes = new Uint8Array(value.slice(0));
          else if (ArrayBuffer.isView(value)) bytes = new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
          else throw new TypeError("setItem: the value must be a string, ArrayBuffer or TypedArray");
          if (bytes.length === 0) throw new Error("setItem: empty value");
          secrets.set(key, bytes);
        },
        /** @param {string} key */
        async removeItem(key) {
          if (!secrets.delete(key)) throw new Error("removeItem: no such key");
        },
      },
    },
  };
  const localStorage = {
    /** @param {string} key */
    getItem: (key) => local.get(key) ?? null,
    /** @param {string} key @param {string} value */
    setItem: (key, value) => void local.set(key, String(value)),
  };
  const fetch = makeFetch(network, requests);
  const WebSocket = makeWebSocket(network, sockets);
  return { uxp, localStorage, setups, secrets, fetch, WebSocket, network, requests, sockets };
}

module.exports = { createFakeUxp, formats };
