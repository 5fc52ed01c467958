// WeChat safe-mode message encryption: AES-256-CBC with the EncodingAESKey, IV = the key's
// first 16 bytes, frame = random(16) + uint32be(length) + message + appid, PKCS#7-padded to
// 32-byte blocks. Holds the current key and, during a key change, the previous one.

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";

/** Which configured key opened a message, and so must seal its answer. */
export type AesKeyName = "current" | "previous";

export interface WechatCrypto {
  /** Throws `SyntaxError` when neither key yields a well-formed frame for our appid. */
  decrypt(encrypt: string): { xml: string; key: AesKeyName };
  /**
   * Uses the current key unless `key` is "previous" (and one is set): during a key change WeChat
   * reads an answer with the key it sent under. `random` (16 bytes) is for tests.
   */
  encrypt(xml: string, random?: string, key?: AesKeyName): string;
}

export interface WechatCryptoOptions {
  aesKey: string;
  appId: string;
  previousAesKey?: string;
  /** How the operator set the previous key, for a message that could not be read with either
   * key (an account's field in ACCOUNTS_FILE); unset: WECHAT_AES_KEY_PREVIOUS. */
  previousKeyName?: string;
}

// WeChat pads to 32-byte blocks, so a pad byte is 1..32 and not the AES block size of 16
// that node:crypto's automatic padding would check.
const PAD_BLOCK = 32;
const RANDOM_BYTES = 16;
const HEADER_BYTES = RANDOM_BYTES + 4;
const AES_BLOCK = 16;

const AES_KEY_PATTERN = /^[A-Za-z0-9+/]{43}$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;

// fatal: a tampered block decrypts to bytes that are almost never valid UTF-8, so this
// catches some tampering that the frame checks alone would let through.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

interface AesKey {
  key: Buffer;
  iv: Buffer;
}

/**
 * Decodes an EncodingAESKey: exactly 43 base64 characters, which with "=" appended decode to
 * the 32-byte AES key. The message never repeats the key, only what is wrong with it.
 */
export function parseAesKey(aesKey: string): Uint8Array {
  return parseNamedAesKey(aesKey, "WECHAT_AES_KEY");
}

/** What is wrong with an EncodingAESKey, never repeating it; undefined for a good one. Start-up
 * checks of ACCOUNTS_FILE use it to name the account and field instead of WECHAT_AES_KEY. */
export function aesKeyFault(aesKey: string): string | undefined {
  if (typeof aesKey !== "string" || aesKey.length === 0) return "it is empty";
  if (aesKey.length !== 43) {
    return `an EncodingAESKey has exactly 43 characters, this one has ${aesKey.length}`;
  }
  if (!AES_KEY_PATTERN.test(aesKey)) {
    return "an EncodingAESKey uses only the characters A-Z, a-z, 0-9, '+' and '/'";
  }
  const length = Buffer.from(aesKey + "=", "base64").length;
  return length === 32 ? undefined : `it decodes to ${length} bytes, not 32`;
}

function parseNamedAesKey(aesKey: string, name: string): Uint8Array {
  const fault = aesKeyFault(aesKey);
  if (fault !== undefined) throw new Error(`Cannot use ${name}: ${fault}`);
  return new Uint8Array(Buffer.from(aesKey + "=", "base64"));
}

function toAesKey(bytes: Uint8Array): AesKey {
  const key = Buffer.from(bytes);
  return { key, iv: key.subarray(0, 16) };
}

