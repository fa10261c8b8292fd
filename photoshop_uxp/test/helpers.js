// @ts-check
/**
 * Test helpers: the real Acetate server on a free port (tiny models), Python for independent
 * checks (PNG decoding, zip listing), and the plugin wired to the fakes.
 */
"use strict";

const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const { createFakePhotoshop } = require("./fakes/photoshop.js");
const { createFakeUxp } = require("./fakes/uxp.js");
const { Controller } = require("../src/controller.js");
const { createHost } = require("../src/photoshop.js");
const { defaultSettings } = require("../src/settings.js");
const { createStore } = require("../src/state.js");

const PLUGIN_DIR = path.resolve(__dirname, "..");
const REPO_DIR = path.resolve(PLUGIN_DIR, "..");

/** The Python with `acetate` installed: $ACETATE_PYTHON, else the repo's .venv. */
function pythonPath() {
  const candidates = [process.env.ACETATE_PYTHON, path.join(REPO_DIR, ".venv", "bin", "python")];
  return candidates.find((candidate) => candidate && fs.existsSync(candidate)) ?? null;
}

/** Why tests needing Python are skipped, or false when they can run. */
function skipWithoutPython() {
  return pythonPath() ? false : "no Python with acetate: set ACETATE_PYTHON (make test-node does)";
}

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(address.port));
    });
  });
}

