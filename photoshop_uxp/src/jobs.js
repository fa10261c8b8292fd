// @ts-check
/**
 * Waiting for jobs to end: each followed job resolves with its final event from the event
 * stream, and is polled over HTTP when its events stop (a dropped stream, a missed message);
 * a poll that fails ends the wait with that error instead of waiting forever.
 */
"use strict";

const { FINAL_EVENTS } = require("./protocol.js");

/** @typedef {import("./protocol").JobEvent} JobEvent */
/** @typedef {import("./protocol").JobRecord} JobRecord */

/**
 * @typedef {Object} Waiter
 * @property {(event: JobEvent) => void} resolve
 * @property {(error: unknown) => void} reject
 * @property {number} last  when the job was last heard of (ms)
 */

class JobWatch {
  /** @param {{eventTimeoutMs: number}} options */
  constructor({ eventTimeoutMs }) {
    this.eventTimeoutMs = eventTimeoutMs;
    /** @type {Map<string, Waiter>} */
    this.waiters = new Map();
  }

  /** The ids of the jobs being followed. */
  get ids() {
    return [...this.waiters.keys()];
  }

  /**
   * Resolve with the job's final event.
   * @param {string} jobId
   * @param {(jobId: string) => Promise<JobRecord>} poll `GET /api/jobs/{id}`
   * @returns {Promise<JobEvent>}
   */
  follow(jobId, poll) {
    /** @type {ReturnType<typeof setInterval>|undefined} */
    let timer;
    let polling = false;
    return new Promise((/** @type {(event: JobEvent) => void} */ resolve, reject) => {
      const waiter = { resolve, reject, last: Date.now() };
      this.waiters.set(jobId, waiter);
      timer = setInterval(async () => {
        if (polling || Date.now() - waiter.last < this.eventTimeoutMs) {
          return;
        }
        polling = true;
        try {
          const final = finalEvent(await poll(jobId));
          waiter.last = Date.now();
          if (final) {
            resolve(final);
          }
        } catch (error) {
          reject(error);
        } finally {
          polling = false;
        }
      }, Math.max(50, Math.min(1000, this.eventTimeoutMs / 4)));
    }).finally(() => {
      clearInterval(timer);
      this.waiters.delete(jobId);
    });
  }

  /**
   * Note an event; a final one ends its job's wait.
   * @param {JobEvent} event
   */
  deliver(event) {
    const waiter = event.job_id === null ? undefined : this.waiters.get(event.job_id);
    if (!waiter) {
      return;
    }
    waiter.last = Date.now();
    if (FINAL_EVENTS.has(event.type)) {
      waiter.resolve(event);
    }
  }
}

/**
 * The final event a job record stands for, or null while it is still queued or running.
 * @param {JobRecord} record
 * @returns {JobEvent|null}
 */
function finalEvent(record) {
  if (record.status === "done" && record.result) {
    return { type: "done", job_id: record.id, result: record.result };
  }
  // A job that stopped after finishing some layers keeps them: its record's `result` is the
  // partial result (docs/protocol.md, Partial results).
  const partial = record.result ?? null;
  if (record.status === "error") {
    const error = record.error ?? { code: "error", message: "unknown error" };
    return { type: "error", job_id: record.id, code: error.code, message: error.message, field: error.field ?? null, result: partial };
  }
  if (record.status === "cancelled") {
    return { type: "cancelled", job_id: record.id, result: partial };
  }
  return null;
}

module.exports = { JobWatch, finalEvent };
