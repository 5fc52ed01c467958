// A follower message's history, read back from the SQLite store's tables (its item cut out of
// the logged frame's text by the worker), equals what the agent received, for content built to
// look like the frame's own edges; after the worker applied it and after a restart.
import assert from "node:assert/strict";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

const esc = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

const head = (from: string, type: string, id: string) =>
  `<ToUserName>gh_acc</ToUserName><FromUserName>${from}</FromUserName>` +
  `<CreateTime>1700000000</CreateTime><MsgType>${type}</MsgType><MsgId>${id}</MsgId>`;

const odd = [
  ',"seq":1},"result":{"code":1001,"message":"common"}}',
  '},"result":',
  '"seq":7',
  'back\\slash \\\\ \\u0041 \\"',
  "line\u2028sep\u2029para",
  "quo\"tes\" 'single'",
  "😀 emoji 🏳️‍🌈 长",
  "{ { } } {}{",
  "&#x1F600; &#38;",
  "\x1f unit sep",
  "x".repeat(20_000),
];

/** Bodies of every kind, content chosen to look like the frame's edges. */
function bodies(from: string): string[] {
  let id = 5_000_000;
  const next = () => String(id++);
  const out: string[] = [];
  for (const text of odd) {
    out.push(`<xml>${head(from, "text", next())}<Content>${esc(text)}</Content></xml>`);
  }
  // Surrogates as character references (a lone one, a pair written as two refs).
  out.push(`<xml>${head(from, "text", next())}<Content>a&#xD83D;&#xDE00;b</Content></xml>`);
  out.push(
    `<xml>${head(from, "link", next())}<Title>${esc(odd[0]!)}</Title><Description>${
      esc(odd[1]!)
    }</Description><Url>http://x/?a="1"&amp;seq=2</Url></xml>`,
  );
  out.push(
    `<xml>${
      head(from, "location", next())
    }<Location_X>23.1</Location_X><Location_Y>-0</Location_Y><Scale>1e21</Scale><Label>${
      esc(odd[2]!)
    }</Label><Seq>9</Seq></xml>`,
  );
  out.push(
    `<xml>${head(from, "event", next())}<Event>CLICK</Event><EventKey>${
      esc('},"seq":3},"result":{')
    }</EventKey><Seq>3</Seq><Result>x</Result><Data><Seq>4</Seq></Data></xml>`,
  );
  out.push(
    `<xml>${
      head(from, "event", next())
    }<Event>scancode_waitmsg</Event><EventKey>k</EventKey><ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>${
      esc(odd[0]!)
    }</ScanResult></ScanCodeInfo></xml>`,
  );
  out.push(
    `<xml>${
      head(from, "event", next())
    }<Event>pic_sysphoto</Event><EventKey>k</EventKey><SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>${
      esc('"seq":1}')
    }</PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item></PicList></SendPicsInfo></xml>`,
  );
  return out;
}

/** The history item as the agent would compare it: its data without `direction`. */
function withoutDirection(item: Record<string, unknown>): string {
  const { direction, ...rest } = item;
  assert.equal(direction, "in");
  return JSON.stringify(rest);
}
function withoutSeq(e: Received): string {
  const { seq: _, ...rest } = e.data;
  return JSON.stringify(rest);
}

async function historyOf(bridge: TestBridge, follower: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${bridge.base}${B}/history?userid=a1&contact_id=${follower}&limit=200`);
  assert.equal(res.status, 200, await res.clone().text());
  const body = await res.json() as { messages: Record<string, unknown>[] };
  return body.messages.filter((m) => m.direction === "in");
}

Deno.test("history read back from SQLite equals what the agent received, byte for byte", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "review18w_cut_" });
  const env = { STORE: "sqlite", DATA_DIR: dir };
  try {
    let bridge = await startBridge({ env });
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=a1`);
    const all = bodies("oCut");
    const answers: string[] = [];
    for (const body of all) {
      const res = await post(`${bridge.base}${B}/send_xml`, body);
      answers.push(`${res.status} ${res.text.slice(0, 80)}`);
    }
    const accepted = answers.filter((a) => a.startsWith("200")).length;
    // Messages of the follower, system notices left out.
    const ours = () => agent.messages().filter((e) => String(e.data.id).startsWith("500"));
    for (let i = 0; i < 50 && ours().length < accepted; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const received = ours();
    assert.equal(received.length, accepted);
    await agent.close();

    await t.step("after the worker applied them", async () => {
      // Past the worker's wait, so the rows come from its own transaction, not a flush.
      await new Promise((r) => setTimeout(r, 400));
      const items = await historyOf(bridge, "oCut");
      assert.equal(items.length, received.length);
      for (let i = 0; i < items.length; i++) {
        assert.equal(withoutDirection(items[i]!), withoutSeq(received[i]!));
      }
    });
    await bridge.close();
    bridge = await startBridge({ env });
    try {
      await t.step("after a restart", async () => {
        const items = await historyOf(bridge, "oCut");
        assert.equal(items.length, received.length);
        for (let i = 0; i < items.length; i++) {
          assert.equal(withoutDirection(items[i]!), withoutSeq(received[i]!));
        }
      });
    } finally {
      await bridge.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
