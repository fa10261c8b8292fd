"use strict";
// Protocol versions: the panel shows the server's version and protocol, and refuses a server
// that is too new for it (too old: client.test.js) with a plain message and no job sent.
const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const net = require("node:net");

const { builtinModes, createPlugin } = require("./helpers.js");
const { describeError } = require("../src/messages.js");
const protocol = require("../src/protocol.js");

/**
 * A stub Acetate server answering health with `apiVersion`.
 * @param {number} apiVersion
 * @returns {Promise<{server: http.Server, url: string}>}
 */
async function stub(apiVersion) {
  const server = http.createServer((request, response) => {
    const reply = (/** @type {any} */ body) => {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (request.url === "/api/health") {
      reply({ version: "9.1.0", api_version: apiVersion, device: "cpu", queue_length: 0, running: null });
    } else if (request.url === "/api/modes") reply({ ...builtinModes(), api_version: apiVersion });
    else reply({ bases: [] });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (server.address());
  return { server, url: `http://127.0.0.1:${port}` };
}

test("a server too new for this panel: a plain message naming both versions, Generate refused", async () => {
  const { server, url } = await stub(protocol.API_VERSION + 1);
  try {
    const plugin = createPlugin({ serverUrl: url });
    plugin.world.addDocument({ width: 64, height: 64 });
    assert.equal(await plugin.controller.connect(), false);
    const { connection, modes } = plugin.store.state;
    assert.equal(connection.status, "outdated");
    assert.match(connection.message, /^Server too new — update the Acetate panel for Photoshop \(it is Acetate 9\.1\.0 with protocol 3; this panel speaks protocol 2\)\.$/);
    assert.deepEqual(modes, []);
    plugin.configure({ prompt: "x" });
    await plugin.controller.generate();
    assert.match(plugin.store.state.message?.text ?? "", /^Server too new — update the Acetate panel/);
    assert.equal(plugin.requests.filter((r) => r.url.endsWith("/api/jobs")).length, 0, "nothing submitted");
  } finally {
    server.close();
  }
});

test("a matching server: the connection line shows its version and protocol", async () => {
  const { server, url } = await stub(protocol.API_VERSION);
  try {
    const plugin = createPlugin({ serverUrl: url });
    assert.equal(await plugin.controller.connect(), true);
    assert.equal(plugin.store.state.connection.message, "Connected to Acetate 9.1.0 · protocol 2 (cpu)");
    plugin.controller.disconnect();
  } finally {
    server.close();
  }
});

test("describeError words a too-new server for the user", () => {
  const context = { serverUrl: "http://127.0.0.1:7865", allowed: [] };
  const text = describeError(new protocol.ServerTooNew("the server speaks protocol 3, this panel 2"), context);
  assert.equal(text, "Server too new — update the Acetate panel for Photoshop (the server speaks protocol 3, this panel 2).");
});
