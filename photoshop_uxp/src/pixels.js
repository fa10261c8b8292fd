// @ts-check
/**
 * Pixel buffers: bit-depth conversion between the wire's straight RGBA (8-bit, or 16-bit
 * 0..65535 from `?format=rgba16`) and Photoshop's 8/16/32-bit channels, and cropping/padding
 * rectangles of pixels. Pure functions.
 *
 * Photoshop's 16-bit channels run 0..32768 (not 65535; ps-reference/media/imaging.md "Value
 * range": 16 → 0..32768 unless `fullRange`). 32-bit documents are linear light (imaging.md:
 * their profiles are "… (Linear RGB Profile)"), floats 0..1 and beyond: sRGB colour goes through
 * the sRGB → linear curve, alpha stays v / max. Masks (layer masks, selections) are coverage
 * like alpha: never through the colour curve.
 */
"use strict";

/** @typedef {8|16|32} Bits */
/** @typedef {Uint8Array|Uint16Array|Float32Array} Channels */
/** The wire's depths: 8-bit `?format=rgba`, 16-bit (0..65535) `?format=rgba16`. */
/** @typedef {8|16} WireDepth */
/** @typedef {import("./protocol").Rect} Rect */

/**
 * An 8-bit image: `channels` bytes per pixel (4 = straight RGBA, 1 = mask), row-major.
 * @typedef {{data: Uint8Array, width: number, height: number}} Raster
 */

const MAX_16 = 32768;
const MAX_WIRE_16 = 65535;

/**
 * Bits per channel of a document from its `bitsPerChannel` ("bitDepth8" | "bitDepth16" | …).
 * @param {string} bitsPerChannel
 * @returns {Bits}
 */
function documentBits(bitsPerChannel) {
  const bits = { bitDepth8: 8, bitDepth16: 16, bitDepth32: 32 }[bitsPerChannel];
  if (bits === undefined) {
    throw new RangeError(`unsupported bit depth ${bitsPerChannel}`);
  }
  return /** @type {Bits} */ (bits);
}

/** sRGB-encoded 8-bit value → linear light (IEC 61966-2-1), for each byte value. */
const SRGB_TO_LINEAR = Float32Array.from({ length: 256 }, (_, v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
});

/** @param {number} linear @returns {number} the sRGB-encoded value 0..1 */
function linearToSrgb(linear) {
  const c = linear <= 0 ? 0 : linear >= 1 ? 1 : linear;
  return c <= 0.0031308 ? c * 12.92 : 1.055 * Math.pow(c, 1 / 2.4) - 0.055;
}

/**
 * 8-bit straight RGBA (`components` 4) or gray (1) values in the channel type of a
 * `bits`-deep document: 16 → 0..32768; 32 → linear light for colour, v / 255 for alpha.
 * @param {Uint8Array} values
 * @param {Bits} bits
 * @param {number} [components] 4: every 4th value is alpha (kept linear)
 * @returns {Channels}
 */
function fromBytes(values, bits, components = 4) {
  if (bits === 8) {
    return values;
  }
  if (bits === 16) {
    const out = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) {
      out[i] = Math.round((values[i] * MAX_16) / 255);
    }
    return out;
  }
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const alpha = components === 4 && i % 4 === 3;
    out[i] = alpha ? values[i] / 255 : SRGB_TO_LINEAR[values[i]];
  }
  return out;
}

/**
 * The inverse of `fromBytes`: channel values of any depth back to 8 bits (clamped; 32-bit
 * colour through the linear → sRGB curve). Reads ask Photoshop for 8 bits, so this only
 * matters for data that arrives deeper anyway.
 * @param {Channels} values
 * @param {Bits} bits
 * @param {number} [components]
 * @returns {Uint8Array}
 */
