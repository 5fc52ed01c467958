import assert from "node:assert/strict";
import { MAX_MESSAGE_BYTES as MAX } from "../../src/protocol/message_size.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

Deno.test("every message the bridge accepts fits one Deno KV value", async (t) => {
  const store = await openKvStore(":memory:", {
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 3600_000,
    retentionMs: 86_400_000,
  });
  const server = await startBridge({ store });
  const agent = await connectAgent(`${server.wsBase}/?userId=big`);
  try {
    // One character outside Latin-1 makes V8 store the whole string at two bytes a character.
    const fill = (bytes: number) => "王" + "x".repeat(bytes - 3);
    await t.step("the largest body the limit lets through is stored and delivered", async () => {
      const overhead = textXml("oBig", "big", "", "1").length;
      const xml = textXml("oBig", "big", fill(MAX - overhead - 10), "1");
      const res = await post(`${server.base}/send_xml`, xml);
      assert.equal(res.status, 200, res.text);
      const got = await agent.waitFor((e) => e.data["id"] === "1");
      assert.ok(String(got.data.msg?.["content"]).length > 24_000);
    });
    // JSON grows these twofold: the store must not keep them as JSON. (Control characters,
    // sixfold, are refused by the XML reader: XML allows them nowhere.)
    const hostile: Array<[string, string]> = [
      ["20 KB of tabs", "\t".repeat(20_000)],
      ["tabs and line feeds with one outside Latin-1", "王" + "\t\n".repeat((MAX - 400) / 2)],
      ["quotes and backslashes", "王" + '"\\'.repeat((MAX - 400) / 2)],
    ];
    let id = 10;
    for (const [what, content] of hostile) {
      await t.step(`${what}: stored and delivered whole`, async () => {
        const msgId = String(++id);
        const xml = textXml("oBig", "big", `${content}`, msgId);
        assert.ok(new TextEncoder().encode(xml).length <= MAX);
        const res = await post(`${server.base}/send_xml`, xml);
        assert.equal(res.status, 200, res.text);
        const got = await agent.waitFor((e) => e.data["id"] === msgId);
        assert.equal(got.data.msg?.["content"], content);
        const history = await store.readHistory("oBig", null, 1);
        assert.equal(history.items[0]?.msg["content"], content);
      });
    }
    await t.step("control characters are refused by the XML reader, not stored", async () => {
      const res = await post(
        `${server.base}/send_xml`,
        textXml("oBig", "big", "\x01".repeat(20_000), "3"),
      );
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /control character/);
    });
    await t.step("a larger one is refused as too large, not failed inside the store", async () => {
      const res = await post(`${server.base}/send_xml`, textXml("oBig", "big", fill(40_000), "2"));
      assert.equal(res.status, 413, res.text);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});
