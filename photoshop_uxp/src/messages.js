// @ts-check
/**
 * Errors in plain words for the panel: what went wrong and what the user can do about it.
 */
"use strict";

const { NetworkError, ServerError, explicitOrigin } = require("./client.js");
const { ProtocolError, ServerTooNew, ServerTooOld } = require("./protocol.js");
const { HostProblem, InputProblem } = require("./errors.js");
const { FIELD_LABELS } = require("./settings.js");

/** What the panel says about a server that predates `GET /api/modes`. */
const TOO_OLD = "Server too old — update Acetate";
/** What the panel says about a server speaking a newer protocol than this panel. */
const TOO_NEW = "Server too new — update the Acetate panel for Photoshop";

/**
 * Whether both the http(s) and ws(s) forms of `serverUrl` are in the manifest's network list.
 * @param {string} serverUrl
 * @param {string[]} allowed manifest `requiredPermissions.network.domains`
 */
function urlAllowed(serverUrl, allowed) {
  const http = explicitOrigin(serverUrl);
  const ws = http.replace(/^http/, "ws");
  const entries = new Set(allowed.map(explicitOrigin));
  return entries.has(http) && entries.has(ws);
}

/**
 * Why a URL cannot be used by this build of the plugin, and how to get one that can.
 * @param {string} serverUrl
 * @param {string[]} allowed
 */
function manifestMessage(serverUrl, allowed) {
  const listed = allowed.filter((entry) => entry.startsWith("http")).join(", ") || "none";
  const match = /^https?:\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?/i.exec(serverUrl.trim());
  const host = match ? match[1] : "HOST";
  const port = match && match[2] ? match[2] : "PORT";
  return (
    `Photoshop only lets this plugin reach the addresses in its manifest (${listed}); ` +
    `${serverUrl.trim()} is not one of them. Rebuild the plugin for that server with ` +
    `"make photoshop-plugin PORT=${port} HOSTS=${host}" and install the new .ccx ` +
    "(remove the old one first)."
  );
}

/**
 * The plain-words text for any error that reaches the panel.
 * @param {unknown} error
 * @param {{serverUrl: string, allowed: string[], labels?: Record<string, string>}} context
 *   `labels`: request field → the label the panel shows for it (from the mode's declaration)
 * @returns {string}
 */
function describeError(error, { serverUrl, allowed, labels = {} }) {
  if (error instanceof InputProblem || error instanceof HostProblem) {
    return error.message;
  }
  if (error instanceof ServerTooOld) {
    return `${TOO_OLD} (${error.message}).`;
  }
  if (error instanceof ServerTooNew) {
    return `${TOO_NEW} (${error.message}).`;
  }
  if (error instanceof NetworkError) {
    if (/permission|manifest/i.test(error.message) || !urlAllowed(serverUrl, allowed)) {
      return manifestMessage(serverUrl, allowed);
    }
    if (error.kind === "timeout") {
      return (
        `The Acetate server at ${serverUrl} did not answer in time (${error.message}). ` +
        "It may be busy loading a model: try again in a moment, or restart it."
      );
    }
    return (
      `Cannot reach the Acetate server at ${serverUrl}. Is it running? ` +
      'Start it with "acetate serve" and check the address and port.'
    );
  }
  if (error instanceof ServerError) {
    return describeServerError(error, labels);
  }
  if (error instanceof ProtocolError) {
    return (
      `The server sent something unexpected (${error.message}). ` +
      "Make sure the plugin and the server come from the same Acetate version."
    );
  }
  const text = error instanceof Error ? error.message : String(error);
  return `Something went wrong: ${text}`;
}

/**
 * @param {ServerError} error
 * @param {Record<string, string>} labels
 */
function describeServerError(error, labels) {
  switch (error.code) {
    case "unauthorized":
      return (
        "The server needs a token (it was started with --token), or the token is wrong. " +
        "Enter the server's token in the Token field."
      );
    case "forbidden_host":
      return (
        "The server refused this address. Connect with 127.0.0.1, or start the server with " +
        "--allowed-host set to the name you use."
      );
    case "forbidden_origin":
      return (
        "The server refused this panel's request (Origin check). The panel proves itself with " +
        "its X-Acetate-Client header and WebSocket tickets, which servers older than this panel " +
        "do not know: update Acetate on the server. If it still refuses, start the server with " +
        "--allow-origin and the Origin shown in the server's log (\"panel client … sent Origin=…\")."
      );
    case "not_found":
      return "The server no longer has this job (it was deleted or has expired).";
    case "out_of_memory":
      return "The server ran out of memory: try a smaller size, batch 1 or fast decoding.";
    default:
      break;
  }
  if (error.status >= 500) {
    return `The server failed: ${error.message}. Its log has the details.`;
  }
  if (error.field) {
    const label = labels[error.field] ?? FIELD_LABELS[error.field] ?? error.field;
    return `${label}: ${error.message}`;
  }
  return error.message;
}

/**
 * The text for a job that ended with an `error` event.
 * @param {string} code
 * @param {string} message
 */
function describeJobError(code, message) {
  if (code === "out_of_memory") {
    return "The server ran out of memory: try a smaller size, batch 1 or fast decoding.";
  }
  if (code === "model_not_found") {
    return `${message} (see "acetate models" on the server for what is installed).`;
  }
  return `The job failed: ${message}`;
}

module.exports = { TOO_OLD, TOO_NEW, urlAllowed, manifestMessage, describeError, describeJobError };
