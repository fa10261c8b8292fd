// @ts-check
/**
 * LoRAs and textual-inversion embeddings the server lists (`GET /api/models` → `loras`,
 * `embeddings`: `{name, family, tiny, …}`), pure logic for the panel's pickers.
 *
 * LoRAs: rows of {a LoRA that fits the chosen base (its family, tiny with tiny), a strength
 * from -2 to 2 ("" = 1)}, at most `MAX_LORAS` (server/acetate/protocol.py). The rows are kept in
 * the settings' `values` per mode and family (`loraKey`, JSON text), like the layer-file picks
 * (layerfiles.js). A remembered LoRA the server no longer lists (or that no longer fits) is left
 * out of the request and named in a note. The request field is `loras: [{name, strength}]`.
 *
 * Embeddings are used by writing their name in a prompt: the panel's "Insert embedding" menus
 * list the ones that fit the base (hidden when there are none) and append the name.
 */
"use strict";

const { InputProblem } = require("./errors.js");
const { fitsBase } = require("./layerfiles.js");

/** @typedef {import("./protocol").BaseModelInfo} BaseModelInfo */
/** @typedef {{name: string, family: string, tiny?: boolean}} ModelFileInfo a LoRA or an embedding */
/** @typedef {{name: string, strength: string}} LoraRow one picker row, as typed */

/** How many LoRAs one request may name (server/acetate/protocol.py MAX_LORAS). */
const MAX_LORAS = 8;
/** The strength range (server/acetate/protocol.py LoraRequest). */
const MIN_STRENGTH = -2;
const MAX_STRENGTH = 2;

/** The settings `values` key of a mode's LoRA rows on a family. */
const loraKey = (/** @type {string} */ mode, /** @type {string} */ family) => `loras:${mode}:${family}`;

/**
 * The names of the listed files (LoRAs or embeddings) that run on `base`.
 * @param {ModelFileInfo[]|undefined} files
 * @param {BaseModelInfo|null|undefined} base
 * @returns {string[]}
 */
function fittingNames(files, base) {
  return (files ?? []).filter((file) => fitsBase(file, base)).map((file) => file.name);
}

/**
 * The remembered rows of a mode on a family (none when unset or unreadable).
 * @param {Record<string, string>} values
 * @param {string} mode
 * @param {string|null|undefined} family
 * @returns {LoraRow[]}
 */
function loraRows(values, mode, family) {
  if (!family) {
    return [];
  }
  let rows;
  try {
    rows = JSON.parse(values[loraKey(mode, family)] || "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(rows)) {
    return [];
  }
  return rows
    .filter((row) => row && typeof row === "object")
    .slice(0, MAX_LORAS)
    .map((row) => ({ name: typeof row.name === "string" ? row.name : "", strength: typeof row.strength === "string" ? row.strength : "" }));
}

/**
 * The `values` patch that stores `rows` for a mode on a family.
 * @param {string} mode
 * @param {string} family
 * @param {LoraRow[]} rows
 * @returns {Record<string, string>}
 */
function storeRows(mode, family, rows) {
  return { [loraKey(mode, family)]: JSON.stringify(rows.slice(0, MAX_LORAS)) };
}

/**
 * The remembered LoRAs that are gone from the server or no longer fit the base.
 * @param {LoraRow[]} rows
 * @param {string[]} fitting `fittingNames` of the listed LoRAs
 * @returns {string[]}
 */
function goneLoras(rows, fitting) {
  return rows.map((row) => row.name).filter((name) => name !== "" && !fitting.includes(name));
}

/**
 * The request's `loras` for a mode on a base (undefined when none) and the remembered ones left
 * out because the server no longer lists them for this base. A strength outside -2..2 is an
 * `InputProblem` naming the field `loras`.
 * @param {Record<string, string>} values
 * @param {string} mode
 * @param {BaseModelInfo|null|undefined} base
 * @param {ModelFileInfo[]|undefined} listed
 * @returns {{loras: {name: string, strength: number}[]|undefined, dropped: string[]}}
 */
function requestLoras(values, mode, base, listed) {
  const family = base && typeof base.family === "string" ? base.family : null;
  const rows = loraRows(values, mode, family);
  const fitting = fittingNames(listed, base);
  /** @type {{name: string, strength: number}[]} */
  const loras = [];
  for (const row of rows) {
    if (row.name === "" || !fitting.includes(row.name)) {
      continue;
    }
    const text = row.strength.trim();
    const strength = text === "" ? 1 : Number(text);
    if (!Number.isFinite(strength) || strength < MIN_STRENGTH || strength > MAX_STRENGTH) {
      throw new InputProblem("loras", `LoRA strength of ${row.name}: a number from ${MIN_STRENGTH} to ${MAX_STRENGTH}`);
    }
    loras.push({ name: row.name, strength });
  }
  return { loras: loras.length > 0 ? loras : undefined, dropped: goneLoras(rows, fitting) };
}

/**
 * The note for remembered LoRAs left out ("" when none).
 * @param {string[]} dropped
 */
function droppedNote(dropped) {
  if (dropped.length === 0) {
    return "";
  }
  const names = dropped.map((name) => `"${name}"`).join(", ");
  return `${dropped.length === 1 ? "The LoRA" : "The LoRAs"} ${names} ${dropped.length === 1 ? "is" : "are"} no longer on the server for this model and ${dropped.length === 1 ? "was" : "were"} left out.`;
}

/**
 * A prompt with an embedding's name appended (separated by ", " from text before it).
 * @param {string} prompt
 * @param {string} name
 */
function withEmbedding(prompt, name) {
  const text = prompt.trimEnd();
  return text === "" ? name : `${text}${/[,;]$/.test(text) ? " " : ", "}${name}`;
}

module.exports = {
  MAX_LORAS,
  droppedNote,
  fittingNames,
  goneLoras,
  loraKey,
  loraRows,
  requestLoras,
  storeRows,
  withEmbedding,
};
