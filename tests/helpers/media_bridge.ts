// A bridge whose WeChat is the fake one (tools/fake_wechat.ts), with agent A connected: the
// setup of the tests that follow a follower's media from media/get to the agent.

import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, type TestAgent } from "./agent.ts";
import type { Effects } from "../../src/server.ts";
import { startBridge, type TestBridge } from "./server.ts";

const APPID = "wxtest";
const SECRET = "secret";

/** Runs `fn` with the bridge (more `env` on top, `effects` swapped), the fake WeChat and agent
 * A; closes all. */
export async function withMediaBridge(
  env: Record<string, string>,
  fn: (server: TestBridge, fake: FakeWechat, agent: TestAgent) => Promise<void>,
  effects: Effects = {},
): Promise<void> {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  const server = await startBridge({
    ...effects,
    env: {
      WECHAT_APPID: APPID,
      WECHAT_SECRET: SECRET,
      WECHAT_API_BASE: fake.url,
      // The fake serves videos itself (video_url), on its own host and port.
      MEDIA_ALLOWED_HOSTS: new URL(fake.url).host,
      ...env,
    },
  });
  const agent = await connectAgent(
    `${server.wsBase}/im_component/wx_official_account/msg?userid=A`,
  );
  try {
    await fn(server, fake, agent);
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
}