function toBytes(values, bits, components = 4) {
  if (bits === 8) {
    return values instanceof Uint8Array ? values : Uint8Array.from(values);
  }
  if (bits === 32) {
    const out = new Uint8Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const alpha = (components === 4 && i % 4 === 3) || (components === 2 && i % 2 === 1);
      const v = Math.round((alpha ? Math.min(Math.max(values[i], 0), 1) : linearToSrgb(values[i])) * 255);
      out[i] = v;
    }
    return out;
  }
  const scale = 255 / MAX_16;
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Math.round(values[i] * scale);
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}

/**
 * Chunky pixels with 1–4 components (Gray, Gray+A, RGB, RGBA) as 8-bit straight RGBA.
 * A missing alpha channel means opaque.
 * @param {Uint8Array} bytes
 * @param {number} components
 * @returns {Uint8Array}
 */
function toRgba(bytes, components) {
  if (components === 4) {
    return bytes;
  }
  if (![1, 2, 3].includes(components) || bytes.length % components !== 0) {
    throw new RangeError(`cannot read ${components}-component pixels`);
  }
  const pixels = bytes.length / components;
  const out = new Uint8Array(pixels * 4);
  for (let p = 0, i = 0; p < pixels; p++, i += components) {
    const o = p * 4;
    if (components >= 3) {
      out[o] = bytes[i];
      out[o + 1] = bytes[i + 1];
      out[o + 2] = bytes[i + 2];
    } else {
      out[o] = out[o + 1] = out[o + 2] = bytes[i];
    }
    out[o + 3] = components === 2 ? bytes[i + 1] : 255;
  }
  return out;
}

/**
 * @param {Rect} a
 * @param {Rect} b
 * @returns {Rect|null} the overlap of two rectangles, or null when they do not overlap
 */
function intersect(a, b) {
  const left = Math.max(a.left, b.left);
  const top = Math.max(a.top, b.top);
  const right = Math.min(a.left + a.width, b.left + b.width);
  const bottom = Math.min(a.top + a.height, b.top + b.height);
  return right > left && bottom > top ? { left, top, width: right - left, height: bottom - top } : null;
}

/**
 * @param {Rect} a
 * @param {Rect} b
 * @returns {Rect} the smallest rectangle holding both
 */
function union(a, b) {
  const left = Math.min(a.left, b.left);
  const top = Math.min(a.top, b.top);
  const right = Math.max(a.left + a.width, b.left + b.width);
  const bottom = Math.max(a.top + a.height, b.top + b.height);
  return { left, top, width: right - left, height: bottom - top };
}

/**
 * Photoshop's `{left, top, right, bottom}` (right/bottom exclusive) as a Rect.
 * @param {{left: number, top: number, right: number, bottom: number}} bounds
 * @returns {Rect}
 */
function rectFromBounds(bounds) {
  return {
    left: bounds.left,
    top: bounds.top,
    width: bounds.right - bounds.left,
    height: bounds.bottom - bounds.top,
  };
}

/**
 * Copy the part of `src` (placed at `srcRect` in canvas pixels) that falls inside `frame` into
 * a new `frame`-sized buffer of the same type; everything else stays 0 (transparent, or
 * unselected for masks).
 * @template {Uint8Array|Uint16Array} T
 * @param {T} src
 * @param {Rect} srcRect
 * @param {Rect} frame
 * @param {number} channels values per pixel (4 for RGBA, 1 for masks)
 * @returns {T}
 */
function placeInto(src, srcRect, frame, channels) {
  if (src.length !== srcRect.width * srcRect.height * channels) {
    throw new RangeError(
      `pixel buffer holds ${src.length} values, expected ${srcRect.width}×${srcRect.height}×${channels}`,
    );
  }
  const out = /** @type {T} */ (src instanceof Uint16Array ? new Uint16Array(frame.width * frame.height * channels) : new Uint8Array(frame.width * frame.height * channels));
  const overlap = intersect(srcRect, frame);
  if (overlap === null) {
    return out;
  }
  const rowBytes = overlap.width * channels;
  for (let y = overlap.top; y < overlap.top + overlap.height; y++) {
    const from = ((y - srcRect.top) * srcRect.width + (overlap.left - srcRect.left)) * channels;
    const to = ((y - frame.top) * frame.width + (overlap.left - frame.left)) * channels;
    out.set(src.subarray(from, from + rowBytes), to);
  }
  return out;
}

