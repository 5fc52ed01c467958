import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  createUrlSigner,
  mediaUrlOf,
  renewMediaUrl,
  renewMediaUrls,
} from "../../src/media/signed_url.ts";

const KEY = `${"ab".repeat(32)}.mp3`;
const SECRET = "a secret of more than sixteen bytes";
const HOUR = 3600_000;

/** A fake clock the test moves. */
function clock(start = Date.UTC(2026, 0, 1, 8, 30)) {
  let t = start;
  return { now: () => t, jump: (ms: number) => (t += ms) };
}

function parts(query: string): { e: string; t: string } {
  const q = new URLSearchParams(query);
  return { e: q.get("e")!, t: q.get("t")! };
}

Deno.test("createUrlSigner() signs media keys with a lifetime", async (t) => {
  const time = clock();
  const signer = createUrlSigner(SECRET, { ttlS: 24 * 3600, now: time.now });

  await t.step("a query carries its expiry (rounded up to the hour) and a 43-char token", () => {
    const { e, t: token } = parts(signer.query(KEY));
    assert.equal(Number(e), Date.UTC(2026, 0, 2, 9) / 1000);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(signer.check(KEY, e, token), "ok");
  });

  await t.step("the same secret signs the same way, as bytes or as text", () => {
    const again = createUrlSigner(new TextEncoder().encode(SECRET), { now: time.now });
    assert.equal(again.query(KEY), signer.query(KEY));
  });

  await t.step("past its expiry a URL is expired, still recognised as ours", () => {
    const { e, t: token } = parts(signer.query(KEY));
    time.jump(25 * HOUR);
    assert.equal(signer.check(KEY, e, token), "expired");
    assert.equal(signer.issued(KEY, e, token), true);
  });

  await t.step("the expiry cannot be moved: the token covers it", () => {
    const { e, t: token } = parts(signer.query(KEY));
    assert.equal(signer.check(KEY, String(Number(e) + 3600), token), "bad");
    assert.equal(signer.check(KEY, null, token), "bad");
  });

  await t.step("a token does not verify for another key or under another secret", () => {
    const { e, t: token } = parts(signer.query(KEY));
    assert.equal(signer.check(`${"cd".repeat(32)}.mp3`, e, token), "bad");
    const stranger = createUrlSigner("another secret, also long enough", { now: time.now });
    assert.equal(stranger.check(KEY, e, token), "bad");
  });

  await t.step("every single-character change to a token is refused", () => {
    const { e, t: token } = parts(signer.query(KEY));
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (let i = 0; i < token.length; i++) {
      for (const c of alphabet) {
        if (c === token[i]) continue;
        const changed = token.slice(0, i) + c + token.slice(i + 1);
        assert.equal(signer.check(KEY, e, changed), "bad", `position ${i} as ${c}`);
      }
    }
  });

  await t.step("missing, short, long and padded tokens and odd expiries are refused", () => {
    const { e, t: token } = parts(signer.query(KEY));
    for (
      const bad of [null, "", token.slice(0, -1), token + "A", token + "=", " " + token.slice(1)]
    ) {
      assert.equal(signer.check(KEY, e, bad), "bad", JSON.stringify(bad));
    }
    for (const odd of ["", "-1", "1e12", " 1", "9".repeat(13)]) {
      assert.equal(signer.check(KEY, odd, token), "bad", JSON.stringify(odd));
    }
  });

  await t.step("a URL signed before URLs had a lifetime is ours, and expired", () => {
    const v1 = createHmac("sha256", SECRET).update("bridge-media-v1\n").update(KEY).digest()
      .toString("base64url");
    assert.equal(signer.check(KEY, null, v1), "expired");
    assert.equal(signer.issued(KEY, null, v1), true);
  });

  await t.step("a secret under 16 bytes is refused", () => {
    assert.throws(() => createUrlSigner("short"), RangeError);
    assert.throws(() => createUrlSigner(new Uint8Array(15)), RangeError);
  });
});

Deno.test("renewMediaUrl() renews only media URLs the bridge signed", async (t) => {
  const time = clock();
  const signer = createUrlSigner(SECRET, { ttlS: 3600, now: time.now });
  const old = mediaUrlOf(signer, "https://bridge.example.com/", KEY);

  await t.step("an expired URL gets a fresh expiry, same origin and key", () => {
    time.jump(5 * HOUR);
    const renewed = renewMediaUrl(signer, old)!;
    assert.ok(renewed.startsWith(`https://bridge.example.com/media/${KEY}?e=`), renewed);
    const url = new URL(renewed);
    assert.equal(
      signer.check(KEY, url.searchParams.get("e"), url.searchParams.get("t")),
      "ok",
    );
  });

  await t.step("foreign or forged URLs are not signed", () => {
    for (
      const bad of [
        "https://example.com/pic.png",
        old.replace(/t=[^&]+$/, `t=${"A".repeat(43)}`),
        old.replace(KEY, `${"cd".repeat(32)}.mp3`),
        `${old}&x=1`,
      ]
    ) {
      assert.equal(renewMediaUrl(signer, bad), null, bad);
    }
  });

  await t.step("renewMediaUrls() renews a msg's media fields and keeps the rest", () => {
    const msg = { media_path: old, thumb_path: old, format: "amr", url: "https://example.com/" };
    const renewed = renewMediaUrls(signer, msg);
    assert.notEqual(renewed["media_path"], old);
    assert.equal(renewed["media_path"], renewMediaUrl(signer, old));
    assert.equal(renewed["format"], "amr");
    assert.equal(renewed["url"], "https://example.com/");
    assert.equal(msg.media_path, old, "the stored msg is not changed");
  });

  await t.step("a stored message's own media fields are renewed whichever key signed them", () => {
    // AGENT_SECRET changed: the key that signed the stored URLs is gone.
    const before = mediaUrlOf(
      createUrlSigner("the agent secret before it changed"),
      "https://b/",
      KEY,
    );
    const stored = { media_path: before, thumb_path: before, content: before };
    const renewed = renewMediaUrls(signer, stored, "in");
    assert.equal(renewed["media_path"], renewMediaUrl(signer, before, { signedBefore: true }));
    assert.equal(renewed["thumb_path"], renewed["media_path"]);
    assert.ok(String(renewed["media_path"]).startsWith(`https://b/media/${KEY}?e=`));
    // What a follower or an agent wrote is theirs: a URL in it is signed only if ours already.
    assert.equal(renewed["content"], before);
    // PUBLIC_URL set since: the bridge's own fields move to it, and only they.
    const moved = renewMediaUrls(signer, stored, "in", "https://public.example.com/");
    assert.ok(String(moved["media_path"]).startsWith(`https://public.example.com/media/${KEY}?e=`));
    assert.equal(moved["content"], before);
    assert.equal(renewMediaUrls(signer, { media_path: before }, "note")["media_path"], before);
    assert.equal(
      renewMediaUrls(signer, { media_url: before }, "out")["media_url"],
      renewed["media_path"],
    );
  });
});
