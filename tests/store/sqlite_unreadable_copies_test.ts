// The copy of a journal segment kept for a line no start could read (`<segment>.log.unreadable`)
// holds followers' messages as the journal did. It kept those of a follower who revoked its
// authorization, which README promises deletes its data, and it was kept for ever. Now a forget
// takes that follower's lines out of every copy (a copy made after a forget is made without
// them), and a copy goes once HISTORY_RETENTION_DAYS have passed since its newest commit. Real
// bridges on a real DATA_DIR, asked as WeChat and an agent would.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";
import { revokeXml } from "../media/_forget_media.ts";
import { liveSegment, writeDamaged } from "./_journal_damage.ts";

const B = "/im_component/wx_official_account";
const DAY_MS = 24 * 3600_000;

Deno.test("a forget takes its follower out of the unreadable copies, which go after the retention", async () => {
  const first = Deno.makeTempDirSync({ prefix: "copies-first-" });
  const second = Deno.makeTempDirSync({ prefix: "copies-second-" });
  const env = (dir: string) => ({ STORE: "sqlite", DATA_DIR: dir, HISTORY_RETENTION_DAYS: "2" });
  try {
    const bridge = await startBridge({ env: env(first) });
    let segment: { name: string; text: string };
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    try {
      await waitRouted(bridge, "qa");
      const send = async (xml: string) =>
        assert.equal((await post(`${bridge.base}${B}/send_xml`, xml)).text, "success");
      for (
        const [i, [follower, content]] of [
          ["oEarly", "early-one"],
          ["oGone", "gone-one"],
          ["oStays", "stays-one"],
          ["oStays", "stays-two"],
          ["oGone", "gone-two"],
        ].entries()
      ) {
        await send(textXml(follower!, "gh", content!, `66${i}`));
        await agent.waitFor((e) => e.data.msg?.["content"] === content);
      }
      // Forgotten before the damage is found: its lines must not reach the copy either.
      await send(revokeXml("oEarly"));
      await agent.waitFor((e) => JSON.stringify(e).includes("user_authorization_revoke"));
      segment = liveSegment(first);
    } finally {
      await agent.close();
      await bridge.close();
    }

    // The line of stays-one, whole, with an id that is no string: the start leaves it out.
    const lines = segment.text.split("\n");
    const at = lines.findIndex((l) => l.includes('"content":"stays-one"'));
    assert.ok(at >= 0, "stays-one has a line");
    const copy = `${writeDamaged(second, segment.name, lines, at)}.unreadable`;

    const again = await startBridge({ env: env(second) });
    try {
      const kept = Deno.readTextFileSync(copy);
      assert.ok(kept.includes('"content":"stays-one"'), "the damaged line is kept");
      assert.ok(kept.includes('"content":"gone-one"') && kept.includes('"content":"gone-two"'));
      assert.ok(
        !kept.includes('"oEarly"'),
        "a follower forgotten later in the journal is left out",
      );

      assert.equal((await post(`${again.base}${B}/send_xml`, revokeXml("oGone"))).text, "success");
      const scrubbed = Deno.readTextFileSync(copy);
      assert.ok(!scrubbed.includes('"oGone"'), "the forgotten follower's lines are gone");
      assert.ok(scrubbed.includes('"content":"stays-one"'), "the others' lines stay");
      assert.ok(scrubbed.includes('"content":"stays-two"'));
    } finally {
      await again.close();
    }

    // Within the retention a start keeps the copy; past it (two days after its newest commit),
    // the copy goes, as the rows it held have.
    const within = await startBridge({ env: env(second), now: () => Date.now() + DAY_MS });
    await within.close();
    assert.ok(Deno.statSync(copy).isFile, "kept within the retention");
    const past = await startBridge({
      env: env(second),
      now: () => Date.now() + 2 * DAY_MS + 60_000,
    });
    await past.close();
    assert.throws(() => Deno.statSync(copy), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(first, { recursive: true });
    Deno.removeSync(second, { recursive: true });
  }
});
