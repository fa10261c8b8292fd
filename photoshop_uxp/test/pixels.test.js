"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const pixels = require("../src/pixels.js");

test("16-bit channels use Photoshop's 0..32768 scale: round(v * 32768 / 255)", () => {
  const all = Uint8Array.from({ length: 256 }, (_, v) => v);
  const out = pixels.fromBytes(all, 16);
  assert.ok(out instanceof Uint16Array);
  assert.equal(out[0], 0);
  assert.equal(out[255], 32768);
  assert.equal(out[128], 16448); // 128 * 32768 / 255 = 16448.25
  for (let v = 0; v < 256; v++) {
    assert.equal(out[v], Math.round((v * 32768) / 255));
  }
  assert.deepEqual(pixels.toBytes(out, 16), all, "reading 16-bit back gives the same bytes");
});

test("32-bit documents are linear light: colour through the sRGB → linear curve, alpha v / 255, and back exactly", () => {
  const all = Uint8Array.from({ length: 256 * 4 }, (_, i) => i >> 2);
  const out = pixels.fromBytes(all, 32);
  assert.ok(out instanceof Float32Array);
  // IEC 61966-2-1 reference points, computed independently of the plugin's table.
  const linear = (/** @type {number} */ v) => (v / 255 <= 0.04045 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  for (const v of [0, 1, 10, 11, 51, 128, 188, 254, 255]) {
    assert.ok(Math.abs(out[v * 4] - linear(v)) < 1e-6, `R of ${v}`);
    assert.equal(out[v * 4 + 3], Math.fround(v / 255), `alpha of ${v} stays linear`);
  }
  assert.ok(Math.abs(out[128 * 4] - 0.2158605) < 1e-6, "sRGB 128 is about 21.6 % linear, not 50 %");
  assert.equal(out[255 * 4], 1);
  assert.deepEqual(pixels.toBytes(out, 32), all, "reading back gives the same bytes");
  assert.deepEqual(pixels.toBytes(Float32Array.from([-0.5, 1.7, 0.2158605, 0.5]), 32), Uint8Array.from([0, 255, 128, 128]), "HDR values clamp");
});

test("8-bit data passes through untouched", () => {
  const data = Uint8Array.from([1, 2, 3, 4]);
  assert.equal(pixels.fromBytes(data, 8), data);
  assert.equal(pixels.toBytes(data, 8), data);
});

test("documentBits maps Photoshop's bitsPerChannel and refuses 1-bit", () => {
  assert.equal(pixels.documentBits("bitDepth8"), 8);
  assert.equal(pixels.documentBits("bitDepth16"), 16);
  assert.equal(pixels.documentBits("bitDepth32"), 32);
  assert.throws(() => pixels.documentBits("bitDepth1"), RangeError);
});

test("toRgba expands gray, gray+alpha and RGB to straight RGBA", () => {
  assert.deepEqual(pixels.toRgba(Uint8Array.from([10, 20, 30]), 3), Uint8Array.from([10, 20, 30, 255]));
  assert.deepEqual(pixels.toRgba(Uint8Array.from([7, 100]), 2), Uint8Array.from([7, 7, 7, 100]));
  assert.deepEqual(pixels.toRgba(Uint8Array.from([7]), 1), Uint8Array.from([7, 7, 7, 255]));
  assert.throws(() => pixels.toRgba(Uint8Array.from([1, 2]), 3), RangeError);
});

test("placeInto copies the overlap at the right offset and leaves the rest transparent", () => {
  // A 2×2 single-channel image at (1, 1) placed into the frame (0, 0, 4, 3).
  const src = Uint8Array.from([1, 2, 3, 4]);
  const out = pixels.placeInto(src, { left: 1, top: 1, width: 2, height: 2 }, { left: 0, top: 0, width: 4, height: 3 }, 1);
  assert.deepEqual(Array.from(out), [0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0]);
  // Cropping: the frame cuts the image's left column.
  const cropped = pixels.placeInto(src, { left: 1, top: 1, width: 2, height: 2 }, { left: 2, top: 1, width: 1, height: 2 }, 1);
  assert.deepEqual(Array.from(cropped), [2, 4]);
  // No overlap: all zero.
  const none = pixels.placeInto(src, { left: 1, top: 1, width: 2, height: 2 }, { left: 5, top: 5, width: 2, height: 1 }, 1);
  assert.deepEqual(Array.from(none), [0, 0]);
  assert.throws(() => pixels.placeInto(src, { left: 0, top: 0, width: 3, height: 2 }, { left: 0, top: 0, width: 1, height: 1 }, 1), RangeError);
});

test("rectangle helpers", () => {
  const a = { left: 0, top: 0, width: 10, height: 10 };
  const b = { left: 5, top: 8, width: 10, height: 10 };
  assert.deepEqual(pixels.intersect(a, b), { left: 5, top: 8, width: 5, height: 2 });
  assert.equal(pixels.intersect(a, { left: 10, top: 0, width: 1, height: 1 }), null);
  assert.deepEqual(pixels.union(a, b), { left: 0, top: 0, width: 15, height: 18 });
  assert.deepEqual(pixels.rectFromBounds({ left: 3, top: 4, right: 10, bottom: 6 }), { left: 3, top: 4, width: 7, height: 2 });
  assert.equal(pixels.anySelected(new Uint8Array(4)), false);
  assert.equal(pixels.anySelected(Uint8Array.from([0, 0, 1])), true);
});
