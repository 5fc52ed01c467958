import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv } from "node:crypto";
import { createWechatCrypto, parseAesKey } from "../../src/wechat/crypto.ts";
import { vectors } from "./_vectors.ts";

const KEY_1 = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const KEY_2 = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const KEY_3 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";
const APPID = "wx2c2769f8efd9abc2";

/** The key bytes, decoded without the module under test. */
function keyBytes(aesKey: string): Uint8Array {
  return Uint8Array.from(atob(aesKey + "="), (c) => c.charCodeAt(0));
}

/** Encrypts a frame exactly as given (no padding added), to build malformed messages. */
function encryptRaw(frame: Uint8Array, aesKey: string): string {
  const key = keyBytes(aesKey);
  const cipher = createCipheriv("aes-256-cbc", key, key.subarray(0, 16));
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(frame), cipher.final()]).toString("base64");
}

/** Decrypts without removing any padding, to look at the frame the module produced. */
function decryptRaw(encrypt: string, aesKey: string): Buffer {
  const key = keyBytes(aesKey);
  const decipher = createDecipheriv("aes-256-cbc", key, key.subarray(0, 16));
  decipher.setAutoPadding(false);
  return Buffer.concat([decipher.update(Buffer.from(encrypt, "base64")), decipher.final()]);
}

/** random(16) + uint32be(len) + msg + appid, without padding. */
function frameOf(msg: string, appId: string, length?: number): Buffer {
  const body = Buffer.from(msg, "utf8");
  const header = Buffer.alloc(20, "r");
  header.writeUInt32BE(length ?? body.length, 16);
  return Buffer.concat([header, body, Buffer.from(appId, "utf8")]);
}

function pkcs7(frame: Buffer, block: number): Buffer {
  const pad = block - (frame.length % block);
  return Buffer.concat([frame, Buffer.alloc(pad, pad)]);
}

function assertRefused(fn: () => unknown, reason: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof SyntaxError, `expected a SyntaxError, got ${error}`);
    assert.match(error.message, /^Cannot decrypt message: /);
    assert.match(error.message, reason);
    return true;
  });
}

Deno.test("parseAesKey() decodes 43 characters plus '=' to 32 bytes", async (t) => {
  const keys = new Set([...vectors.encrypt, ...vectors.decrypt].map((v) => v.aes_key));
  for (const aesKey of [...keys, KEY_3]) {
    await t.step(aesKey, () => {
      const key = parseAesKey(aesKey);
      assert.equal(key.length, 32);
      assert.deepEqual([...key], [...keyBytes(aesKey)]);
    });
  }
});

Deno.test("parseAesKey() refuses a bad key with a clear message", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["'abcde' (official sample testIllegalAesKey)", "abcde", /43 characters, this one has 5/],
    ["empty", "", /empty/],
    ["42 characters", KEY_1.slice(0, 42), /43 characters, this one has 42/],
    ["44 characters", KEY_1 + "=", /43 characters, this one has 44/],
    ["44 characters, base64 with its '='", btoa("x".repeat(32)), /43 characters/],
    ["a character outside base64", KEY_1.slice(0, 42) + "-", /only the characters/],
    ["a space", " " + KEY_1.slice(1), /only the characters/],
    ["an '=' inside", KEY_1.slice(0, 42) + "=", /only the characters/],
  ];
  for (const [name, aesKey, reason] of cases) {
    await t.step(name, () => {
      assert.throws(() => parseAesKey(aesKey), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, /^Cannot use WECHAT_AES_KEY: /);
        assert.match(error.message, reason);
        return true;
      });
    });
  }
});

