// @ts-check
/**
 * Pixel buffers: bit-depth conversion between the wire's 8-bit straight RGBA and Photoshop's
 * 8/16/32-bit channels, and cropping/padding rectangles of pixels. Pure functions.
 *
 * Photoshop's 16-bit channels run 0..32768 (not 65535). 32-bit documents are linear light
 * (ps-reference/media/imaging.md: their profiles are "… (Linear RGB Profile)"), floats 0..1 and
 * beyond: 8-bit sRGB colour goes through the sRGB → linear curve, alpha stays v / 255.
 */
"use strict";

/** @typedef {8|16|32} Bits */
/** @typedef {Uint8Array|Uint16Array|Float32Array} Channels */
/** @typedef {import("./protocol").Rect} Rect */

/**
 * An 8-bit image: `channels` bytes per pixel (4 = straight RGBA, 1 = mask), row-major.
 * @typedef {{data: Uint8Array, width: number, height: number}} Raster
 */

const MAX_16 = 32768;

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
 * a new `frame`-sized buffer; everything else stays 0 (transparent, or unselected for masks).
 * @param {Uint8Array} src
 * @param {Rect} srcRect
 * @param {Rect} frame
 * @param {number} channels bytes per pixel (4 for RGBA, 1 for masks)
 * @returns {Uint8Array}
 */
function placeInto(src, srcRect, frame, channels) {
  if (src.length !== srcRect.width * srcRect.height * channels) {
    throw new RangeError(
      `pixel buffer holds ${src.length} bytes, expected ${srcRect.width}×${srcRect.height}×${channels}`,
    );
  }
  const out = new Uint8Array(frame.width * frame.height * channels);
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
  intersect,
  union,
  rectFromBounds,
  placeInto,
  anySelected,
};