/** @type {string[]} */
const tempDirs = [];
process.once("exit", () => tempDirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/**
 * A fresh temporary folder, removed when the test process exits.
 * @param {string} prefix
 */
function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `acetate-uxp-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

/**
 * Start `acetate serve` on a free port and wait for GET /api/health. `env` adds environment
 * variables (e.g. `ACETATE_EXTRA_MODES`; the repository root is then put on PYTHONPATH so
 * that `tests.support` imports).
 * @param {{args?: string[], timeoutMs?: number, env?: Record<string, string>}} [options]
 */
async function startServer({ args = [], timeoutMs = 180_000, env = {} } = {}) {
  const python = pythonPath();
  if (!python) {
    throw new Error("no Python with acetate");
  }
  const port = await freePort();
  const root = tempDir("server");
  const log = path.join(root, "server.log");
  const out = fs.openSync(log, "w");
  const child = spawn(
    python,
    ["-m", "acetate", "serve", "--port", String(port), "--models-dir", path.join(root, "models"), "--output-dir", path.join(root, "out"), ...args],
    {
      stdio: ["ignore", out, out],
      env: {
        ...process.env,
        HF_HUB_OFFLINE: "1",
        ACETATE_TOKEN: "",
        ...(Object.keys(env).length > 0
          ? { PYTHONPATH: [REPO_DIR, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) }
          : {}),
        ...env,
      },
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const headers = args.includes("--token") ? { Authorization: `Bearer ${args[args.indexOf("--token") + 1]}` } : {};
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`acetate serve exited with ${child.exitCode}:\n${fs.readFileSync(log, "utf8")}`);
    }
    let response = null;
    try {
      response = await fetch(`${url}/api/health`, { headers });
    } catch {
      // Not listening yet.
    }
    if (response?.ok) {
      break;
    }
    if (response) {
      child.kill();
      throw new Error(`GET /api/health answered ${response.status}: ${await response.text()}\n${fs.readFileSync(log, "utf8")}`);
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`acetate serve did not answer within ${timeoutMs / 1000} s:\n${fs.readFileSync(log, "utf8")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return {
    url,
    port,
    root,
    log: () => fs.readFileSync(log, "utf8"),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      fs.closeSync(out);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Decode a PNG with Pillow (independent of the plugin) into 8-bit RGBA.
 * @param {Uint8Array} png
 */
function decodePngWithPython(png) {
  const script =
    "import sys, numpy as np; from PIL import Image; import io;" +
    "im = Image.open(io.BytesIO(sys.stdin.buffer.read())); a = np.asarray(im.convert('RGBA'));" +
    "sys.stdout.buffer.write(b'%d %d\\n' % (a.shape[1], a.shape[0]) + a.tobytes())";
  const result = spawnSync(/** @type {string} */ (pythonPath()), ["-c", script], { input: png, maxBuffer: 1 << 28 });
  if (result.status !== 0) {
    throw new Error(`python failed: ${result.stderr}`);
  }
  const newline = result.stdout.indexOf(10);
  const [width, height] = result.stdout.subarray(0, newline).toString().split(" ").map(Number);
  return { width, height, data: new Uint8Array(result.stdout.subarray(newline + 1)) };
}

/**
 * The plugin's real host + controller on the fake Photoshop, against a server URL.
 * The network goes through the fake UXP's `fetch`/`WebSocket` (real sockets, with the Origin and
 * Sec-Fetch-* headers `network` chooses) unless `fetch` replaces it.
 * @param {{serverUrl: string, token?: string, allowed?: string[], fetch?: any, requestTimeoutMs?: number, eventTimeoutMs?: number,
 *   network?: import("./fakes/uxp").NetworkOptions}} options
 */
function createPlugin({ serverUrl, token = "", allowed, fetch: fetchImpl, requestTimeoutMs, eventTimeoutMs, network = {} }) {
  const { photoshop, world } = createFakePhotoshop();
  const temp = tempDir("plugin-temp");
  const port = /:(\d+)$/.exec(serverUrl)?.[1] ?? "80";
  const origins = allowed ?? ["127.0.0.1", "localhost"].flatMap((name) => [`http://${name}:${port}`, `ws://${name}:${port}`]);
  const fakeUxp = createFakeUxp({ pluginDir: PLUGIN_DIR, tempDir: temp, network: { domains: origins, ...network } });
  const { uxp, localStorage } = fakeUxp;
  const host = createHost({ photoshop, uxp, localStorage });
  const store = createStore({ ...defaultSettings(serverUrl), values: { decode: "fast" } }, token);
  /** @type {{url: string, inModal: boolean}[]} */
  const requests = [];
  const baseFetch = fetchImpl ?? fakeUxp.fetch;
  const version = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8")).version;
  const controller = new Controller({
    version,
    host,
    store,
    allowed: origins,
    // Records whether any request was made while Photoshop was held modal (it must not be).
    fetch: (/** @type {string} */ url, /** @type {any} */ init) => {
      requests.push({ url, inModal: world.inModal });
      return baseFetch(url, init);
    },
    WebSocket: fakeUxp.WebSocket,
    requestTimeoutMs,
    eventTimeoutMs,
  });
  /**
   * Change settings as the panel would; `values` and `lists` are merged into the current ones.
   * @param {Partial<import("../src/settings").Settings>} patch
   */
  const configure = (patch) => {
    const { settings } = store.state;
    store.update({
      settings: {
        ...settings,
        ...patch,
        values: { ...settings.values, ...(patch.values ?? {}) },
        lists: { ...settings.lists, ...(patch.lists ?? {}) },
      },
    });
  };
  return { photoshop, world, host, store, controller, requests, configure, temp, uxp: fakeUxp };
}

/**
 * A deterministic 8-bit RGBA test image.
 * @param {number} width
 * @param {number} height
 * @param {number} [seed]
 */
function testImage(width, height, seed = 1) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < data.length; i++) {
    data[i] = (i * 37 + seed * 101 + ((i * i) % 251)) & 255;
  }
  for (let p = 0; p < width * height; p++) {
    data[p * 4 + 3] = 255;
  }
  return { data, width, height };
}

/** The committed copy of the built-in modes (`GET /api/modes` of a server without extras). */
function builtinModes() {
  return JSON.parse(fs.readFileSync(path.join(REPO_DIR, "tests", "data", "modes.json"), "utf8"));
}

/**
 * `dummy_parts` as the server publishes it with ACETATE_EXTRA_MODES=tests.support.dummy_mode
 * (a copy for unit tests; the real-server test reads the server's own answer).
 * @returns {import("../src/protocol").ModeInfo}
 */
function dummyModeInfo() {
  return JSON.parse(DUMMY_MODE);
}
const DUMMY_MODE = JSON.stringify({"name": "dummy_parts", "label": "Parts over the canvas (test mode)", "help": "One transparent layer per listed part, over the canvas.", "prompt_required": false, "inputs": [{"field": "canvas", "label": "Canvas", "help": "The artwork the parts go over.", "kind": "rgba", "source": "canvas", "required": true, "frame": true}], "lists": [{"field": "parts", "label": "Parts", "help": "What each part shows, bottom to top.", "min_items": 1, "max_items": 4, "item_options": [{"name": "prompt", "label": "Prompt", "help": "What this part shows.", "type": "text", "default": "", "advanced": false}, {"name": "seed", "label": "Seed", "help": "This part's own seed.", "type": "int", "minimum": 0.0, "advanced": false}], "item_images": []}], "frame": "canvas", "layers": [{"name": "part_{i}", "label": "Part", "visible": true, "keeps_alpha": true, "count_from": "parts"}, {"name": "blended", "label": "Blended", "visible": false, "keeps_alpha": false}], "options": [{"name": "negative_prompt", "label": "Negative prompt", "help": "What the image should not show.", "type": "text", "default": "", "max_length": 4000, "advanced": false}, {"name": "steps", "label": "Steps", "help": "Denoising steps per stage.", "type": "int", "family_defaults": {"sdxl": 20, "sd15": 20}, "minimum": 1.0, "maximum": 150.0, "advanced": false}, {"name": "cfg", "label": "CFG scale", "help": "How strongly the prompt steers the image.", "type": "float", "family_defaults": {"sdxl": 5.0, "sd15": 7.0}, "minimum": 0.0, "maximum": 30.0, "advanced": false}, {"name": "decode", "label": "Alpha decoding", "help": "tta: 8 flipped and rotated passes, cleanest edges; fast: one pass.", "type": "enum", "default": "tta", "choices": ["tta", "fast"], "advanced": false}], "families": [{"family": "sdxl", "label": "SDXL", "supported": true, "stages": [{"name": "first", "label": "The first part", "stop_at": 1.0, "takes_stop_at": true}, {"name": "second", "label": "The other parts", "stop_at": 1.0, "takes_stop_at": true}]}, {"family": "sd15", "label": "SD1.5", "supported": true, "stages": [{"name": "first", "label": "The first part", "stop_at": 1.0, "takes_stop_at": true}, {"name": "second", "label": "The other parts", "stop_at": 1.0, "takes_stop_at": true}]}]});

/**
 * An empty document on linkedom for mounting the panel. UXP implements
 * `HTMLSelectElement.value` as browsers do; linkedom does not, so it is added here.
 * @returns {{ document: any, window: any }}
 */
function panelDom() {
  const { parseHTML } = require("linkedom");
  const { document, window } = parseHTML("<html><body></body></html>");
  Object.defineProperty(window.HTMLSelectElement.prototype, "value", {
    get() {
      const options = [...this.querySelectorAll("option")];
      return (options.find((o) => o.hasAttribute("selected")) ?? options[0])?.getAttribute("value") ?? "";
    },
    set(value) {
      for (const option of this.querySelectorAll("option")) {
        if (option.getAttribute("value") === value) option.setAttribute("selected", "");
        else option.removeAttribute("selected");
      }
    },
  });
  return { document, window };
}

module.exports = {
  builtinModes,
  dummyModeInfo,
  PLUGIN_DIR,
  REPO_DIR,
  pythonPath,
  skipWithoutPython,
  freePort,
  tempDir,
  startServer,
  decodePngWithPython,
  createPlugin,
  testImage,
  panelDom,
};
