// @ts-check
/**
 * Reading the server's mode declarations (`GET /api/modes`): which options the panel shows,
 * their defaults per model family, which image inputs a request uses, and the order of a
 * mode's layers. Pure functions: the panel knows no mode by name.
 */
"use strict";

/** @typedef {import("./protocol").ModeInfo} ModeInfo */
/** @typedef {import("./protocol").OptionInfo} OptionInfo */
/** @typedef {import("./protocol").ImageInputInfo} ImageInputInfo */
/** @typedef {import("./protocol").LayerInfo} LayerInfo */
/** @typedef {import("./protocol").ListInputInfo} ListInputInfo */

/**
 * Options without a control of their own: `control` (ControlNet structure) and the options
 * that depend on it are edited in the panel's Structure section (structure.js), which also
 * reads the `control_image` from the layer the user picks.
 */
const HIDDEN_OPTIONS = new Set(["control"]);
/**
 * Options the panel derives from the document instead of offering a control: `bit_depth` (16
 * for 16- and 32-bit documents, insertion.js).
 */
const DOCUMENT_OPTIONS = new Set(["bit_depth"]);

/** Values that switch a `depends_on` parent off. */
const OFF_VALUES = new Set([null, undefined, "", "none", false]);

/**
 * @param {ModeInfo[]} modes
 * @param {string} name
 * @returns {ModeInfo|null} the named mode, else the server's first one (null when none)
 */
function pickMode(modes, name) {
  return modes.find((mode) => mode.name === name) ?? modes[0] ?? null;
}

/**
 * An option's default for a model family (the family's own, else the mode's).
 * @param {OptionInfo} option
 * @param {string|null} [family]
 * @returns {any}
 */
function optionDefault(option, family = null) {
  const perFamily = option.family_defaults ?? null;
  if (family && perFamily && family in perFamily) {
    return perFamily[family];
  }
  return option.default ?? null;
}

/**
 * What an option is set to: the typed text parsed loosely, else its default. Used for
 * `when` and `depends_on`, never to fill the request (empty stays "the server's default").
 * @param {OptionInfo|undefined} option
 * @param {Record<string, string>} values
 * @param {string|null} [family]
 */
function effectiveValue(option, values, family = null) {
  if (!option) {
    return null;
  }
  const text = values[option.name] ?? "";
  if (text === "") {
    return optionDefault(option, family);
  }
  if (option.type === "bool") {
    return text === "true";
  }
  return text;
}

/**
 * The options the panel shows for a mode, in the server's order: not the hidden ones, and a
 * `depends_on` option only while its parent is shown and switched on.
 * @param {ModeInfo} mode
 * @param {Record<string, string>} values
 * @param {string|null} [family]
 * @returns {OptionInfo[]}
 */
function shownOptions(mode, values, family = null) {
  const byName = new Map(mode.options.map((option) => [option.name, option]));
  /** @param {OptionInfo} option @param {number} depth @returns {boolean} */
  const shown = (option, depth) => {
    if (HIDDEN_OPTIONS.has(option.name) || DOCUMENT_OPTIONS.has(option.name) || depth > 8) {
      return false;
    }
    if (!option.depends_on) {
      return true;
    }
    const parent = byName.get(option.depends_on);
    return Boolean(parent && shown(parent, depth + 1) && !OFF_VALUES.has(effectiveValue(parent, values, family)));
  };
  return mode.options.filter((option) => shown(option, 0));
}

/**
 * The image inputs a request with these parameters sends: an input with a `when` condition
 * only while each named option (as sent, else its default) has one of the listed values.
 * @param {ModeInfo} mode
 * @param {Record<string, any>} params
 * @returns {ImageInputInfo[]}
 */
function activeInputs(mode, params) {
  return mode.inputs.filter((input) =>
    Object.entries(input.when ?? {}).every(([name, allowed]) => {
      const option = mode.options.find((item) => item.name === name);
      const value = name in params ? params[name] : option ? optionDefault(option) : null;
      return Array.isArray(allowed) && allowed.map(String).includes(String(value));
    }),
  );
}

/**
 * The `{i}` of a layer name under a declared pattern (0 for a fixed name), or null.
 * @param {LayerInfo} layer
 * @param {string} name
 * @returns {number|null}
 */
function patternNumber(layer, name) {
  if (!layer.count_from || !layer.name.includes("{i}")) {
    return layer.name === name ? 0 : null;
  }
  const [prefix, suffix] = [layer.name.slice(0, layer.name.indexOf("{i}")), layer.name.slice(layer.name.indexOf("{i}") + 3)];
  if (name.length <= prefix.length + suffix.length || !name.startsWith(prefix) || !name.endsWith(suffix)) {
    return null;
  }
  const middle = name.slice(prefix.length, name.length - suffix.length);
  return /^\d+$/.test(middle) ? Number(middle) : null;
}

