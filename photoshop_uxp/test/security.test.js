"use strict";
// DESIGN.md's security rules as the plugin meets them, on a real server started with a token:
// the token as a Bearer header over HTTP and as ?token= on the WebSocket, and the Origin rule.
const { after, before, describe, test } = require("node:test");
const assert = require("node:assert/strict");
const WebSocket = require("ws");

const { createPlugin, skipWithoutPython, startServer } = require("./helpers.js");

const TOKEN = "s3cret+token/=";
const TIMEOUT = { timeout: 600_000 };

/**
 * Open a raw WebSocket and report how the upgrade went.
 * @param {string} url @param {Record<string, string>} [headers]
 * @returns {Promise<number>} 101 when it opened, else the HTTP status
 */
function upgrade(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers });
    socket.on("open", () => {
      socket.close();
      resolve(101);
    });
    socket.on("unexpected-response", (_, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.on("error", (error) => reject(error));
  });
}

describe("server security rules seen from the plugin", { skip: skipWithoutPython() }, () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let server;
  before(async () => {
    server = await startServer({ args: ["--token", TOKEN] });
  }, TIMEOUT);
  after(async () => {
    await server?.stop();
  });

  test("without the token the panel says what to do", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url });
    assert.equal(await plugin.controller.connect(), false);
    assert.match(plugin.store.state.connection.message, /needs a token .*Token field/);
  });

  test("with the token: HTTP with the Bearer header, events over ?token=, a whole job", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url, token: TOKEN });
    const doc = plugin.world.addDocument({ width: 64, height: 64 });
    assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
    const deadline = Date.now() + 30_000;
    while (plugin.store.state.connection.socket !== "open" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(plugin.store.state.connection.socket, "open", "the WebSocket took ?token=");
    /** @type {string[]} */
    const events = [];
    const unsubscribe = plugin.store.subscribe((state) => state.job && events.push(state.job.phase));
    plugin.configure({ model: "tiny-sd15", mode: "fg", prompt: "token test", values: { width: "64", height: "64", steps: "1", decode: "fast" } });
    await plugin.controller.generate();
    unsubscribe();
    assert.equal(plugin.store.state.message?.kind, "info", plugin.store.state.message?.text);
    assert.ok(events.includes("started"), "progress arrived over the WebSocket");
    assert.equal(doc.tree().length, 1);
    plugin.controller.disconnect();
    assert.doesNotMatch(server.log(), /s3cret/, "the token never reaches the log");
  });

  test("WebSocket upgrades: token required; a web Origin refused", TIMEOUT, async () => {
    const ws = server.url.replace("http", "ws") + "/api/ws";
    const query = `?token=${encodeURIComponent(TOKEN)}`;
    assert.equal(await upgrade(ws), 401);
    assert.equal(await upgrade(ws + "?token=wrong"), 401);
    assert.equal(await upgrade(ws + query), 101);
    assert.equal(await upgrade(ws, { Authorization: `Bearer ${TOKEN}` }), 101);
    assert.equal(await upgrade(ws + query, { Origin: "https://evil.example" }), 403);
  });

  test("Origin: absent or a non-web scheme allowed (and logged), web origins and null refused", TIMEOUT, async () => {
    const headers = { Authorization: `Bearer ${TOKEN}` };
    const status = async (/** @type {Record<string, string>} */ extra) =>
      (await fetch(`${server.url}/api/health`, { headers: { ...headers, ...extra } })).status;
    assert.equal(await status({}), 200);
    assert.equal(await status({ Origin: "uxp://acetate.photoshop" }), 200);
    assert.equal(await status({ Origin: `http://localhost:${server.port}` }), 200);
    assert.equal(await status({ Origin: "https://evil.example" }), 403);
    assert.equal(await status({ Origin: "null" }), 403);
    assert.equal(await status({ "Sec-Fetch-Site": "cross-site" }), 403);
    assert.match(server.log(), /uxp:\/\/acetate\.photoshop/, "the non-web Origin is logged");
  });
});
