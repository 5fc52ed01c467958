// user_authorization_revoke (WeChat: 及时删除该用户信息) deletes the follower's contact, history
// and queue, but each agent's log keeps what it was sent for at least 48 h: an agent (or anyone
// holding its token) reconnecting with since=0 was handed the forgotten follower's messages
// and the replies to them again, and its events (a location report) as 102s about it. The replay
// leaves them out, the revoke's own notice and everything else comes back.

import assert from "node:assert/strict";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const REDIS_URL = await findTestRedis();

/** The revoke event as WeChat's push service sends it (its doc's sample, tests/fixtures). */
const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_870882ca4b1]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>1626857200</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

/** A LOCATION event (WeChat's sample's coordinates) from `from`. */
const locationXml = (from: string, to: string, at: number) =>
  `<xml><ToUserName><![CDATA[${to}]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>${at}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision></xml>`;

const revoked = (e: Received) => e.data.msg?.["event"] === "user_authorization_revoke";
const aboutGone = (e: Received) =>
  e.data.contact_id === "oGone" || /13800000000|23\.137466/.test(JSON.stringify(e));

for (const store of ["memory", "sqlite"]) {
  Deno.test(`a forgotten follower's messages are not replayed with since= (${store})`, async () => {
    const server = await startBridge({ env: { STORE: store } });
    try {
      const now = String(Math.floor(Date.now() / 1000));
      let agent = await connectAgent(`${server.wsBase}${B}/msg?userid=fA`);
      await post(
        `${server.base}${B}/send_xml`,
        textXml("oGone", "gh_acct", "13800000000", "7400001", now),
      );
      await post(`${server.base}${B}/send_xml`, locationXml("oGone", "gh_acct", Number(now)));
      await post(
        `${server.base}${B}/send_xml`,
        textXml("oStay", "gh_acct", "hello", "7400002", now),
      );
      await agent.waitFor((e) => e.data["id"] === "7400002");
      const reply = await fetch(`${server.base}${B}/send?userid=fA`, {
        method: "POST",
        body: JSON.stringify({
          data: { msg_type: "text", contact_id: "oGone", msg: { content: "got 13800000000" } },
        }),
      });
      assert.equal(reply.status, 200, await reply.text());
      await agent.close();

      const res = await post(`${server.base}${B}/send_xml`, revokeXml("oGone"));
      assert.equal(res.status, 200, res.text);

      agent = await connectAgent(`${server.wsBase}${B}/msg?userid=fA&since=0`);
      try {
        // The revoke's notice is the log's last entry: once it is here, the replay is done.
        await agent.waitFor(revoked);
        const replayed = agent.messages();
        assert.deepEqual(replayed.filter(aboutGone), []);
        assert.ok(replayed.some((e) => e.data["id"] === "7400002"), "oStay's message is replayed");
      } finally {
        await agent.close();
      }
    } finally {
      await server.close();
    }
  });
}

/** The bridge on `store`, on `dataDir` (kept by the test, so a restart finds what was written). */
const bridgeOn = (store: string, dataDir: string) =>
  startBridge({ env: { STORE: store, DATA_DIR: dataDir } });

/** The bridges a scenario's steps go to: `first` takes the old conversation, `later` the
 * revoke and what comes after it; `restart` (if any) runs between the revoke and the rest. */
interface Bridges {
  first: TestBridge;
  later(): TestBridge;
  restart?(): Promise<void>;
}

