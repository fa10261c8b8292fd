// @ts-check
/**
 * The HTTP client of the Acetate server (the event stream is src/events.js). No DOM, no
 * Photoshop: `fetch` is passed in (UXP's global in the panel, Node's in tests).
 *
 * Images go up as raw bytes in multipart parts (`application/octet-stream` with
 * `<field>_width`/`<field>_height`) and layers come down as raw RGBA (`?format=rgba`), so the
 * plugin never encodes or decodes PNG.
 */
"use strict";

const { ProtocolError, parseModes } = require("./protocol.js");
const { utf8, decodeUtf8 } = require("./utf8.js");

/** @typedef {import("./protocol").GenerateParameters} GenerateParameters */
/** @typedef {import("./protocol").JobRecord} JobRecord */
/** @typedef {import("./protocol").JobCreated} JobCreated */
/** @typedef {import("./protocol").Health} Health */
/** @typedef {import("./pixels").Raster} Raster */

/**
 * @typedef {Object} FetchResponse
 * @property {number} status
 * @property {boolean} ok
 * @property {{get(name: string): string|null}} headers
 * @property {() => Promise<ArrayBuffer>} arrayBuffer
 * @property {() => Promise<string>} text
 */
/** @typedef {(url: string, init?: {method?: string, headers?: Record<string, string>, body?: any}) => Promise<FetchResponse>} FetchLike */

/**
 * The header that proves a request is the panel's and not a web page's (a page cannot send a
 * custom header cross-origin without a CORS preflight, and the server refuses every preflight);
 * it lets the server admit whatever `Origin` UXP sends (none, `null`, a non-web scheme).
 */
const CLIENT_HEADER = "X-Acetate-Client";


const DEFAULT_TIMEOUT_MS = 30_000;
const UPLOAD_TIMEOUT_MS = 180_000;

/** The server answered with an error body `{"error": {code, message, field}}` (or a bare status). */
class ServerError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {string|null} [field]
   */
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The request never got an answer: server down, blocked by the manifest, or too slow. */
class NetworkError extends Error {
  /**
   * @param {"unreachable"|"timeout"} kind
   * @param {string} url
   * @param {string} message
   */
  constructor(kind, url, message) {
    super(message);
    this.kind = kind;
    this.url = url;
  }
}

/**
 * `http://host:port` without a trailing slash, or throws for anything else.
 * @param {string} url
 */
