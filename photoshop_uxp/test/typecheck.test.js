"use strict";
// `tsc --checkJs` over the shipped sources against @types/photoshop (jsconfig.json).
const test = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const { PLUGIN_DIR } = require("./helpers.js");

const tsc = path.join(PLUGIN_DIR, "node_modules", "typescript", "bin", "tsc");

test("the plugin's JavaScript type-checks", { skip: fs.existsSync(tsc) ? false : "typescript is not installed (npm ci)" }, () => {
  const result = spawnSync(process.execPath, [tsc, "-p", path.join(PLUGIN_DIR, "jsconfig.json")], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stdout + result.stderr);
});