/**
 * Straight RGBA from the wire (8-bit, or 16-bit 0..65535) in the channel type of a `bits`-deep
 * document. 8-bit data goes through `fromBytes` unchanged (what the panel has always inserted);
 * 16-bit data: 16-bit documents get `round(v · 32768 / 65535)`, 32-bit documents linear light
 * (colour through the sRGB → linear curve, alpha v / 65535), 8-bit documents `round(v / 257)`.
 * @param {Uint8Array|Uint16Array} values
 * @param {WireDepth} depth
 * @param {Bits} bits
 * @param {number} [components] 4: every 4th value is alpha; 1: a mask (coverage, as alpha)
 * @returns {Channels}
 */
function wireToDocument(values, depth, bits, components = 4) {
  if (depth === 8) {
    return components === 1 ? maskToDocument(/** @type {Uint8Array} */ (values), bits) : fromBytes(/** @type {Uint8Array} */ (values), bits, components);
  }
  if (bits === 8) {
    return Uint8Array.from(values, (v) => Math.round(v / 257));
  }
  if (bits === 16) {
    return Uint16Array.from(values, (v) => Math.round((v * MAX_16) / MAX_WIRE_16));
  }
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const c = values[i] / MAX_WIRE_16;
    const coverage = components === 1 || (components === 4 && i % 4 === 3);
    out[i] = coverage ? c : c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  }
  return out;
}

/**
 * An 8-bit mask (coverage, 255 = full) in a `bits`-deep document's channel type: 16 →
 * 0..32768, 32 → v / 255 (coverage is never gamma-encoded).
 * @param {Uint8Array} mask
 * @param {Bits} bits
 * @returns {Channels}
 */
function maskToDocument(mask, bits) {
  if (bits === 8) {
    return mask;
  }
  return bits === 16 ? Uint16Array.from(mask, (v) => Math.round((v * MAX_16) / 255)) : Float32Array.from(mask, (v) => v / 255);
}

/**
 * A mask read from Photoshop (gray, 1 value per pixel, any depth) as 8 bits: the inverse of
 * `maskToDocument`, clamped.
 * @param {Channels} values
 * @param {Bits} bits
 * @returns {Uint8Array}
 */
function maskToBytes(values, bits) {
  if (bits === 8) {
    return values instanceof Uint8Array ? values : Uint8Array.from(values);
  }
  const max = bits === 16 ? MAX_16 : 1;
  return Uint8Array.from(values, (v) => Math.max(0, Math.min(255, Math.round((v / max) * 255))));
}

/**
 * Straight RGBA split into opaque colour and its alpha as a mask (a layer with a layer mask):
 * the colour keeps the decoded RGB under every alpha, 0 included; its alpha is the maximum.
 * @template {Uint8Array|Uint16Array} T
 * @param {T} rgba
 * @param {number} opaque the maximum value of the type (255 or 65535)
 * @returns {{color: T, alpha: T}}
 */
function splitAlpha(rgba, opaque) {
  const color = /** @type {T} */ (rgba.slice());
  const alpha = /** @type {T} */ (rgba instanceof Uint16Array ? new Uint16Array(rgba.length / 4) : new Uint8Array(rgba.length / 4));
  for (let p = 0; p < alpha.length; p++) {
    alpha[p] = rgba[p * 4 + 3];
    color[p * 4 + 3] = opaque;
  }
  return { color, alpha };
}

/**
 * True when any byte of a mask is non-zero.
 * @param {Uint8Array} mask
 */
function anySelected(mask) {
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] !== 0) {
      return true;
    }
  }
  return false;
}

module.exports = {
  SRGB_TO_LINEAR,
  linearToSrgb,
  documentBits,
  fromBytes,
  toBytes,
  toRgba,
  wireToDocument,
  maskToDocument,
  maskToBytes,
  splitAlpha,
  intersect,
  union,
  rectFromBounds,
  placeInto,
  anySelected,
};
