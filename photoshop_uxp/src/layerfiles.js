// @ts-check
/**
 * Which LayerDiffusion file fills each part of a job: the panel's per-part pickers.
 *
 * A mode declares, per model family, the parts it loads and the official kinds that fill each
 * (`GET /api/modes`: `families[].files`, preferred first); the server lists its files, official
 * and trained (`GET /api/models`: `layer_files`). A file fits a part when its kind is one of the
 * part's kinds and its family and tiny flag are the chosen base model's. A part with more than
 * one fitting file gets a picker: "Default" (nothing sent: the server's preferred official file),
 * then each fitting file. The choice is kept in the settings' `values` per mode, family and part
 * (`fileKey`); one that no longer fits (another base, a file gone from the server) counts as
 * "Default", so a request never names a file that cannot be used. Pure functions.
 */
"use strict";

/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").BaseModelInfo} BaseModelInfo */
/** @typedef {import("./protocol").LayerFileInfo} LayerFileInfo */
/** @typedef {import("./settings").Settings} Settings */

/**
 * One part of a mode on a family, with the files that fit it (official first, in the order of
 * preference, then trained ones by name).
 * @typedef {{part: string, kinds: string[], files: LayerFileInfo[]}} FilePart
 */

/** The settings `values` key of the file picked for a part. */
const fileKey = (/** @type {string} */ mode, /** @type {string} */ family, /** @type {string} */ part) => `file:${mode}:${family}:${part}`;

/**
 * The base model a job runs on: the chosen one, else the server's default.
 * @param {BaseModelInfo[]} models
 * @param {string} chosen
 * @param {string|null} [fallback] the server's default base
 * @returns {BaseModelInfo|null}
 */
function baseModel(models, chosen, fallback = null) {
  return models.find((model) => model.name === (chosen || fallback)) ?? null;
}

/**
 * Whether a listed file (a LayerDiffusion file, ControlNet, LoRA, embedding) runs on `base`: the
 * same family, tiny test files with tiny test bases only.
 * @param {{family?: string, tiny?: boolean}} file
 * @param {BaseModelInfo|null|undefined} base
 */
function fitsBase(file, base) {
  return Boolean(base) && file.family === base?.family && Boolean(file.tiny) === Boolean(base?.tiny);
}

/**
 * The parts `mode` loads on `base`'s family, each with the listed files that fit it.
 * @param {ModeInfo|null} mode
 * @param {BaseModelInfo|null} base
 * @param {LayerFileInfo[]} files
 * @returns {FilePart[]}
 */
function fileParts(mode, base, files) {
  const family = base && mode ? mode.families.find((item) => item.family === base.family) : undefined;
  if (!base || !family || !family.supported) {
    return [];
  }
  return Object.entries(family.files ?? {}).map(([part, kinds]) => {
    const fitting = files.filter((file) => kinds.includes(file.kind) && fitsBase(file, base));
    fitting.sort(
      (a, b) =>
        Number(a.trained != null) - Number(b.trained != null) || kinds.indexOf(a.kind) - kinds.indexOf(b.kind) || a.name.localeCompare(b.name),
    );
    return { part, kinds, files: fitting };
  });
}

/**
 * Whether the panel shows a picker for the part: only a choice between files is worth one.
 * @param {FilePart} part
 */
const choosable = (part) => part.files.length > 1;

/** "attention_sharing" → "Attention sharing file". */
function partLabel(/** @type {string} */ part) {
  const words = part.replace(/_/g, " ");
  return `${words.charAt(0).toUpperCase()}${words.slice(1)} file`;
}

/**
 * A file as the picker lists it: its name, a trained one marked with its steps.
 * @param {LayerFileInfo} file
 */
function fileLabel(file) {
  const name = file.name.replace(/\.safetensors$/, "");
  if (!file.trained) {
    return name;
  }
  const steps = file.trained["acetate.steps"];
  return steps ? `${name} (trained, ${steps} steps)` : `${name} (trained)`;
}

/**
 * Part → the file picked for it that still fits (parts on "Default" are left out).
 * @param {Settings} settings
 * @param {ModeInfo} mode
 * @param {BaseModelInfo|null} base
 * @param {LayerFileInfo[]} files
 * @returns {Record<string, string>}
 */
function chosenFiles(settings, mode, base, files) {
  /** @type {Record<string, string>} */
  const out = {};
  if (!base || typeof base.family !== "string") {
    return out;
  }
  for (const part of fileParts(mode, base, files)) {
    const name = settings.values[fileKey(mode.name, base.family, part.part)] ?? "";
    if (name && choosable(part) && part.files.some((file) => file.name === name)) {
      out[part.part] = name;
    }
  }
  return out;
}

/**
 * The request's `layer_files` for the picks (undefined when every part is on "Default").
 * @param {Settings} settings
 * @param {ModeInfo} mode
 * @param {BaseModelInfo|null} base
 * @param {LayerFileInfo[]} files
 * @returns {string[]|undefined}
 */
function requestFiles(settings, mode, base, files) {
  const names = Object.values(chosenFiles(settings, mode, base, files));
  return names.length > 0 ? names : undefined;
}

module.exports = { baseModel, choosable, chosenFiles, fileKey, fileLabel, fileParts, fitsBase, partLabel, requestFiles };
