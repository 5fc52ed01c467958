// One follower writing to a spawned main.ts, and what the agent's history of it holds: for the
// tests that take the store's files away under a running bridge and count what a restart finds.
import { fullHistory, post, textXml } from "../helpers/agent.ts";
import type { SpawnedBridge } from "../helpers/spawn.ts";

const B = "/im_component/wx_official_account";

/** `send` posts the follower's texts (fresh MsgIds from `firstMsgId`); `history` reads a1's. */
export function followerPosts(followerId: string, firstMsgId: number) {
  let msgId = firstMsgId;
  return {
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
  };
}
