import assert from "node:assert/strict";
import {
  computeSignature,
  isSameSignature,
  verifyMessageSignature,
  verifyRequestSignature,
} from "../../src/wechat/signature.ts";
import { type MessageVector, type MsgSignatureVector, vectors } from "./_vectors.ts";

const signedMessages = [...vectors.encrypt, ...vectors.decrypt, ...vectors.msg_signature].filter(
  (v): v is (MessageVector | MsgSignatureVector) & {
    token: string;
    timestamp: string;
    nonce: string;
    msg_signature: string;
  } =>
    v.token !== undefined && v.timestamp !== undefined && v.nonce !== undefined &&
    v.msg_signature !== undefined,
);

Deno.test("the vector file has what these tests expect", () => {
  assert.ok(vectors.signature.length >= 2);
  assert.ok(vectors.signature.some((v) => v.must_fail_with !== undefined));
  assert.ok(signedMessages.length >= 3);
});

Deno.test("computeSignature() matches every signature vector", async (t) => {
  for (const v of vectors.signature) {
    await t.step(v.id, () => {
      assert.equal(computeSignature(v.token, v.timestamp, v.nonce), v.signature);
      // The order of the arguments does not matter: they are sorted.
      assert.equal(computeSignature(v.nonce, v.token, v.timestamp), v.signature);
    });
  }
});

Deno.test("computeSignature() matches every msg_signature vector", async (t) => {
  for (const v of signedMessages) {
    await t.step(v.id, () => {
      assert.equal(computeSignature(v.token, v.timestamp, v.nonce, v.encrypt), v.msg_signature);
    });
  }
});

Deno.test("computeSignature() sorts before concatenating", () => {
  // sha1("abc"), whatever order the parts come in.
  const sha1Abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
  assert.equal(computeSignature("c", "a", "b"), sha1Abc);
  assert.equal(computeSignature("b", "c", "a"), sha1Abc);
  assert.equal(computeSignature("abc"), sha1Abc);
});

Deno.test("isSameSignature()", async (t) => {
  const expected = "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff";
  await t.step("equal strings", () => assert.equal(isSameSignature(expected, expected), true));
  await t.step("one character off", () => {
    assert.equal(isSameSignature(expected, expected.slice(0, -1) + "e"), false);
  });
  await t.step("missing", () => {
    assert.equal(isSameSignature(expected, null), false);
    assert.equal(isSameSignature(expected, undefined), false);
    assert.equal(isSameSignature(expected, ""), false);
  });
  await t.step("different length", () => {
    assert.equal(isSameSignature(expected, expected.slice(0, -1)), false);
    assert.equal(isSameSignature(expected, expected + "0"), false);
  });
  await t.step("same length in UTF-16 but not in bytes", () => {
    assert.equal(isSameSignature(expected, expected.slice(0, -1) + "é"), false);
  });
});

Deno.test("verifyRequestSignature() accepts every signature vector", async (t) => {
  for (const v of vectors.signature) {
    await t.step(v.id, () => {
      const params = new URLSearchParams({
        signature: v.signature,
        timestamp: v.timestamp,
        nonce: v.nonce,
        echostr: "5837397520665436492",
      });
      assert.equal(verifyRequestSignature(v.token, params), true);
    });
  }
});

Deno.test("verifyRequestSignature() refuses what it must", async (t) => {
  for (const v of vectors.signature) {
    const good = { signature: v.signature, timestamp: v.timestamp, nonce: v.nonce };
    if (v.must_fail_with !== undefined) {
      const mustFail = v.must_fail_with;
      await t.step(`${v.id}: must_fail_with`, () => {
        const params = new URLSearchParams({ ...good, signature: mustFail });
        assert.equal(verifyRequestSignature(v.token, params), false);
      });
    }
    await t.step(`${v.id}: another token`, () => {
      assert.equal(verifyRequestSignature(v.token + "x", new URLSearchParams(good)), false);
    });
    await t.step(`${v.id}: another timestamp`, () => {
      const params = new URLSearchParams({ ...good, timestamp: String(Number(v.timestamp) + 1) });
      assert.equal(verifyRequestSignature(v.token, params), false);
    });
    await t.step(`${v.id}: another nonce`, () => {
      const params = new URLSearchParams({ ...good, nonce: v.nonce + "1" });
      assert.equal(verifyRequestSignature(v.token, params), false);
    });
    await t.step(`${v.id}: upper-case hex is not the signature WeChat sends`, () => {
      const params = new URLSearchParams({ ...good, signature: v.signature.toUpperCase() });
      assert.equal(verifyRequestSignature(v.token, params), false);
    });
    await t.step(`${v.id}: missing parameters`, () => {
      for (const name of ["signature", "timestamp", "nonce"]) {
        const params = new URLSearchParams(good);
        params.delete(name);
        assert.equal(verifyRequestSignature(v.token, params), false, name);
      }
    });
  }
  await t.step("an empty token never verifies", () => {
    const params = new URLSearchParams({
      signature: computeSignature("", "1", "2"),
      timestamp: "1",
      nonce: "2",
    });
    assert.equal(verifyRequestSignature("", params), false);
  });
});

Deno.test("verifyMessageSignature() accepts every msg_signature vector", async (t) => {
  for (const v of signedMessages) {
    await t.step(v.id, () => {
      const params = new URLSearchParams({
        signature: computeSignature(v.token, v.timestamp, v.nonce),
        timestamp: v.timestamp,
        nonce: v.nonce,
        encrypt_type: "aes",
        msg_signature: v.msg_signature,
      });
      assert.equal(verifyMessageSignature(v.token, params, v.encrypt), true);
    });
  }
});

Deno.test("verifyMessageSignature() checks msg_signature over the Encrypt text", async (t) => {
  for (const v of signedMessages) {
    const plain = computeSignature(v.token, v.timestamp, v.nonce);
    const good = {
      signature: plain,
      timestamp: v.timestamp,
      nonce: v.nonce,
      encrypt_type: "aes",
      msg_signature: v.msg_signature,
    };
    await t.step(`${v.id}: the plain signature is not a msg_signature`, () => {
      // wechatpy #739, WxJava #84: checking the plain signature leaves Encrypt unauthenticated.
      const params = new URLSearchParams({ ...good, msg_signature: plain });
      assert.equal(verifyMessageSignature(v.token, params, v.encrypt), false);
    });
    await t.step(`${v.id}: a valid plain signature alone is not enough`, () => {
      const params = new URLSearchParams(good);
      params.delete("msg_signature");
      assert.equal(verifyRequestSignature(v.token, params), true);
      assert.equal(verifyMessageSignature(v.token, params, v.encrypt), false);
    });
    await t.step(`${v.id}: another Encrypt text`, () => {
      const other = v.encrypt.slice(0, 10) + (v.encrypt[10] === "A" ? "B" : "A") +
        v.encrypt.slice(11);
      assert.equal(verifyMessageSignature(v.token, new URLSearchParams(good), other), false);
      assert.equal(verifyMessageSignature(v.token, new URLSearchParams(good), ""), false);
    });
    await t.step(`${v.id}: another token, timestamp or nonce`, () => {
      assert.equal(
        verifyMessageSignature(v.token + "x", new URLSearchParams(good), v.encrypt),
        false,
      );
      const later = new URLSearchParams({ ...good, timestamp: v.timestamp + "0" });
      assert.equal(verifyMessageSignature(v.token, later, v.encrypt), false);
      const otherNonce = new URLSearchParams({ ...good, nonce: v.nonce + "0" });
      assert.equal(verifyMessageSignature(v.token, otherNonce, v.encrypt), false);
    });
  }
});
