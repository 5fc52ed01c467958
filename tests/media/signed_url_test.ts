import assert from "node:assert/strict";
import { createUrlSigner } from "../../src/media/signed_url.ts";

const KEY = `${"ab".repeat(32)}.mp3`;
const SECRET = "a secret of more than sixteen bytes";

Deno.test("createUrlSigner() signs and verifies media keys", async (t) => {
  const signer = createUrlSigner(SECRET);

  await t.step("a token is 43 base64url characters and verifies for its key", () => {
    const token = signer.sign(KEY);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(signer.verify(KEY, token), true);
  });

  await t.step("the same secret signs the same way, as bytes or as text", () => {
    const again = createUrlSigner(new TextEncoder().encode(SECRET));
    assert.equal(again.sign(KEY), signer.sign(KEY));
  });

  await t.step("a token does not verify for another key or under another secret", () => {
    const other = `${"cd".repeat(32)}.mp3`;
    assert.notEqual(signer.sign(other), signer.sign(KEY));
    assert.equal(signer.verify(other, signer.sign(KEY)), false);
    const stranger = createUrlSigner("another secret, also long enough");
    assert.equal(stranger.verify(KEY, signer.sign(KEY)), false);
  });

  await t.step("every single-character change to a token is refused", () => {
    const token = signer.sign(KEY);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (let i = 0; i < token.length; i++) {
      for (const c of alphabet) {
        if (c === token[i]) continue;
        const changed = token.slice(0, i) + c + token.slice(i + 1);
        assert.equal(signer.verify(KEY, changed), false, `position ${i} as ${c}`);
      }
    }
  });

  await t.step("missing, short, long and padded tokens are refused", () => {
    const token = signer.sign(KEY);
    for (const bad of ["", token.slice(0, -1), token + "A", token + "=", " " + token.slice(1)]) {
      assert.equal(signer.verify(KEY, bad), false, JSON.stringify(bad));
    }
  });

  await t.step("a secret under 16 bytes is refused", () => {
    assert.throws(() => createUrlSigner("short"), RangeError);
    assert.throws(() => createUrlSigner(new Uint8Array(15)), RangeError);
  });
});
