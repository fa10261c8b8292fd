"use strict";
// The manifest (v5, least privilege, files that exist) and the source layout rules: only the
// adapter requires photoshop/uxp, imports go one way, no code generation from strings.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const { PLUGIN_DIR } = require("./helpers.js");
const { createFakePhotoshop } = require("./fakes/photoshop.js");
const { createFakeUxp } = require("./fakes/uxp.js");
const { DEFAULT_PORT } = require("../src/protocol.js");

const manifest = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8"));

/** Every shipped JavaScript file, relative to the plugin folder. */
function sourceFiles() {
  /** @type {string[]} */
  const out = ["main.js"];
  const walk = (/** @type {string} */ dir) => {
    for (const entry of fs.readdirSync(path.join(PLUGIN_DIR, dir), { withFileTypes: true })) {
      const relative = path.posix.join(dir, entry.name);
      if (entry.isDirectory()) walk(relative);
      else if (entry.name.endsWith(".js")) out.push(relative);
    }
  };
  walk("src");
  return out.sort();
}

/** @param {string} file @returns {string[]} the require() arguments in a file */
function requiresOf(file) {
  const text = fs.readFileSync(path.join(PLUGIN_DIR, file), "utf8");
  return [...text.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
}

test("manifest v5 for Photoshop 25+ with DOM API v2", () => {
  assert.equal(manifest.manifestVersion, 5);
  assert.equal(manifest.host.app, "PS");
  assert.equal(manifest.host.minVersion, "25.0.0");
  assert.equal(manifest.host.data.apiVersion, 2);
  assert.match(manifest.id, /^[a-z0-9.]+$/);
  assert.match(manifest.version, /^\d+\.\d+\.\d+$/);
  const pkg = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "package.json"), "utf8"));
  assert.equal(pkg.version, manifest.version, "package.json and manifest.json agree on the version");
});

test("network entries: exactly http:// and ws:// for 127.0.0.1 and localhost on the default port", () => {
  assert.deepEqual(manifest.requiredPermissions.network.domains, [
    `http://127.0.0.1:${DEFAULT_PORT}`,
    `ws://127.0.0.1:${DEFAULT_PORT}`,
    `http://localhost:${DEFAULT_PORT}`,
    `ws://localhost:${DEFAULT_PORT}`,
  ]);
  for (const entry of manifest.requiredPermissions.network.domains) {
    assert.match(entry, /^(http|ws):\/\/(127\.0\.0\.1|localhost):\d+$/, "no wildcard, no 'all', no https");
  }
});

test("no permission beyond the network and the plugin's own folders", () => {
  assert.deepEqual(Object.keys(manifest.requiredPermissions).sort(), ["localFileSystem", "network"]);
  assert.equal(manifest.requiredPermissions.localFileSystem, "plugin");
  for (const key of ["launchProcess", "clipboard", "webview", "ipc", "allowCodeGenerationFromStrings", "enableUserInfo"]) {
    assert.ok(!(key in manifest.requiredPermissions), `${key} is not requested`);
  }
});

test("every file the manifest and index.html reference exists", () => {
  assert.ok(fs.existsSync(path.join(PLUGIN_DIR, manifest.main)));
  const icons = [...manifest.icons, ...manifest.entrypoints.flatMap((entry) => entry.icons ?? [])];
  assert.ok(icons.length >= 3);
  for (const icon of icons) {
    const { dir, name, ext } = path.parse(icon.path);
    for (const scale of icon.scale) {
      const file = path.join(PLUGIN_DIR, dir, scale === 1 ? `${name}${ext}` : `${name}@${scale}x${ext}`);
      assert.ok(fs.existsSync(file), `${file} exists`);
      const png = fs.readFileSync(file);
      assert.equal(png.readUInt32BE(16), icon.width * scale, `${file} is ${icon.width * scale} px wide`);
      assert.equal(png.readUInt32BE(20), icon.height * scale);
    }
  }
  const html = fs.readFileSync(path.join(PLUGIN_DIR, manifest.main), "utf8");
  const referenced = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(referenced.sort(), ["main.js", "styles.css"]);
  referenced.forEach((file) => assert.ok(fs.existsSync(path.join(PLUGIN_DIR, file))));
});

