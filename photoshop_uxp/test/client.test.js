"use strict";
// The client and the controller when the server is down, silent, or drops the event stream.
// Fault injection uses small local stubs; everything else is tested against the real server.
const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const net = require("node:net");
const { WebSocketServer } = require("ws");
const WebSocket = require("ws");

const { builtinModes, createPlugin, freePort, testImage } = require("./helpers.js");
const { AcetateClient, encodeMultipart, explicitOrigin, normalizeBaseUrl } = require("../src/client.js");
const { EventSocket } = require("../src/events.js");
const { decodeUtf8, encodeUtf8 } = require("../src/utf8.js");

test("server down: connect fails with a plain-words error, Generate does too", async () => {
  const port = await freePort();
  const plugin = createPlugin({ serverUrl: `http://127.0.0.1:${port}` });
  plugin.world.addDocument({ width: 64, height: 64 });
  assert.equal(await plugin.controller.connect(), false);
  const { connection } = plugin.store.state;
  assert.equal(connection.status, "error");
  assert.match(connection.message, /^Cannot reach the Acetate server at http:\/\/127\.0\.0\.1:\d+\. Is it running\?/);
  plugin.configure({ prompt: "x" });
  await plugin.controller.generate();
  assert.equal(plugin.store.state.message?.kind, "error");
  assert.match(plugin.store.state.message.text, /Cannot reach the Acetate server/);
  assert.equal(plugin.store.state.busy, false);
  assert.deepEqual(plugin.world.documents[0].tree(), []);
});

test("timeout: a server that accepts but never answers", async () => {
  /** @type {net.Socket[]} */
  const sockets = [];
  const silent = net.createServer((socket) => sockets.push(socket));
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (silent.address());
  try {
    const plugin = createPlugin({ serverUrl: `http://127.0.0.1:${port}`, requestTimeoutMs: 300 });
    const started = Date.now();
    assert.equal(await plugin.controller.connect(), false);
    assert.ok(Date.now() - started < 5000);
    assert.match(plugin.store.state.connection.message, /did not answer in time \(no answer from .* within 0\.3 s\)/);
  } finally {
    sockets.forEach((socket) => socket.destroy());
    silent.close();
  }
});

test("an address outside the manifest is explained, with the command that builds a plugin for it", async () => {
  const plugin = createPlugin({
    serverUrl: "http://192.168.1.20:9000",
    allowed: ["http://127.0.0.1:7865", "ws://127.0.0.1:7865", "http://localhost:7865", "ws://localhost:7865"],
  });
  assert.equal(await plugin.controller.connect(), false);
  const { message } = plugin.store.state.connection;
  assert.match(message, /only lets this plugin reach .*http:\/\/127\.0\.0\.1:7865, http:\/\/localhost:7865/);
  assert.match(message, /make photoshop-plugin PORT=9000 HOSTS=192\.168\.1\.20/);
  assert.equal(plugin.requests.length, 0, "nothing was sent");
});

