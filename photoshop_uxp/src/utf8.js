// @ts-check
/**
 * UTF-8 encoding and decoding. UXP does not document TextEncoder/TextDecoder, so the panel
 * uses the platform's when present and these small loops otherwise.
 */
"use strict";

/**
 * @param {string} text
 * @returns {Uint8Array}
 */
function encodeUtf8(text) {
  /** @type {number[]} */
  const out = [];
  for (const char of text) {
    const code = /** @type {number} */ (char.codePointAt(0));
    if (code < 0x80) {
      out.push(code);
    } else if (code < 0x800) {
      out.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    } else {
      out.push(
        0xf0 | (code >> 18),
        0x80 | ((code >> 12) & 0x3f),
        0x80 | ((code >> 6) & 0x3f),
        0x80 | (code & 0x3f),
      );
    }
  }
  return Uint8Array.from(out);
}

/**
 * Decode UTF-8; malformed sequences become U+FFFD.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
function decodeUtf8(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; ) {
    const lead = bytes[i];
    const length = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 0;
    if (length === 0 || i + length > bytes.length) {
      text += "\ufffd";
      i += 1;
      continue;
    }
    let code = length === 1 ? lead : lead & (0xff >> (length + 1));
    let valid = true;
    for (let k = 1; k < length; k++) {
      const next = bytes[i + k];
      valid = valid && (next & 0xc0) === 0x80;
      code = (code << 6) | (next & 0x3f);
    }
    text += valid && code <= 0x10ffff ? String.fromCodePoint(code) : "\ufffd";
    i += valid ? length : 1;
  }
  return text;
}

/** @type {(text: string) => Uint8Array} */
const utf8 =
  typeof TextEncoder === "function"
    ? (text) => new TextEncoder().encode(text)
    : encodeUtf8;

module.exports = { utf8, encodeUtf8, decodeUtf8 };
