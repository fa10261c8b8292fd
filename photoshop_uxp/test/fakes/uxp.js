// @ts-check
/**
 * A fake `uxp` module for tests: storage folders backed by real directories (the plugin folder
 * is this repository's photoshop_uxp/), secure storage, entrypoints, and a localStorage.
 */
"use strict";

const fs = require("node:fs");
const path = require("node:path");

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
 * @param {{pluginDir: string, tempDir: string}} folders
 */
function createFakeUxp({ pluginDir, tempDir }) {
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
      secureStorage: {
        /** @param {string} key */
        async getItem(key) {
          const value = secrets.get(key);
          return value === undefined ? null : value.slice();
        },
        /** @param {string} key @param {string|Uint8Array} value */
        async setItem(key, value) {
          if (!value || value.length === 0) throw new Error("setItem: empty value");
          secrets.set(key, typeof value === "string" ? new Uint8Array(Buffer.from(value, "utf8")) : value.slice());
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
  return { uxp, localStorage, setups, secrets };
}

module.exports = { createFakeUxp, formats };
