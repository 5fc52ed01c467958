// A reply an agent sends over its socket while DATA_DIR's disk is full (Deno KV here): the
// store refuses to record it, as a whole. Over HTTP that is 503 "Store unavailable: retry"; the
// socket got "Internal error: the message was not handled", with no client_id, so the console
// could not tell which reply failed, nor that sending it again would do. Now the -1 says the
// store is unavailable, send it again, with the reply's client_id and contact_id; once there is
// room, the same client_id is sent. DATA_DIR is a real tmpfs of a few MiB (this needs root:
// `mount -t tmpfs`), filled to its last byte.

import assert from "node:assert/strict";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";

const B = "/im_component/wx_official_account";

async function mountTinyDisk(): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "bridge-full-socket-" });
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=8m", "tmpfs", dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.success) return dir;
  await Deno.remove(dir);
  const why = `Cannot mount a tmpfs: ${new TextDecoder().decode(out.stderr).trim()}`;
  if (Deno.env.get("CI") === "true") throw new Error(why);
  // deno-lint-ignore no-console
  console.log(`Skipping the full-disk socket test: ${why} (it needs root)`);
  return null;
}

/** Fills the disk to its last byte (smaller and smaller writes once a large one finds no room). */
async function fill(path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    for (let size = 64 * 1024; size >= 1; size >>= 1) {
      const chunk = new Uint8Array(size);
      try {
        while (true) await file.write(chunk);
      } catch (error) {
        if ((error as { code?: string }).code !== "ENOSPC") throw error;
      }
    }
  } finally {
    file.close();
  }
}

// SQLite's own store keeps room in its journal, and took this reply on the full disk (it refuses
// later writes, and the same -1 then comes of the same rule): Deno KV refuses the first.
for (const [name, store] of [["Deno KV", "kv"]] as const) {
  Deno.test(`a socket reply the full disk refuses gets a -1 with its client_id (${name})`, async () => {
    const disk = await mountTinyDisk();
    if (disk === null) return; // not root, outside CI
    const fake = await startFakeWechat({ appId: "wxfull", secret: "s" });
    const server = await startBridge({
      env: {
        STORE: store,
        DATA_DIR: disk,
        WECHAT_APPID: "wxfull",
        WECHAT_SECRET: "s",
        WECHAT_API_BASE: fake.url,
      },
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=qa`);
    try {
      await waitRouted(server, "qa");
      const hi = await post(`${server.base}${B}/send_xml`, textXml("oFull", "gh", "hi", "9720001"));
      assert.equal(hi.status, 200, hi.text);
      await agent.waitFor((e) => e.data["id"] === "9720001");

      await fill(`${disk}/filler`);
      const reply = {
        data: {
          msg_type: "text",
          contact_id: "oFull",
          client_id: "c-1",
          msg: { content: "hello" },
        },
      };
      agent.send(reply);
      const refusal = await agent.waitFor((e: Received) => e.result.code === -1);
      assert.match(refusal.result.message, /store is unavailable .*send it again/);
      assert.equal(refusal.data["client_id"], "c-1");
      assert.equal(refusal.data["contact_id"], "oFull");
      assert.deepEqual(fake.sent, []);

      // Room again: the same client_id is sent, once.
      await Deno.remove(`${disk}/filler`);
      agent.send(reply);
      await agent.waitFor((e) => e.data.msg?.["event"] === "reply_sent");
      assert.equal(fake.sent.length, 1);
    } finally {
      await agent.close();
      await server.close();
      await fake.close();
      await new Deno.Command("umount", { args: ["-l", disk] }).output();
      await Deno.remove(disk, { recursive: true }).catch(() => {});
    }
  });
}

// The disk fills while WeChat takes a reply the store recorded: its `reply_sent` was written to
// the agent's log through that store, which refused it, and the socket was never told; the
// console showed the reply on its way, and the agent, seeing no result, sent it again.
for (const [name, store] of [["SQLite", "sqlite"], ["Deno KV", "kv"]] as const) {
  Deno.test(`a reply WeChat took while the disk filled is still told sent on the socket (${name})`, async () => {
    const disk = await mountTinyDisk();
    if (disk === null) return; // not root, outside CI
    const fake = await startFakeWechat({ appId: "wxfull", secret: "s" });
    // WeChat answers the send once the disk is full.
    let letSend = () => {};
    const full = new Promise<void>((resolve) => letSend = resolve);
    const held: typeof fetch = async (input, init) => {
      if (String(input instanceof Request ? input.url : input).includes("/message/custom/send")) {
        await full;
      }
      return await fetch(input, init);
    };
    const server = await startBridge({
      fetch: held,
      env: {
        STORE: store,
        DATA_DIR: disk,
        WECHAT_APPID: "wxfull",
        WECHAT_SECRET: "s",
        WECHAT_API_BASE: fake.url,
      },
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=qa`);
    try {
      await waitRouted(server, "qa");
      const hi = await post(`${server.base}${B}/send_xml`, textXml("oFull", "gh", "hi", "9720002"));
      assert.equal(hi.status, 200, hi.text);
      await agent.waitFor((e) => e.data["id"] === "9720002");

      agent.send({
        data: { msg_type: "text", contact_id: "oFull", client_id: "c-2", msg: { content: "yo" } },
      });
      // Recorded (its echo came), on its way to WeChat.
      await agent.waitFor((e) => e.data["client_id"] === "c-2" && e.data["direction"] === "out");
      await fill(`${disk}/filler`);
      letSend();
      const sent = await agent.waitFor((e) => e.data.msg?.["event"] === "reply_sent", 10_000);
      assert.equal(sent.data.msg?.["client_id"], "c-2");
      assert.equal(fake.sent.length, 1);
      assert.equal(agent.messages().filter((e) => e.result.code === -1).length, 0);
    } finally {
      letSend();
      await agent.close();
      await server.close();
      await fake.close();
      await new Deno.Command("umount", { args: ["-l", disk] }).output();
      await Deno.remove(disk, { recursive: true }).catch(() => {});
    }
  });
}