function normalizeBaseUrl(url) {
  const match = /^\s*(https?):\/\/([^/?#\s]+)\/*\s*$/i.exec(url);
  if (match === null) {
    throw new TypeError(`not a server address: ${JSON.stringify(url)} (expected http://host:port)`);
  }
  return `${match[1].toLowerCase()}://${match[2].toLowerCase()}`;
}

/**
 * `scheme://host:port` with the port made explicit, as manifest network entries are written.
 * @param {string} url
 */
function explicitOrigin(url) {
  const match = /^([a-z]+):\/\/([^/?#]+)/i.exec(url.trim());
  if (match === null) {
    return "";
  }
  const scheme = match[1].toLowerCase();
  const host = match[2].toLowerCase();
  const hasPort = /:\d+$/.test(host);
  const port = { http: 80, ws: 80, https: 443, wss: 443 }[scheme];
  return `${scheme}://${hasPort || port === undefined ? host : `${host}:${port}`}`;
}

/**
 * One multipart/form-data body as bytes (built by hand: identical in UXP and Node).
 * @param {{name: string, data: string|Uint8Array, contentType?: string}[]} parts
 * @param {string} boundary
 * @returns {Uint8Array}
 */
function encodeMultipart(parts, boundary) {
  /** @type {Uint8Array[]} */
  const chunks = [];
  for (const part of parts) {
    const binary = typeof part.data !== "string";
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`;
    head += binary ? `; filename="${part.name}.raw"\r\n` : "\r\n";
    head += `Content-Type: ${part.contentType ?? "text/plain; charset=utf-8"}\r\n\r\n`;
    chunks.push(utf8(head), typeof part.data === "string" ? utf8(part.data) : part.data);
    chunks.push(utf8("\r\n"));
  }
  chunks.push(utf8(`--${boundary}--\r\n`));
  const body = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/**
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {() => Error} onTimeout
 * @returns {Promise<T>}
 */
function withTimeout(promise, ms, onTimeout) {
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return /** @type {Promise<T>} */ (Promise.race([promise, timeout])).finally(() =>
    clearTimeout(timer),
  );
}

/** A job's layer as raw RGBA with its placement (from the `X-Acetate-*` headers). */
/**
 * A downloaded layer: 8-bit, or 16-bit (0..65535) straight RGBA at its place in the frame.
 * @typedef {{data: Uint8Array|Uint16Array, width: number, height: number, left: number, top: number, depth: 8|16}} LayerPixels
 */

class AcetateClient {
  /**
   * @param {{baseUrl: string, token?: string, fetch: FetchLike, timeoutMs?: number, client?: string}} options
   *   `client`: the `X-Acetate-Client` value, `photoshop/<plugin version>`
   */
  constructor({ baseUrl, token = "", fetch, timeoutMs = DEFAULT_TIMEOUT_MS, client = "photoshop/0" }) {
    this.baseUrl = normalizeBaseUrl(baseUrl);
    this.token = token.trim();
    this.fetch = fetch;
    this.timeoutMs = timeoutMs;
    this.client = client;
  }

  /**
   * A fresh WebSocket address: `?ticket=` from `POST /api/ws-ticket` (single use, so one per
   * connection attempt: the socket may open with `Origin: null`, which only a ticket admits),
   * plus `?token=` when a token is set (UXP cannot set WebSocket headers).
   * @returns {Promise<string>}
   */
  async socketUrl() {
    const { ticket } = await this.json("POST", "/api/ws-ticket");
    if (typeof ticket !== "string" || ticket === "") {
      throw new ProtocolError("POST /api/ws-ticket answered without a ticket");
    }
    const query = [`ticket=${encodeURIComponent(ticket)}`];
    if (this.token) {
      query.push(`token=${encodeURIComponent(this.token)}`);
    }
    return `${this.baseUrl.replace(/^http/, "ws")}/api/ws?${query.join("&")}`;
  }

  /**
   * One request; resolves with the response once its body has arrived, within the timeout.
   * @param {string} method
   * @param {string} path
   * @param {{body?: Uint8Array, contentType?: string, timeoutMs?: number}} [options]
   * @returns {Promise<{response: FetchResponse, body: ArrayBuffer}>}
   */
  async request(method, path, { body, contentType, timeoutMs = this.timeoutMs } = {}) {
    const url = this.baseUrl + path;
    /** @type {Record<string, string>} */
    const headers = { [CLIENT_HEADER]: this.client };
    if (this.token) {
      headers.Authorization = `Bearer ${this.token}`;
    }
    if (contentType) {
      headers["Content-Type"] = contentType;
    }
    const exchange = (async () => {
      let response;
      try {
        // UXP's fetch throws a TypeError when a GET or HEAD carries a `body` key at all
        // (uxp-api/reference-js/global-members/data-transfers/fetch.md): omit it.
        response = await this.fetch(url, body === undefined ? { method, headers } : { method, headers, body });
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new NetworkError("unreachable", url, `no answer from ${url}: ${reason}`);
      }
      return { response, body: await response.arrayBuffer() };
    })();
    const seconds = Math.round(timeoutMs / 100) / 10;
    const { response, body: received } = await withTimeout(
      exchange,
      timeoutMs,
      () => new NetworkError("timeout", url, `no answer from ${url} within ${seconds} s`),
    );
    if (!response.ok) {
      throw errorFromResponse(response.status, received);
    }
    return { response, body: received };
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {{body?: Uint8Array, contentType?: string, timeoutMs?: number}} [options]
   * @returns {Promise<any>}
   */
  async json(method, path, options) {
    const { body } = await this.request(method, path, options);
    if (body.byteLength === 0) {
      return null;
    }
    try {
      return JSON.parse(decodeText(body));
    } catch {
      throw new ProtocolError(`${method} ${path} answered with something that is not JSON`);
    }
  }

  /** @returns {Promise<Health>} */
  health() {
    return this.json("GET", "/api/health");
  }

  /** @returns {Promise<{bases: import("./protocol").BaseModelInfo[], layer_files?: import("./protocol").LayerFileInfo[], controlnets?: import("./structure").ControlNetInfo[],
   *   loras?: import("./loras").ModelFileInfo[], embeddings?: import("./loras").ModelFileInfo[], default_base?: string|null}>} */
  models() {
    return this.json("GET", "/api/models");
  }

  /**
   * Every mode's declaration (`GET /api/modes`); a server without it answers 404.
   * @returns {Promise<import("./protocol").ModeInfo[]>}
   */
  async modes() {
    return parseModes(await this.json("GET", "/api/modes"));
  }

  /**
   * Submit a job: the parameters as the `request` part, each image as a raw part (4 bytes a
   * pixel, 1 for the fields `kinds` marks as masks).
   * @param {GenerateParameters} params
   * @param {Partial<Record<string, Raster>>} images
   * @param {Record<string, "rgba"|"mask">} [kinds]
   * @returns {Promise<JobCreated>}
   */
  submit(params, images, kinds = {}) {
    /** @type {{name: string, data: string|Uint8Array, contentType?: string}[]} */
    const parts = [{ name: "request", data: JSON.stringify(params), contentType: "application/json" }];
    for (const [name, raster] of Object.entries(images)) {
      if (raster === undefined) {
        continue;
      }
      const channels = kinds[name] === "mask" ? 1 : 4;
      if (raster.data.length !== raster.width * raster.height * channels) {
        throw new RangeError(`${name}: ${raster.data.length} bytes do not make a ${raster.width}×${raster.height} image`);
      }
      parts.push({ name, data: raster.data, contentType: "application/octet-stream" });
      parts.push({ name: `${name}_width`, data: String(raster.width) });
      parts.push({ name: `${name}_height`, data: String(raster.height) });
    }
    const boundary = `acetate-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    return this.json("POST", "/api/jobs", {
      body: encodeMultipart(parts, boundary),
      contentType: `multipart/form-data; boundary=${boundary}`,
      timeoutMs: Math.max(this.timeoutMs, UPLOAD_TIMEOUT_MS),
    });
  }

  /**
   * @param {string} jobId
   * @returns {Promise<JobRecord>}
   */
  job(jobId) {
    return this.json("GET", `/api/jobs/${encodeURIComponent(jobId)}`);
  }

  /**
   * @param {string} clientId
   * @returns {Promise<JobRecord[]>}
   */
  async jobs(clientId) {
    const list = await this.json("GET", `/api/jobs?client_id=${encodeURIComponent(clientId)}`);
    return list.jobs;
  }

  /**
   * Cancel a queued or running job (deleting a finished one removes it from the server).
   * @param {string} jobId
   */
  async cancel(jobId) {
    await this.request("DELETE", `/api/jobs/${encodeURIComponent(jobId)}`);
  }

  /**
   * A layer as raw straight RGBA: 8-bit (`?format=rgba`), or with `depth` 16 little-endian
   * 16-bit values 0..65535 (`?format=rgba16`, `X-Acetate-Depth: 16`); its size must agree with
   * its headers.
   * @param {string} jobId
   * @param {string} file
   * @param {8|16} [depth]
   * @returns {Promise<LayerPixels>}
   */
  async layerPixels(jobId, file, depth = 8) {
    const format = depth === 16 ? "rgba16" : "rgba";
    const path = `/api/jobs/${encodeURIComponent(jobId)}/layers/${encodeURIComponent(file)}?format=${format}`;
    const { response, body } = await this.request("GET", path, { timeoutMs: Math.max(this.timeoutMs, UPLOAD_TIMEOUT_MS) });
    /** @param {string} name */
    const header = (name) => {
      const value = response.headers.get(`X-Acetate-${name}`);
      if (value === null || !/^-?\d+$/.test(value.trim())) {
        throw new ProtocolError(`layer ${file} came without a valid X-Acetate-${name} header`);
      }
      return Number(value);
    };
    const width = header("Width");
    const height = header("Height");
    const left = header("Left");
    const top = header("Top");
    const bytes = depth === 16 ? 8 : 4;
    if (width <= 0 || height <= 0 || body.byteLength !== width * height * bytes) {
      throw new ProtocolError(
        `layer ${file}: ${body.byteLength} bytes do not make a ${width}×${height} ${depth === 16 ? "16-bit " : ""}RGBA image`,
      );
    }
    if (depth === 8) {
      return { data: new Uint8Array(body), width, height, left, top, depth };
    }
    if (header("Depth") !== 16) {
      throw new ProtocolError(`layer ${file} came as ${response.headers.get("X-Acetate-Depth")}-bit, not 16-bit`);
    }
    const view = new DataView(body);
    const data = new Uint16Array(width * height * 4);
    for (let i = 0; i < data.length; i++) {
      data[i] = view.getUint16(i * 2, true);
    }
    return { data, width, height, left, top, depth };
  }

  /**
   * The job's layered PSD (the server writes it on the first request).
   * @param {string} jobId
   * @returns {Promise<ArrayBuffer>}
   */
  async psd(jobId) {
    const path = `/api/jobs/${encodeURIComponent(jobId)}/result.psd`;
    const { body } = await this.request("GET", path, { timeoutMs: Math.max(this.timeoutMs, UPLOAD_TIMEOUT_MS) });
    return body;
  }
}

/**
 * @param {ArrayBuffer} body
 * @returns {string}
 */
function decodeText(body) {
  return typeof TextDecoder === "function"
    ? new TextDecoder().decode(body)
    : decodeUtf8(new Uint8Array(body));
}

/**
 * @param {number} status
 * @param {ArrayBuffer} body
 */
function errorFromResponse(status, body) {
  try {
    const { error } = JSON.parse(decodeText(body));
    if (error && typeof error.message === "string") {
      return new ServerError(status, String(error.code ?? "error"), error.message, error.field ?? null);
    }
  } catch {
    // Not our JSON error body (e.g. a proxy's page): report the status alone.
  }
  return new ServerError(status, `http_${status}`, `the server answered HTTP ${status}`);
}

module.exports = {
  CLIENT_HEADER,
  AcetateClient,
  ServerError,
  NetworkError,
  normalizeBaseUrl,
  explicitOrigin,
  encodeMultipart,
  withTimeout,
};