Deno.test("createWechatCrypto() refuses a bad configuration at creation", async (t) => {
  await t.step("a bad current key", () => {
    assert.throws(
      () => createWechatCrypto({ aesKey: "abcde", appId: APPID }),
      /^Error: Cannot use WECHAT_AES_KEY: /,
    );
  });
  await t.step("a bad previous key names WECHAT_AES_KEY_PREVIOUS", () => {
    assert.throws(
      () => createWechatCrypto({ aesKey: KEY_1, appId: APPID, previousAesKey: "abcde" }),
      /Cannot use WECHAT_AES_KEY_PREVIOUS: .*43 characters/,
    );
  });
  await t.step("an empty appid", () => {
    assert.throws(() => createWechatCrypto({ aesKey: KEY_1, appId: "" }), /WECHAT_APPID/);
  });
  await t.step("an empty previous key means none", () => {
    const crypto = createWechatCrypto({ aesKey: KEY_1, appId: APPID, previousAesKey: "" });
    assert.equal(crypto.decrypt(crypto.encrypt("<xml/>")).key, "current");
  });
});

Deno.test("decrypt() opens every public vector", async (t) => {
  for (const v of [...vectors.decrypt, ...vectors.encrypt]) {
    await t.step(v.id, () => {
      const crypto = createWechatCrypto({ aesKey: v.aes_key, appId: v.appid });
      assert.deepEqual(crypto.decrypt(v.encrypt), { xml: v.plaintext, key: "current" });
    });
  }
});

Deno.test("encrypt() reproduces every public vector", async (t) => {
  for (const v of vectors.encrypt) {
    await t.step(v.id, () => {
      const crypto = createWechatCrypto({ aesKey: v.aes_key, appId: v.appid });
      assert.equal(crypto.encrypt(v.plaintext, v.random), v.encrypt);
    });
  }
});

Deno.test("decrypt() refuses an appid that differs", async (t) => {
  for (const v of vectors.decrypt) {
    for (
      const appId of [
        "wx0000000000000000",
        v.appid.slice(0, -1),
        v.appid + "0",
        v.appid.toUpperCase(),
      ]
    ) {
      await t.step(`${v.id} as ${appId}`, () => {
        const crypto = createWechatCrypto({ aesKey: v.aes_key, appId });
        assertRefused(() => crypto.decrypt(v.encrypt), /appid mismatch/);
      });
    }
  }
});

Deno.test("encrypt() and decrypt() round-trip every pad value 1..32", async (t) => {
  const crypto = createWechatCrypto({ aesKey: KEY_1, appId: APPID });
  const fixed = 20 + APPID.length;
  for (let pad = 1; pad <= 32; pad++) {
    // The message length that leaves exactly `pad` bytes to the next 32-byte boundary.
    const length = (((32 - pad - fixed) % 32) + 32) % 32;
    for (const msg of ["x".repeat(length), "x".repeat(length + 64), "中".repeat(length)]) {
      if (Buffer.byteLength(msg) % 32 !== length % 32) continue; // "中" is 3 bytes
      await t.step(`pad ${pad}, ${Buffer.byteLength(msg)}-byte message`, () => {
        const encrypted = crypto.encrypt(msg);
        const frame = decryptRaw(encrypted, KEY_1);
        assert.equal(frame.length % 32, 0);
        assert.deepEqual([...frame.subarray(frame.length - pad)], Array(pad).fill(pad));
        assert.equal(frame.readUInt32BE(16), Buffer.byteLength(msg));
        assert.deepEqual(crypto.decrypt(encrypted), { xml: msg, key: "current" });
      });
    }
  }
  await t.step("multi-byte text", () => {
    for (
      const msg of [
        "我是中文abcd123",
        "emoji 🙂 and é",
        "",
        "<xml><Content><![CDATA[]]></Content></xml>",
      ]
    ) {
      assert.deepEqual(crypto.decrypt(crypto.encrypt(msg)), { xml: msg, key: "current" });
    }
  });
  await t.step("the random prefix changes the ciphertext, not the message", () => {
    const a = crypto.encrypt("same");
    const b = crypto.encrypt("same");
    assert.notEqual(a, b);
    assert.equal(crypto.decrypt(a).xml, crypto.decrypt(b).xml);
  });
  await t.step("random must be 16 bytes", () => {
    assert.throws(() => crypto.encrypt("x", "short"), /random must be 16 bytes, got 5/);
  });
});