test("the panel entrypoint id is the one main.js registers", () => {
  const panels = manifest.entrypoints.filter((entry) => entry.type === "panel");
  assert.equal(panels.length, 1);
  assert.equal(manifest.entrypoints.length, 1);
  // Load main.js with the fake modules in place of Photoshop's and see what it registers.
  const { photoshop } = createFakePhotoshop();
  const fake = createFakeUxp({ pluginDir: PLUGIN_DIR, tempDir: PLUGIN_DIR });
  const Module = require("node:module");
  const original = Module._load;
  Module._load = function (/** @type {string} */ request, /** @type {any[]} */ ...rest) {
    if (request === "photoshop") return photoshop;
    if (request === "uxp") return fake.uxp;
    return original.call(this, request, ...rest);
  };
  try {
    delete require.cache[require.resolve("../main.js")];
    require("../main.js");
  } finally {
    Module._load = original;
  }
  assert.equal(fake.setups.length, 1);
  assert.deepEqual(Object.keys(fake.setups[0].panels), [panels[0].id]);
  assert.equal(typeof fake.setups[0].panels[panels[0].id].create, "function");
});

test("only src/photoshop.js requires photoshop or uxp", () => {
  for (const file of sourceFiles()) {
    const hostModules = [...new Set(requiresOf(file).filter((name) => name === "photoshop" || name === "uxp"))].sort();
    assert.deepEqual(hostModules, file === "src/photoshop.js" ? ["photoshop", "uxp"] : [], file);
  }
});

test("imports go one way and resolve to shipped files", () => {
  // Lower layers never import higher ones: protocol/modes/utf8/errors/pixels/sources/insertion ←
  // client/events/jobs/settings/state/placement/layerfiles/structure/loras ← landing/messages
  // ← controller ← main; ui/ sees settings, modes and the pickers' pure logic (layerfiles,
  // structure, sources, loras, insertion) only; photoshop.js (the adapter) only uses the lowest
  // layers and placement's pure order.
  const allowed = {
    "src/protocol.js": [],
    "src/modes.js": [],
    "src/utf8.js": [],
    "src/errors.js": [],
    "src/pixels.js": [],
    "src/sources.js": [],
    "src/insertion.js": [],
    "src/client.js": ["src/protocol.js", "src/utf8.js"],
    "src/events.js": ["src/protocol.js"],
    "src/jobs.js": ["src/protocol.js"],
    "src/settings.js": ["src/errors.js", "src/modes.js", "src/protocol.js"],
    "src/state.js": [],
    "src/layerfiles.js": [],
    "src/structure.js": ["src/errors.js", "src/layerfiles.js", "src/pixels.js", "src/sources.js"],
    "src/loras.js": ["src/errors.js", "src/layerfiles.js"],
    "src/placement.js": ["src/errors.js", "src/modes.js", "src/pixels.js"],
    "src/messages.js": ["src/client.js", "src/errors.js", "src/protocol.js", "src/settings.js"],
    "src/landing.js": ["src/modes.js", "src/placement.js", "src/protocol.js"],
    "src/controller.js": [
      "src/client.js", "src/errors.js", "src/events.js", "src/insertion.js", "src/jobs.js",
      "src/landing.js", "src/layerfiles.js", "src/loras.js", "src/messages.js", "src/modes.js",
      "src/placement.js", "src/protocol.js", "src/settings.js", "src/sources.js", "src/state.js",
      "src/structure.js",
    ],
    "src/photoshop.js": ["src/errors.js", "src/pixels.js", "src/placement.js", "src/utf8.js"],
    "src/ui/panel.js": ["src/layerfiles.js", "src/modes.js", "src/settings.js", "src/structure.js", "src/ui/pickers.js"],
    "src/ui/pickers.js": ["src/insertion.js", "src/loras.js", "src/sources.js"],
    "main.js": ["src/controller.js", "src/photoshop.js", "src/settings.js", "src/state.js", "src/ui/panel.js"],
  };
  assert.deepEqual(sourceFiles(), Object.keys(allowed).sort());
  for (const [file, permitted] of Object.entries(allowed)) {
    const local = requiresOf(file)
      .filter((name) => name.startsWith("."))
      .map((name) => path.posix.normalize(path.posix.join(path.posix.dirname(file), name)));
    local.forEach((target) => assert.ok(fs.existsSync(path.join(PLUGIN_DIR, target)), `${file} → ${target}`));
    assert.deepEqual([...new Set(local)].sort(), permitted, file);
    const external = requiresOf(file).filter((name) => !name.startsWith(".") && name !== "photoshop" && name !== "uxp");
    assert.deepEqual(external, [], `${file} uses no other package (UXP has no node_modules)`);
  }
});

test("no code generation from strings, and every file is type-checked", () => {
  for (const file of sourceFiles()) {
    const text = fs.readFileSync(path.join(PLUGIN_DIR, file), "utf8");
    assert.doesNotMatch(text, /\beval\s*\(|new\s+Function\s*\(/, file);
    assert.match(text, /^\/\/ @ts-check\n/, `${file} starts with // @ts-check`);
  }
});