// The follower writing again made a new contact, and the replay, which asked only whether the
// contact was there, handed out the old conversation again. What marks "before the forget" is
// each agent's log seq at the forget, not WeChat's CreateTime (another clock: the new message
// below is stamped an hour before the revoke, and is replayed).
async function writesAgain(bridges: Bridges): Promise<void> {
  const { first } = bridges;
  const now = Math.floor(Date.now() / 1000);
  const socket = (bridge: TestBridge, agentId: string, query = "") =>
    connectAgent(`${bridge.wsBase}${B}/msg?userid=${agentId}${query}`);
  let fA = await socket(first, "fA");
  let fB = await socket(first, "fB");
  // ToUserName names the agent (SPEC routing rule 1): fA serves both.
  await post(
    `${first.base}${B}/send_xml`,
    textXml("oGone", "fA", "13800000000", "7500001", String(now)),
  );
  // Its location report is a 102 about it, as much the follower's as its messages.
  const location = await post(`${first.base}${B}/send_xml`, locationXml("oGone", "fA", now));
  assert.equal(location.status, 200, location.text);
  await post(`${first.base}${B}/send_xml`, textXml("oStay", "fA", "hello", "7500002", String(now)));
  await fA.waitFor((e) => e.data["id"] === "7500002");
  const reply = await fetch(`${first.base}${B}/send?userid=fA`, {
    method: "POST",
    body: JSON.stringify({
      data: { msg_type: "text", contact_id: "oGone", msg: { content: "got 13800000000" } },
    }),
  });
  assert.equal(reply.status, 200, await reply.text());
  // fA hands the follower to a colleague with a note: both logs hold the note.
  fA.send({
    data: {
      msg_type: "transfer",
      contact_id: "oGone",
      msg: { to: "fB", note: "call 13800000000" },
    },
  });
  await fB.waitFor((e) => JSON.stringify(e).includes("call 13800000000"));
  await fA.close();
  await fB.close();

  const res = await post(`${bridges.later().base}${B}/send_xml`, revokeXml("oGone"));
  assert.equal(res.status, 200, res.text);
  await bridges.restart?.();
  const later = bridges.later();
  const again = await post(
    `${later.base}${B}/send_xml`,
    textXml("oGone", "fA", "back again", "7500003", String(now - 3600)),
  );
  assert.equal(again.status, 200, again.text);

  const old = (e: Received) => /13800000000|23\.137466/.test(JSON.stringify(e));
  fA = await socket(later, "fA", "&since=0");
  try {
    // The new message is the log's last entry: once it is here, the replay is done.
    await fA.waitFor((e) => e.data["id"] === "7500003");
    const replayed = fA.messages();
    assert.deepEqual(replayed.filter(old), [], "the agent that served it");
    assert.ok(replayed.some((e) => e.data["id"] === "7500002"), "oStay's message is replayed");
  } finally {
    await fA.close();
  }
  fB = await socket(later, "fB", "&since=0");
  try {
    // It served the follower at the revoke: the notice is its log's last entry.
    await fB.waitFor(revoked);
    assert.deepEqual(fB.messages().filter(old), [], "the colleague it was handed to");
  } finally {
    await fB.close();
  }
}

// On SQLite the bridge restarts between the forget and the replay.
for (const store of ["memory", "sqlite", "kv"]) {
  Deno.test(`a forgotten follower who writes again: since= replays only its new conversation (${store})`, async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "forget-again-" });
    let server = await bridgeOn(store, dataDir);
    try {
      await writesAgain({
        first: server,
        later: () => server,
        restart: store === "sqlite"
          ? async () => {
            await server.close();
            server = await bridgeOn(store, dataDir);
          }
          : undefined,
      });
    } finally {
      await server.close();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  });
}

// With Redis the revoke and the follower's new message reach another instance than the one
// the old conversation went through; the agent reconnects there.
Deno.test({
  name:
    "a forgotten follower who writes again: since= replays only its new conversation (two Redis instances)",
  ignore: REDIS_URL === null,
  async fn() {
    const prefix = uniquePrefix("forget_again");
    const url = `${REDIS_URL}?prefix=${prefix}`;
    const one = await startBridge({ env: { REDIS_URL: url } });
    const two = await startBridge({ env: { REDIS_URL: url } });
    try {
      await writesAgain({ first: one, later: () => two });
    } finally {
      await one.close();
      await two.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