test("a job whose server stops answering ends with an error instead of waiting forever", async () => {
  // A stub that accepts the job, then goes silent: no events, and job polls fail.
  let up = true;
  const stub = http.createServer((request, response) => {
    if (!up) {
      request.socket.destroy();
      return;
    }
    const reply = (/** @type {any} */ body, status = 200) => {
      response.writeHead(status, { "Content-Type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.url === "/api/health") reply({ version: "stub", api_version: 2, device: "none", queue_length: 0, running: null });
    else if (request.url === "/api/ws-ticket" && request.method === "POST") reply({ ticket: "stub", expires_in: 60 });
    else if (request.url === "/api/modes") reply(builtinModes());
    else if (request.url === "/api/models") reply({ bases: [] });
    else if (request.url?.startsWith("/api/jobs?")) reply({ jobs: [] });
    else if (request.url === "/api/jobs" && request.method === "POST") {
      request.resume();
      request.on("end", () => {
        reply({ id: "j_stub", position: 0 }, 202);
        up = false;
      });
    } else reply({ error: { code: "not_found", message: "no" } }, 404);
  });
  const wss = new WebSocketServer({ server: stub });
  await new Promise((resolve) => stub.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (stub.address());
  try {
    const plugin = createPlugin({ serverUrl: `http://127.0.0.1:${port}`, eventTimeoutMs: 200, requestTimeoutMs: 500 });
    plugin.world.addDocument({ width: 64, height: 64 });
    plugin.configure({ prompt: "x" });
    assert.equal(await plugin.controller.connect(), true);
    await plugin.controller.generate();
    assert.equal(plugin.store.state.message?.kind, "error");
    assert.match(plugin.store.state.message.text, /Cannot reach the Acetate server/);
    assert.equal(plugin.store.state.busy, false);
    plugin.controller.disconnect();
  } finally {
    wss.clients.forEach((client) => client.terminate());
    wss.close();
    stub.close();
  }
});

for (const [what, health, modes] of [
  ["no GET /api/modes", { version: "0.1.0", api_version: 2, device: "cpu", queue_length: 0, running: null }, null],
  ["health without api_version", { version: "0.1.0", device: "cpu", queue_length: 0, running: null }, builtinModes()],
]) {
  test(`a server too old for this panel (${what}): "Server too old — update Acetate", Generate refused`, async () => {
    const old = http.createServer((request, response) => {
      const reply = (/** @type {any} */ body, status = 200) => {
        response.writeHead(status, { "Content-Type": "application/json" });
        response.end(JSON.stringify(body));
      };
      if (request.url === "/api/health") reply(health);
      else if (request.url === "/api/modes" && modes) reply(modes);
      else if (request.url === "/api/models") reply({ bases: [] });
      else reply({ error: { code: "not_found", message: "no such route" } }, 404);
    });
    await new Promise((resolve) => old.listen(0, "127.0.0.1", () => resolve(undefined)));
    const { port } = /** @type {net.AddressInfo} */ (old.address());
    try {
      const plugin = createPlugin({ serverUrl: `http://127.0.0.1:${port}` });
      plugin.world.addDocument({ width: 64, height: 64 });
      assert.equal(await plugin.controller.connect(), false);
      const { connection, modes: known } = plugin.store.state;
      assert.equal(connection.status, "outdated");
      assert.match(connection.message, /^Server too old — update Acetate/);
      assert.deepEqual(known, []);
      plugin.configure({ prompt: "x" });
      await plugin.controller.generate();
      assert.match(plugin.store.state.message?.text ?? "", /^Server too old — update Acetate/);
      assert.equal(plugin.requests.filter((r) => r.url.endsWith("/api/jobs")).length, 0, "nothing submitted");
    } finally {
      old.close();
    }
  });
}

test("the event stream reconnects with backoff, re-subscribes, and pairs previews with their image", async () => {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise((resolve) => wss.on("listening", resolve));
  const { port } = /** @type {net.AddressInfo} */ (wss.address());
  /** @type {any[]} */
  const received = [];
  /** @type {string[]} */
  const urls = [];
  let connections = 0;
  wss.on("connection", (socket, request) => {
    connections += 1;
    urls.push(request.url ?? "");
    socket.on("message", (data) => {
      const message = JSON.parse(String(data));
      received.push({ connection: connections, ...message });
      if (connections === 1) {
        // First connection: a preview (JSON then binary), then the server drops the socket.
        socket.send(JSON.stringify({ type: "preview", job_id: "j_1", width: 2, height: 1, format: "jpeg" }));
        socket.send(Buffer.from([1, 2, 3]));
        socket.send("not json");
        socket.send(JSON.stringify({ type: "progress", job_id: "j_1", step: 1, total: 4, eta_s: 2 }));
        setTimeout(() => socket.terminate(), 20);
      } else {
        socket.send(JSON.stringify({ type: "done", job_id: "j_1", result: { id: "j_1", layers: [] } }));
      }
    });
  });
  /** @type {any[]} */
  const events = [];
  /** @type {string[]} */
  const statuses = [];
  const done = new Promise((resolve) => {
    const socket = new EventSocket({
      url: `ws://127.0.0.1:${port}/api/ws?token=t%20k`,
      WebSocket,
      minBackoffMs: 50,
      onEvent: (event) => {
        events.push(event);
        if (event.type === "done") {
          socket.close();
          resolve(undefined);
        }
      },
      onStatus: (status) => statuses.push(status),
    });
    socket.subscribe(["j_1"]);
    socket.open();
  });
  await done;
  wss.close();
  assert.deepEqual(
    received.map((m) => [m.connection, m.type, m.jobs]),
    [
      [1, "subscribe", ["j_1"]],
      [2, "subscribe", ["j_1"]],
    ],
    "subscriptions are sent again after the reconnect",
  );
  assert.deepEqual(urls, ["/api/ws?token=t%20k", "/api/ws?token=t%20k"]);
  assert.deepEqual(events.map((e) => e.type), ["preview", "progress", "done"]);
  assert.deepEqual(new Uint8Array(events[0].image), Uint8Array.from([1, 2, 3]));
  assert.deepEqual(statuses, ["connecting", "open", "closed", "connecting", "open", "closed"]);
});

test("multipart bodies: text and raw parts with their sizes, as the server reads them", () => {
  const body = encodeMultipart(
    [
      { name: "request", data: '{"prompt":"é"}', contentType: "application/json" },
      { name: "mask", data: Uint8Array.from([0, 255]), contentType: "application/octet-stream" },
      { name: "mask_width", data: "2" },
    ],
    "B",
  );
  const text = Buffer.from(body).toString("latin1");
  assert.equal(
    text,
    '--B\r\nContent-Disposition: form-data; name="request"\r\nContent-Type: application/json\r\n\r\n{"prompt":"\u00c3\u00a9"}\r\n' +
      '--B\r\nContent-Disposition: form-data; name="mask"; filename="mask.raw"\r\nContent-Type: application/octet-stream\r\n\r\n\u0000\u00ff\r\n' +
      '--B\r\nContent-Disposition: form-data; name="mask_width"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n2\r\n--B--\r\n',
  );
});

test("submit checks raw image sizes before sending anything", () => {
  const client = new AcetateClient({ baseUrl: "http://127.0.0.1:1", fetch: () => assert.fail("nothing is sent") });
  const image = testImage(4, 4);
  assert.throws(() => client.submit({ mode: "img2img", prompt: "x" }, { image: { ...image, width: 5 } }), /do not make a 5×4 image/);
  assert.throws(() => client.submit({ mode: "inpaint", prompt: "x" }, { mask: { data: new Uint8Array(16 * 4), width: 4, height: 4 } }, { mask: "mask" }), RangeError);
});

test("addresses: normalized base URLs, explicit origins, a fresh ticket and the token on the WebSocket URL", async () => {
  assert.equal(normalizeBaseUrl(" HTTP://LocalHost:7865/ "), "http://localhost:7865");
  assert.throws(() => normalizeBaseUrl("localhost:7865"), TypeError);
  assert.throws(() => normalizeBaseUrl("http://localhost:7865/api"), TypeError);
  assert.equal(explicitOrigin("http://localhost"), "http://localhost:80");
  assert.equal(explicitOrigin("ws://[::1]:7865"), "ws://[::1]:7865");
  /** @type {any[]} */
  const seen = [];
  let n = 0;
  const tickets = async (/** @type {string} */ url, /** @type {any} */ init) => {
    seen.push({ url, init });
    const body = new TextEncoder().encode(JSON.stringify({ ticket: `t${++n}+/`, expires_in: 60 })).buffer;
    return { status: 200, ok: true, headers: { get: () => null }, arrayBuffer: async () => body, text: async () => "" };
  };
  const client = new AcetateClient({ baseUrl: "http://127.0.0.1:7865", token: " a&b ", fetch: tickets, client: "photoshop/1.2.3" });
  assert.equal(await client.socketUrl(), "ws://127.0.0.1:7865/api/ws?ticket=t1%2B%2F&token=a%26b");
  assert.equal(await client.socketUrl(), "ws://127.0.0.1:7865/api/ws?ticket=t2%2B%2F&token=a%26b", "a new single-use ticket per connection");
  assert.deepEqual(seen[0].init.headers, { "X-Acetate-Client": "photoshop/1.2.3", Authorization: "Bearer a&b" });
  assert.equal(seen[0].init.method, "POST");
  const plain = new AcetateClient({ baseUrl: "http://127.0.0.1:7865", fetch: tickets });
  assert.equal(await plain.socketUrl(), "ws://127.0.0.1:7865/api/ws?ticket=t3%2B%2F");
  await plain.health().catch(() => {});
  assert.equal("body" in seen.at(-1).init, false, "a GET carries no body key (UXP's fetch throws on one)");
});

test("UTF-8 fallbacks agree with the platform's", () => {
  for (const text of ["", "plain", "é ß 猫 😀 \u{10FFFF}", "a\u0000b"]) {
    assert.deepEqual(encodeUtf8(text), new TextEncoder().encode(text));
    assert.equal(decodeUtf8(new TextEncoder().encode(text)), text);
  }
  assert.equal(decodeUtf8(Uint8Array.from([0x61, 0xff, 0xc3])), "a\ufffd\ufffd");
});

test("the fake UXP network is strict like UXP: a body key on GET is a TypeError, so is an address outside the manifest", async () => {
  const { createFakeUxp } = require("./fakes/uxp.js");
  const { PLUGIN_DIR, tempDir } = require("./helpers.js");
  const fake = createFakeUxp({ pluginDir: PLUGIN_DIR, tempDir: tempDir("net"), network: { domains: ["http://127.0.0.1:7865", "ws://127.0.0.1:7865"] } });
  await assert.rejects(fake.fetch("http://127.0.0.1:7865/api/health", { method: "GET", body: undefined }), TypeError);
  await assert.rejects(fake.fetch("http://127.0.0.1:9999/api/health"), (error) => error instanceof TypeError && /Manifest entry not found/.test(error.message));
  assert.throws(() => new fake.WebSocket("ws://127.0.0.1:9999/api/ws"), /Manifest entry not found/);
});