Deno.test("decrypt() accepts PKCS#7 to 16-byte blocks, as WeChat's own decoder does", () => {
  const crypto = createWechatCrypto({ aesKey: KEY_1, appId: APPID });
  for (let length = 0; length < 32; length++) {
    const msg = "y".repeat(length);
    const encrypted = encryptRaw(pkcs7(frameOf(msg, APPID), 16), KEY_1);
    assert.deepEqual(crypto.decrypt(encrypted), { xml: msg, key: "current" });
  }
});

Deno.test("decrypt() falls back to WECHAT_AES_KEY_PREVIOUS during a key change", async (t) => {
  const before = createWechatCrypto({ aesKey: KEY_1, appId: APPID });
  const during = createWechatCrypto({ aesKey: KEY_2, appId: APPID, previousAesKey: KEY_1 });
  const after = createWechatCrypto({ aesKey: KEY_3, appId: APPID, previousAesKey: KEY_2 });
  const underKey1 = before.encrypt("<xml>old key</xml>");
  const underKey2 = during.encrypt("<xml>new key</xml>");

  await t.step("a message under the previous key says so", () => {
    assert.deepEqual(during.decrypt(underKey1), { xml: "<xml>old key</xml>", key: "previous" });
  });
  await t.step("a message under the current key says so", () => {
    assert.deepEqual(during.decrypt(underKey2), { xml: "<xml>new key</xml>", key: "current" });
    assert.deepEqual(after.decrypt(underKey2), { xml: "<xml>new key</xml>", key: "previous" });
  });
  await t.step("encrypt() uses the current key", () => {
    const reply = during.encrypt("<xml>reply</xml>");
    assert.equal(decryptRaw(reply, KEY_2).readUInt32BE(16), "<xml>reply</xml>".length);
    assertRefused(() => before.decrypt(reply), /bad padding|bad length|appid mismatch|UTF-8/);
  });
  await t.step("encrypt() under the previous key, for an answer to a message under it", () => {
    const reply = during.encrypt("<xml>reply</xml>", undefined, "previous");
    assert.deepEqual(before.decrypt(reply), { xml: "<xml>reply</xml>", key: "current" });
    const without = createWechatCrypto({ aesKey: KEY_2, appId: APPID });
    assert.equal(during.decrypt(without.encrypt("<xml/>", undefined, "previous")).key, "current");
  });
  await t.step("a message under neither key is refused, with both reasons", () => {
    assertRefused(
      () => after.decrypt(underKey1),
      /: .+; with WECHAT_AES_KEY_PREVIOUS: (bad padding|bad length|appid mismatch|the message)/,
    );
  });
  await t.step("without a previous key, a message under another key is refused", () => {
    const only = createWechatCrypto({ aesKey: KEY_2, appId: APPID });
    assertRefused(() => only.decrypt(underKey1), /bad padding|bad length|appid mismatch|UTF-8/);
  });
  await t.step("the previous key with another appid is still an appid mismatch", () => {
    const other = createWechatCrypto({ aesKey: KEY_1, appId: "wxother" });
    const rotated = createWechatCrypto({ aesKey: KEY_2, appId: APPID, previousAesKey: KEY_1 });
    assertRefused(() => rotated.decrypt(other.encrypt("<xml/>")), /PREVIOUS: appid mismatch/);
  });
});