/**
 * Where a layer goes in its group, bottom → top: the index of its declaration in the mode's
 * `layers`, then its pattern number. Names the mode does not declare go on top.
 * @param {ModeInfo|null} mode
 * @param {string} name
 * @returns {[number, number]}
 */
function layerRank(mode, name) {
  const layers = mode?.layers ?? [];
  for (let index = 0; index < layers.length; index++) {
    const number = patternNumber(layers[index], name);
    if (number !== null) {
      return [index, number];
    }
  }
  return [layers.length, 0];
}

/**
 * The declaration of a returned layer (for its default visibility), or null.
 * @param {ModeInfo|null} mode
 * @param {string} name
 * @returns {LayerInfo|null}
 */
function layerDeclaration(mode, name) {
  return (mode?.layers ?? []).find((layer) => patternNumber(layer, name) !== null) ?? null;
}

/**
 * @param {readonly number[]} a
 * @param {readonly number[]} b
 */
function compareRanks(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) {
      return difference;
    }
  }
  return 0;
}

/**
 * The layers of a mode with a fixed name (a `prompts` option has one text per such layer).
 * @param {ModeInfo} mode
 * @returns {LayerInfo[]}
 */
function fixedLayers(mode) {
  return mode.layers.filter((layer) => !layer.count_from);
}

/**
 * The layer keys one batch item of a result brings, bottom → top: fixed names, patterns
 * repeated once per item of their list (`counts[count_from]`, or the option's value), and
 * without the `only_without` layers whose image input is sent (a scene with `bg` has no
 * `background`). The first is the batch item's lowest layer.
 * @param {ModeInfo|null} mode
 * @param {Record<string, number>} counts list field or option → how many
 * @param {Iterable<string>} sent the image fields the request sends
 * @returns {string[]}
 */
function expectedLayers(mode, counts, sent) {
  const images = new Set(sent);
  /** @type {string[]} */
  const keys = [];
  for (const layer of mode?.layers ?? []) {
    if (layer.only_without && images.has(layer.only_without)) {
      continue;
    }
    if (!layer.count_from) {
      keys.push(layer.name);
      continue;
    }
    const count = Math.max(0, Math.floor(Number(counts[layer.count_from] ?? 0)) || 0);
    for (let i = 0; i < count; i++) {
      keys.push(layer.name.replace("{i}", String(i)));
    }
  }
  return keys;
}

/**
 * A mode's list input whose items are placed by a `region` (a scene's `objects`): the panel
 * can fill it from a layer group (one item per child layer). `title` is the item field that
 * names each result layer (`title_from`), where the child layer's name goes; `region` the
 * item's region field. Null when the mode has none.
 * @param {ModeInfo|null} mode
 * @returns {{list: ListInputInfo, region: string, title: string|null}|null}
 */
function layoutList(mode) {
  for (const list of mode?.lists ?? []) {
    const region = list.item_options.find((option) => option.type === "region");
    if (!region) {
      continue;
    }
    const declared = mode?.layers.find((layer) => layer.count_from === list.field && layer.title_from)?.title_from ?? null;
    const text = list.item_options.find((option) => option.type === "text" && option.name === "prompt") ?? null;
    const title = declared && list.item_options.some((option) => option.name === declared) ? declared : (text?.name ?? null);
    return { list, region: region.name, title };
  }
  return null;
}

/**
 * Optional image inputs the server can do without by generating a layer instead (a layer
 * declared `only_without` that input): the panel offers to leave them out.
 * @param {ModeInfo|null} mode
 * @returns {{input: ImageInputInfo, layer: LayerInfo}[]}
 */
function omittableInputs(mode) {
  /** @type {{input: ImageInputInfo, layer: LayerInfo}[]} */
  const out = [];
  for (const input of mode?.inputs ?? []) {
    const layer = input.required ? undefined : mode?.layers.find((item) => item.only_without === input.field);
    if (layer) {
      out.push({ input, layer });
    }
  }
  return out;
}

module.exports = {
  expectedLayers,
  layoutList,
  omittableInputs,
  HIDDEN_OPTIONS,
  DOCUMENT_OPTIONS,
  pickMode,
  optionDefault,
  effectiveValue,
  shownOptions,
  activeInputs,
  layerRank,
  layerDeclaration,
  compareRanks,
  fixedLayers,
};
