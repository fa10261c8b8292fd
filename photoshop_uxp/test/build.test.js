"use strict";
// `make photoshop-plugin` → photoshop_uxp/build.py: the .ccx's contents, modes and manifest.
const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const { PLUGIN_DIR, pythonPath, skipWithoutPython, tempDir } = require("./helpers.js");

const skip = skipWithoutPython();

/** @param {string[]} args */
function build(args) {
  return spawnSync(/** @type {string} */ (pythonPath()), [path.join(PLUGIN_DIR, "build.py"), ...args], { encoding: "utf8" });
}

/** List a zip with Python's zipfile (an independent reader): name, mode, compress type. */
function listZip(/** @type {string} */ file) {
  const script =
    "import json, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]);" +
    "print(json.dumps([[i.filename, i.external_attr >> 16, i.create_system] for i in z.infolist()]));" +
    "print(json.dumps(json.loads(z.read('manifest.json'))))";
  const result = spawnSync(/** @type {string} */ (pythonPath()), ["-c", script, file], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  const [entries, manifest] = result.stdout.trim().split("\n").map((line) => JSON.parse(line));
  return { entries, manifest };
}

test("the .ccx holds the panel with manifest.json at its root, normal modes, no tests or node_modules", { skip }, () => {
  const out = tempDir("build");
  const result = build(["--out", out]);
  assert.equal(result.status, 0, result.stderr);
  const version = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8")).version;
  const ccx = path.join(out, `acetate-photoshop-${version}.ccx`);
  assert.match(result.stdout, new RegExp(`wrote .*acetate-photoshop-${version}\\.ccx`));
  const { entries, manifest } = listZip(ccx);
  const names = entries.map((entry) => entry[0]);
  const files = names.filter((name) => !name.endsWith("/"));
  assert.deepEqual(
    files.filter((name) => !name.startsWith("src/") && !name.startsWith("icons/")).sort(),
    ["index.html", "main.js", "manifest.json", "styles.css"],
  );
  assert.ok(files.includes("src/controller.js") && files.includes("src/ui/panel.js") && files.includes("icons/icon@2x.png"));
  // Everything the panel loads is in the archive: every shipped source file and icon.
  for (const dir of ["src", "icons"]) {
    const walk = (/** @type {string} */ d) =>
      fs.readdirSync(path.join(PLUGIN_DIR, d), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(`${d}/${e.name}`) : [`${d}/${e.name}`]));
    walk(dir).forEach((file) => assert.ok(files.includes(file), `${file} is packaged`));
  }
  assert.ok(names.every((name) => !/(^|\/)(test|node_modules)\//.test(name) && !name.startsWith(".")));
  assert.ok(!names.includes("package.json") && !names.includes("build.py") && !names.includes("README.md"));
  for (const [name, mode, system] of entries) {
    assert.equal(system, 3, `${name} records Unix modes`);
    assert.equal(mode, name.endsWith("/") ? 0o40755 : 0o100644, `${name} mode ${mode.toString(8)}`);
  }
  assert.deepEqual(manifest, JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8")));
  // The unpacked copy for UXP Developer Tool matches.
  assert.ok(fs.existsSync(path.join(out, `acetate-photoshop-${version}`, "manifest.json")));
});

test("--tls allows https:// and wss:// (a LAN server started with --tls-cert/--tls-key)", { skip }, () => {
  const out = tempDir("build-tls");
  const result = build(["--out", out, "--port", "9443", "--hosts", "studio.local", "--tls"]);
  assert.equal(result.status, 0, result.stderr);
  const version = JSON.parse(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8")).version;
  const { manifest } = listZip(path.join(out, `acetate-photoshop-${version}.ccx`));
  assert.deepEqual(manifest.requiredPermissions.network.domains, ["https://studio.local:9443", "wss://studio.local:9443"]);
  assert.match(result.stdout, /network: https:\/\/studio\.local:9443, wss:\/\/studio\.local:9443/);
});

test("PORT and HOSTS rebuild the network entries (and only them); the committed manifest is untouched", { skip }, () => {
  const out = tempDir("build-lan");
  const committed = fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8");
  const result = build(["--out", out, "--port", "9000", "--hosts", "192.168.1.20, studio.local ::1"]);
  assert.equal(result.status, 0, result.stderr);
  const version = JSON.parse(committed).version;
  const { manifest } = listZip(path.join(out, `acetate-photoshop-${version}.ccx`));
  assert.deepEqual(manifest.requiredPermissions.network.domains, [
    "http://192.168.1.20:9000",
    "ws://192.168.1.20:9000",
    "http://studio.local:9000",
    "ws://studio.local:9000",
    "http://[::1]:9000",
    "ws://[::1]:9000",
  ]);
  const expected = JSON.parse(committed);
  expected.requiredPermissions.network.domains = manifest.requiredPermissions.network.domains;
  assert.deepEqual(manifest, expected);
  assert.equal(fs.readFileSync(path.join(PLUGIN_DIR, "manifest.json"), "utf8"), committed);
});

test("bad ports and hosts are refused with a message naming the option", { skip }, () => {
  for (const [args, pattern] of [
    [["--port", "70000"], /--port: 70000 is not a TCP port/],
    [["--hosts", "*.example.com"], /--hosts: '\*\.example\.com' is not a host name/],
    [["--hosts", "http://host"], /--hosts: 'http:\/\/host' must be a bare host name/],
    [["--hosts", " "], /--hosts: give at least one host/],
  ]) {
    const result = build(["--out", tempDir("build-bad"), ...args]);
    assert.equal(result.status, 2, args.join(" "));
    assert.match(result.stderr, pattern);
  }
});
