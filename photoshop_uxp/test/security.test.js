"use strict";
// DESIGN.md's security rules as the plugin meets them, on a real server started with a token:
// the token as a Bearer header over HTTP and as ?token= on the WebSocket, and the Origin rule —
// whatever Origin the real UXP sends (undocumented), the panel gets in; a web page does not.
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

  // What UXP's fetch/WebSocket send is undocumented: every plausible value must work.
  for (const network of [
    {},
    { origin: "null" },
    { origin: "file://" },
    { origin: "uxp://acetate.photoshop" },
    { origin: "null", secFetchSite: "cross-site", secFetchMode: "cors" },
    { secFetchSite: "none", secFetchMode: "no-cors" },
  ]) {
    test(`the panel connects when UXP sends ${JSON.stringify(network)}: HTTP, the ticketed WebSocket, client_seen shown`, TIMEOUT, async () => {
      const plugin = createPlugin({ serverUrl: server.url, token: TOKEN, network });
      assert.equal(await plugin.controller.connect(), true, plugin.store.state.connection.message);
      const deadline = Date.now() + 30_000;
      while (plugin.store.state.connection.socket !== "open" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(plugin.store.state.connection.socket, "open", "the WebSocket opened with a ticket");
      assert.deepEqual(plugin.store.state.connection.seen, {
        origin: network.origin ?? null,
        sec_fetch_site: network.secFetchSite ?? null,
        sec_fetch_mode: network.secFetchMode ?? null,
      });
      const version = require("../manifest.json").version;
      assert.ok(plugin.uxp.requests.length >= 4);
      for (const request of plugin.uxp.requests) {
        assert.equal(request.headers["X-Acetate-Client"], `photoshop/${version}`, `${request.method} ${request.url}`);
        if (request.method === "GET") assert.equal(request.hasBody, false, `GET ${request.url} carries no body key`);
      }
      assert.ok(plugin.uxp.requests.some((r) => r.method === "POST" && r.url.endsWith("/api/ws-ticket")));
      assert.match(plugin.uxp.sockets[0], /\/api\/ws\?ticket=[^&]+&token=/);
      plugin.controller.disconnect();
    });
  }

  test("reconnects fetch a new ticket each time (tickets are single-use)", TIMEOUT, async () => {
    const plugin = createPlugin({ serverUrl: server.url, token: TOKEN, network: { origin: "null" } });
    assert.equal(await plugin.controller.connect(), true);
    const waitOpen = async () => {
      const deadline = Date.now() + 30_000;
      while (plugin.store.state.connection.socket !== "open" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(plugin.store.state.connection.socket, "open");
    };
    await waitOpen();
    /** @type {any} */ (plugin.controller.socket).socket.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await waitOpen();
    const tickets = plugin.uxp.sockets.map((url) => /ticket=([^&]+)/.exec(url)?.[1]);
    assert.equal(tickets.length, 2);
    assert.notEqual(tickets[0], tickets[1]);
    plugin.controller.disconnect();
  });

  test("browser-like requests with Origin: null are refused: no header, simple content types, WS without or with a replayed ticket", TIMEOUT, async () => {
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const status = async (/** @type {string} */ path, /** @type {RequestInit} */ init) => (await fetch(`${server.url}${path}`, init)).status;
    assert.equal(await status("/api/health", { headers: { ...auth, Origin: "null" } }), 403);
    assert.equal(await status("/api/jobs", { method: "POST", headers: { ...auth, Origin: "null", "Content-Type": "text/plain" }, body: "{}" }), 403);
    assert.equal(await status("/api/jobs", { method: "POST", headers: { ...auth, Origin: "null", "Content-Type": "application/x-www-form-urlencoded" }, body: "a=1" }), 403);
    assert.equal(await status("/api/ws-ticket", { method: "POST", headers: { ...auth, Origin: "null" } }), 403);
    assert.equal(await status("/api/ws-ticket", { method: "POST", headers: auth }), 403, "a ticket needs the panel header");
    assert.equal(await status("/api/health", { method: "OPTIONS", headers: { Origin: "null", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-acetate-client" } }), 403, "preflights are refused");
    const ws = server.url.replace("http", "ws") + "/api/ws";
    const query = `token=${encodeURIComponent(TOKEN)}`;
    assert.equal(await upgrade(`${ws}?${query}`, { Origin: "null" }), 403, "no ticket");
    const response = await fetch(`${server.url}/api/ws-ticket`, { method: "POST", headers: { ...auth, "X-Acetate-Client": "photoshop/test" } });
    assert.equal(response.status, 200);
    const { ticket, expires_in: expires } = await response.json();
    assert.ok(typeof ticket === "string" && ticket.length >= 16 && expires <= 60);
    assert.equal(await upgrade(`${ws}?ticket=${encodeURIComponent(ticket)}&${query}`, { Origin: "null" }), 101);
    assert.notEqual(await upgrade(`${ws}?ticket=${encodeURIComponent(ticket)}&${query}`, { Origin: "null" }), 101, "a replayed ticket is refused");
    assert.doesNotMatch(server.log(), new RegExp(ticket.replace(/[-/\\^$*+?.()|[\]{}]/g, "\\$&")), "the ticket never reaches the log");
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