/** Validates both keys and the appid now, so a bad configuration stops the server at start-up. */
export function createWechatCrypto(options: WechatCryptoOptions): WechatCrypto {
  const current = toAesKey(parseNamedAesKey(options.aesKey, "WECHAT_AES_KEY"));
  const previous = options.previousAesKey === undefined || options.previousAesKey === ""
    ? undefined
    : toAesKey(parseNamedAesKey(options.previousAesKey, "WECHAT_AES_KEY_PREVIOUS"));
  if (typeof options.appId !== "string" || options.appId.length === 0) {
    throw new Error("Cannot use WECHAT_APPID: it is empty, and safe mode needs it");
  }
  const appId = Buffer.from(options.appId, "utf8");

  return {
    decrypt(encrypt: string) {
      const ciphertext = decodeCiphertext(encrypt);
      const first = decryptFrame(ciphertext, current, appId);
      if (typeof first !== "string") return { xml: first.xml, key: "current" };
      if (previous === undefined) throw new SyntaxError(`Cannot decrypt message: ${first}`);
      const second = decryptFrame(ciphertext, previous, appId);
      if (typeof second !== "string") return { xml: second.xml, key: "previous" };
      throw new SyntaxError(
        `Cannot decrypt message: ${first}; with ${
          options.previousKeyName ?? "WECHAT_AES_KEY_PREVIOUS"
        }: ${second}`,
      );
    },

    encrypt(xml: string, random?: string, key: AesKeyName = "current") {
      const prefix = random === undefined ? randomBytes(RANDOM_BYTES) : Buffer.from(random, "utf8");
      if (prefix.length !== RANDOM_BYTES) {
        throw new TypeError(
          `Cannot encrypt message: random must be ${RANDOM_BYTES} bytes, got ${prefix.length}`,
        );
      }
      const message = Buffer.from(xml, "utf8");
      const length = HEADER_BYTES + message.length + appId.length;
      const pad = PAD_BLOCK - (length % PAD_BLOCK); // 1..32: a full block when already aligned
      const frame = Buffer.alloc(length + pad, pad);
      prefix.copy(frame, 0);
      frame.writeUInt32BE(message.length, RANDOM_BYTES);
      message.copy(frame, HEADER_BYTES);
      appId.copy(frame, HEADER_BYTES + message.length);
      const aes = key === "previous" && previous !== undefined ? previous : current;
      const cipher = createCipheriv("aes-256-cbc", aes.key, aes.iv);
      cipher.setAutoPadding(false);
      return Buffer.concat([cipher.update(frame), cipher.final()]).toString("base64");
    },
  };
}

function decodeCiphertext(encrypt: string): Buffer {
  if (typeof encrypt !== "string" || encrypt.length === 0) {
    throw new SyntaxError("Cannot decrypt message: Encrypt is empty");
  }
  // Buffer.from() skips characters it does not know; refuse them instead.
  if (encrypt.length % 4 !== 0 || !BASE64_PATTERN.test(encrypt)) {
    throw new SyntaxError("Cannot decrypt message: Encrypt is not base64");
  }
  const ciphertext = Buffer.from(encrypt, "base64");
  // 32 bytes is the least a frame can take (20-byte header, appid, at least one pad byte).
  // Multiples of 16 are accepted: WeChat's own decoder takes PKCS#7 to 16-byte blocks too.
  if (ciphertext.length < PAD_BLOCK || ciphertext.length % AES_BLOCK !== 0) {
    throw new SyntaxError(
      `Cannot decrypt message: bad length, ${ciphertext.length} bytes is not a whole number of AES blocks`,
    );
  }
  return ciphertext;
}

/** The message, or the reason this key does not open the frame. */
function decryptFrame(ciphertext: Buffer, aes: AesKey, appId: Buffer): { xml: string } | string {
  const decipher = createDecipheriv("aes-256-cbc", aes.key, aes.iv);
  decipher.setAutoPadding(false);
  const frame = Buffer.concat([decipher.update(ciphertext), decipher.final()]);

  const pad = frame[frame.length - 1] ?? 0;
  if (pad < 1 || pad > PAD_BLOCK) return "bad padding";
  const end = frame.length - pad;
  for (let i = end; i < frame.length - 1; i++) {
    if (frame[i] !== pad) return "bad padding";
  }
  if (end < HEADER_BYTES) return "bad length, the frame is too short";
  const length = frame.readUInt32BE(RANDOM_BYTES);
  if (length > end - HEADER_BYTES) return "bad length, the length field exceeds the frame";
  const appIdStart = HEADER_BYTES + length;
  if (end - appIdStart !== appId.length || !appId.equals(frame.subarray(appIdStart, end))) {
    return "appid mismatch";
  }
  try {
    return { xml: utf8Decoder.decode(frame.subarray(HEADER_BYTES, appIdStart)) };
  } catch {
    return "the message is not UTF-8";
  }
}
