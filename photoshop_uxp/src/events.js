// @ts-check
/**
 * The event stream of the Acetate server (`/api/ws`). No DOM, no Photoshop: the `WebSocket`
 * class is passed in (UXP's global in the panel, the `ws` package in tests).
 */
"use strict";

const { parseEvent } = require("./protocol.js");

/** @typedef {import("./protocol").JobEvent} JobEvent */

/**
 * The part of the WebSocket interface used here (UXP's and the `ws` package's agree on it).
 * @typedef {Object} SocketLike
 * @property {number} readyState
 * @property {string} binaryType
 * @property {((event: {data: any}) => void)|null} onmessage
 * @property {((event: any) => void)|null} onopen
 * @property {((event: any) => void)|null} onclose
 * @property {((event: any) => void)|null} onerror
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 */
/** @typedef {new (url: string) => SocketLike} SocketClass */

/**
 * The event stream of `/api/ws`: reconnects with backoff, re-subscribes after each reconnect
 * (the server then re-sends each job's current state), and pairs every `preview` message
 * with the binary frame that follows it.
 */
class EventSocket {
  /**
   * @param {{url: string|(() => Promise<string>), WebSocket: SocketClass, onEvent: (event: JobEvent) => void,
   *   onStatus?: (status: "connecting"|"open"|"closed", detail?: string) => void,
   *   connectTimeoutMs?: number, minBackoffMs?: number, maxBackoffMs?: number}} options
   */
  constructor({
    url,
    WebSocket,
    onEvent,
    onStatus = () => {},
    connectTimeoutMs = 10_000,
    minBackoffMs = 500,
    maxBackoffMs = 8_000,
  }) {
    this.url = url;
    this.WebSocket = WebSocket;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.connectTimeoutMs = connectTimeoutMs;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    /** @type {Set<string>} */
    this.jobs = new Set();
    /** @type {SocketLike|null} */
    this.socket = null;
    this.backoffMs = minBackoffMs;
    this.stopped = true;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.timer = undefined;
    /** @type {any} */
    this.pendingPreview = null;
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === 1;
  }

  /** Start connecting (and keep reconnecting until `close`). */
  open() {
    if (!this.stopped) {
      return;
    }
    this.stopped = false;
    void this.connect();
  }

  /** Stop for good: no more reconnects. */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      detach(socket);
      socket.close(1000, "closed by the panel");
    }
    this.onStatus("closed");
  }

  /** @param {string[]} jobIds */
  subscribe(jobIds) {
    jobIds.forEach((id) => this.jobs.add(id));
    this.send({ type: "subscribe", jobs: jobIds });
  }

  /** @param {string[]} jobIds */
  unsubscribe(jobIds) {
    jobIds.forEach((id) => this.jobs.delete(id));
    this.send({ type: "unsubscribe", jobs: jobIds });
  }

  /** @param {object} message */
  send(message) {
    if (this.isOpen && this.socket !== null) {
      this.socket.send(JSON.stringify(message));
    }
  }

  /**
   * Connect once. `url` may be a function giving a fresh address per attempt (the server's
   * WebSocket tickets are single-use).
   * @private
   */
  async connect() {
    this.onStatus("connecting");
    /** @type {string} */
    let url;
    try {
      url = typeof this.url === "function" ? await this.url() : this.url;
    } catch (error) {
      this.retry(error instanceof Error ? error.message : String(error));
      return;
    }
    if (this.stopped || this.socket !== null) {
      return;
    }
    /** @type {SocketLike} */
    let socket;
    try {
      socket = new this.WebSocket(url);
    } catch (error) {
      this.retry(error instanceof Error ? error.message : String(error));
      return;
    }
    this.socket = socket;
    this.pendingPreview = null;
    socket.binaryType = "arraybuffer";
    const timer = setTimeout(() => {
      detach(socket);
      socket.close();
      this.retry(`no WebSocket connection within ${this.connectTimeoutMs / 1000} s`);
    }, this.connectTimeoutMs);
    socket.onopen = () => {
      clearTimeout(timer);
      this.backoffMs = this.minBackoffMs;
      this.onStatus("open");
      if (this.jobs.size > 0) {
        this.send({ type: "subscribe", jobs: [...this.jobs] });
      }
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onerror = () => {};
    socket.onclose = (event) => {
      clearTimeout(timer);
      detach(socket);
      const reason = event && event.code ? `closed (${event.code}${event.reason ? `: ${event.reason}` : ""})` : "closed";
      this.retry(reason);
    };
  }

  /**
   * @private
   * @param {string} detail
   */
  retry(detail) {
    this.socket = null;
    if (this.stopped) {
      return;
    }
    this.onStatus("closed", detail);
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.timer = setTimeout(() => {
      if (!this.stopped) {
        void this.connect();
      }
    }, delay);
  }

  /**
   * @private
   * @param {unknown} data
   */
  receive(data) {
    if (typeof data === "string") {
      let event;
      try {
        event = parseEvent(data);
      } catch (error) {
        console.warn("Acetate: ignoring a WebSocket message:", error instanceof Error ? error.message : error);
        return;
      }
      if (event.type === "preview") {
        this.pendingPreview = event;
        return;
      }
      this.pendingPreview = null;
      this.onEvent(event);
    } else if (this.pendingPreview !== null) {
      const event = this.pendingPreview;
      this.pendingPreview = null;
      this.onEvent({ ...event, image: toArrayBuffer(data) });
    }
  }
}

/** @param {SocketLike} socket */
function detach(socket) {
  socket.onopen = socket.onmessage = socket.onclose = null;
  socket.onerror = () => {};
}

/**
 * @param {unknown} data
 * @returns {ArrayBuffer}
 */
function toArrayBuffer(data) {
  if (data instanceof ArrayBuffer) {
    return data;
  }
  if (ArrayBuffer.isView(data)) {
    return Uint8Array.prototype.slice.call(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)).buffer;
  }
  return new ArrayBuffer(0);
}

module.exports = { EventSocket };