Deno.test("decrypt() refuses a malformed Encrypt with a SyntaxError", async (t) => {
  const crypto = createWechatCrypto({ aesKey: KEY_1, appId: APPID });
  const good = crypto.encrypt("<xml><Content>hello</Content></xml>");
  const bytes = Buffer.from(good, "base64");

  await t.step("not base64", () => {
    assertRefused(() => crypto.decrypt(""), /empty/);
    assertRefused(() => crypto.decrypt("!!!!"), /not base64/);
    assertRefused(() => crypto.decrypt(good.slice(0, -1)), /not base64/);
    assertRefused(() => crypto.decrypt(good.slice(0, 8) + "*" + good.slice(9)), /not base64/);
    assertRefused(() => crypto.decrypt(good.slice(0, 8) + "\n" + good.slice(9)), /not base64/);
    assertRefused(() => crypto.decrypt(good + " "), /not base64/);
    assertRefused(
      () => crypto.decrypt(good.replace(/\+/g, "-").replace(/\//g, "_") + "-_"),
      /not base64/,
    );
  });
  await t.step("bad length", () => {
    for (const length of [1, 15, 16, 17, 31, 33, 47]) {
      const encrypt = bytes.subarray(0, length).toString("base64");
      assertRefused(() => crypto.decrypt(encrypt), /bad length/);
    }
  });
  await t.step("bad padding", () => {
    const base = frameOf("hello", APPID); // 43 bytes: 21 bytes to the next 32-byte boundary
    const cases: [string, Buffer][] = [
      ["pad byte 0", Buffer.concat([base, Buffer.alloc(21, 0)])],
      ["pad byte 33", Buffer.concat([base, Buffer.alloc(20, 0), Buffer.from([33])])],
      ["pad byte 255", Buffer.concat([base, Buffer.alloc(21, 255)])],
      ["pad bytes that disagree", Buffer.concat([base, Buffer.alloc(20, 20), Buffer.from([21])])],
      ["pad longer than the frame", Buffer.alloc(32, 32)],
    ];
    for (const [name, frame] of cases) {
      assert.equal(frame.length % 32, 0, name);
      const reason = name === "pad longer than the frame" ? /bad length/ : /bad padding/;
      assertRefused(() => crypto.decrypt(encryptRaw(frame, KEY_1)), reason);
    }
  });
  await t.step("a length field beyond the frame", () => {
    for (const length of [6 + APPID.length, 1_000_000, 0xffffffff]) {
      const frame = pkcs7(frameOf("hello", APPID, length), 32);
      assertRefused(() => crypto.decrypt(encryptRaw(frame, KEY_1)), /bad length/);
    }
  });
  await t.step("a length field that cuts into the appid", () => {
    const frame = pkcs7(frameOf("hello", APPID, 7), 32);
    assertRefused(() => crypto.decrypt(encryptRaw(frame, KEY_1)), /appid mismatch/);
  });
  await t.step("a message that is not UTF-8", () => {
    const frame = frameOf("hello", APPID);
    frame[21] = 0xff;
    assertRefused(() => crypto.decrypt(encryptRaw(pkcs7(frame, 32), KEY_1)), /not UTF-8/);
  });
  await t.step("tampered ciphertext in the last two blocks", () => {
    // The last blocks carry the appid and the padding, so any change there is caught.
    for (let i = bytes.length - 32; i < bytes.length; i++) {
      const tampered = Buffer.from(bytes);
      tampered[i] = (tampered[i] ?? 0) ^ 0x01;
      assertRefused(() => crypto.decrypt(tampered.toString("base64")), /./);
    }
  });
  await t.step("tampered ciphertext anywhere never crashes", () => {
    // CBC without a MAC cannot catch every change (msg_signature is what authenticates the
    // Encrypt text); decrypt must still either return a string or throw a SyntaxError.
    const long = crypto.encrypt(`<xml>${"z".repeat(200)}</xml>`, "aaaabbbbccccdddd");
    const longBytes = Buffer.from(long, "base64");
    for (let i = 0; i < longBytes.length; i++) {
      for (const flip of [0x01, 0x80, 0xff]) {
        const tampered = Buffer.from(longBytes);
        tampered[i] = (tampered[i] ?? 0) ^ flip;
        try {
          assert.equal(typeof crypto.decrypt(tampered.toString("base64")).xml, "string");
        } catch (error) {
          assert.ok(error instanceof SyntaxError, `byte ${i}: ${error}`);
        }
      }
    }
  });
  await t.step("a garbled block in the middle is refused as not UTF-8", () => {
    const long = crypto.encrypt(`<xml>${"z".repeat(200)}</xml>`, "aaaabbbbccccdddd");
    const tampered = Buffer.from(long, "base64");
    tampered[100] = (tampered[100] ?? 0) ^ 0x55;
    assertRefused(() => crypto.decrypt(tampered.toString("base64")), /not UTF-8/);
  });
});
