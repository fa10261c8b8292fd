// @ts-check
/**
 * Pixel helpers of the fake Photoshop, written independently of src/pixels.js: Photoshop's
 * channel scales, a straight-alpha composite, bounds of a mask, crops.
 */
"use strict";

const ARRAY_OF_BITS = { 8: Uint8Array, 16: Uint16Array, 32: Float32Array };
const MAX = { 8: 255, 16: 32768, 32: 1 };

/** @typedef {{left: number, top: number, right: number, bottom: number}} Bounds */

/*
 * 32-bit documents are linear light: ps-reference/media/imaging.md ("When working with 32 bit
 * images, Photoshop will return color profile names that include … 'Linear Profile'", values
 * 0..1+). The fake stores 32-bit colour as linear floats and converts to and from 8-bit sRGB with
 * the IEC 61966-2-1 curve (as Photoshop does when asked for componentSize 8); alpha is linear.
 */
/** @param {number} c sRGB-encoded 0..1 */
const toLinear = (c) => (c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4));
/** @param {number} c linear 0..1 (clamped) */
const toSrgb = (c) => {
  const x = Math.min(Math.max(c, 0), 1);
  return x <= 0.0031308 ? x * 12.92 : 1.055 * Math.pow(x, 1 / 2.4) - 0.055;
};

/** @param {number} v @param {8|16|32} bits @param {boolean} [alpha] */
function fromByte(v, bits, alpha = false) {
  return bits === 8 ? v : bits === 16 ? Math.round((v * 32768) / 255) : alpha ? v / 255 : toLinear(v / 255);
}

/** @param {Uint8Array} values RGBA @param {8|16|32} bits */
function fromBytes8Array(values, bits) {
  const out = new ARRAY_OF_BITS[bits](values.length);
  for (let i = 0; i < values.length; i++) out[i] = fromByte(values[i], bits, i % 4 === 3);
  return out;
}

/** @param {Uint8Array|Uint16Array|Float32Array} values RGBA @param {8|16|32} bits */
function toBytes(values, bits) {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = bits === 32 && i % 4 !== 3 ? toSrgb(values[i]) : values[i] / MAX[bits];
    out[i] = Math.max(0, Math.min(255, Math.round(v * 255)));
  }
  return out;
}

/** Straight-alpha "over" of the visible layers, bottom to top, as 8-bit RGBA. @param {any} doc */
function composite(doc) {
  const out = new Float64Array(doc.width * doc.height * 4);
  /** @param {any[]} layers */
  const draw = (layers) => {
    for (const layer of [...layers].reverse()) {
      if (!layer.visible) continue;
      if (layer.kind === "group") {
        draw(layer.layers);
        continue;
      }
      if (!layer.pixels) continue; // adjustment layers: the fake does not apply them
      const src = maskedBytes(layer, doc);
      for (let p = 0; p < doc.width * doc.height; p++) {
        const a = src[p * 4 + 3] / 255;
        if (a === 0) continue;
        const b = out[p * 4 + 3];
        const outA = a + b * (1 - a);
        for (let c = 0; c < 3; c++) {
          out[p * 4 + c] = (src[p * 4 + c] * a + out[p * 4 + c] * b * (1 - a)) / outA;
        }
        out[p * 4 + 3] = outA;
      }
    }
  };
  draw(doc.layers);
  const bytes = new Uint8Array(out.length);
  for (let p = 0; p < doc.width * doc.height; p++) {
    for (let c = 0; c < 3; c++) bytes[p * 4 + c] = Math.round(out[p * 4 + c]);
    bytes[p * 4 + 3] = Math.round(out[p * 4 + 3] * 255);
  }
  return bytes;
}

/**
 * A layer's pixels as 8-bit RGBA with its user and vector masks applied to alpha.
 * @param {any} layer @param {any} doc
 */
function maskedBytes(layer, doc) {
  const src = toBytes(layer.pixels, doc.bits);
  // The user mask is in the document's depth, the vector mask rendered as 8 bits.
  for (const [mask, max] of [[layer.userMask, MAX[/** @type {8|16|32} */ (doc.bits)]], [layer.vectorMask, 255]]) {
    if (!mask) continue;
    for (let p = 0; p < mask.length; p++) src[p * 4 + 3] = Math.round((src[p * 4 + 3] * Math.min(Math.max(mask[p], 0), max)) / max);
  }
  return src;
}

/**
 * @param {ArrayLike<number>} mask non-zero = inside
 * @param {number} width
 * @param {number} height
 */
function maskRect(mask, width, height) {
  let left = width, top = height, right = 0, bottom = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (mask[y * width + x]) {
        left = Math.min(left, x);
        top = Math.min(top, y);
        right = Math.max(right, x + 1);
        bottom = Math.max(bottom, y + 1);
      }
    }
  }
  return right > left ? { left, top, right, bottom, width: right - left, height: bottom - top } : null;
}

/** @param {Bounds} a @param {any} b @returns {Bounds} */
function intersectBounds(a, b) {
  const right = b.right ?? b.left + b.width;
  const bottom = b.bottom ?? b.top + b.height;
  const out = { left: Math.max(a.left, b.left), top: Math.max(a.top, b.top), right: Math.min(a.right, right), bottom: Math.min(a.bottom, bottom) };
  if (out.right <= out.left || out.bottom <= out.top) throw new Error("sourceBounds outside the image");
  return out;
}

/**
 * @template {Uint8Array|Uint16Array|Float32Array} T
 * @param {T} src canvas-sized @param {number} width @param {Bounds} rect @param {number} channels
 * @returns {T} the same type
 */
function crop(src, width, rect, channels) {
  const w = rect.right - rect.left;
  const out = /** @type {T} */ (new (/** @type {any} */ (src.constructor))(w * (rect.bottom - rect.top) * channels));
  for (let y = rect.top; y < rect.bottom; y++) {
    const from = (y * width + rect.left) * channels;
    out.set(src.subarray(from, from + w * channels), (y - rect.top) * w * channels);
  }
  return out;
}

/** @param {any} layer @param {any} group */
function isInside(layer, group) {
  for (let p = layer.parent; p; p = p.parent) if (p === group) return true;
  return false;
}

module.exports = { ARRAY_OF_BITS, MAX, maskedBytes, composite, crop, fromByte, fromBytes8Array, intersectBounds, isInside, maskRect, toBytes };
