// One follower writing to a spawned main.ts, and what the agent's history of it holds: for the
// tests that take the store's files away under a running bridge and count what a restart finds.
import assert from "node:assert/strict";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import type { SpawnedBridge } from "../helpers/spawn.ts";

const B = "/im_component/wx_official_account";

/** `send` posts the follower's texts (fresh MsgIds from `firstMsgId`); `history` reads a1's. */
export function followerPosts(followerId: string, firstMsgId: number) {
  let msgId = firstMsgId;
  const posts = {
    /** Posts one text as WeChat would; resolves to "status body". */
    async send(p: SpawnedBridge, content: string): Promise<string> {
      const res = await post(
        `${p.base}${B}/send_xml`,
        textXml(followerId, "gh_account", content, String(msgId++)),
      );
      return `${res.status} ${res.text}`;
    },
    /** The follower's messages in agent a1's history, oldest first. */
    async history(p: SpawnedBridge): Promise<string[]> {
      return (await fullHistory(p.base, "a1", followerId))
        .filter((m) => m.direction === "in")
        .map((m) => String((m.msg as { content?: string }).content));
    },
    /** Texts m`from`..m`to`, each answered success, pushed onto `expected`. */
    async sendEach(p: SpawnedBridge, from: number, to: number, expected: string[]): Promise<void> {
      for (let i = from; i <= to; i++) {
        assert.equal(await posts.send(p, `m${i}`), "200 success");
        expected.push(`m${i}`);
      }
    },
    /** m1..m5 while a1 is online, read by a1 (its assignment notice and the five). */
    async firstFive(p: SpawnedBridge, expected: string[]): Promise<void> {
      const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
      await posts.sendEach(p, 1, 5, expected);
      await a1.waitForCount(6, 5000);
      await a1.close();
    },
  };
  return posts;
}
