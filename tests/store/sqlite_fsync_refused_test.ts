// STORE_FSYNC=1 on a disk that fails: a commit's fdatasync fails (EIO), and so does the
// truncate that would cut its line off (the file system remounted read-only), so the line its
// caller was told was refused stays in the journal. The store then reloaded its model from the
// journal, which read that line as a commit: the refused message was in the tables and history,
// and the next commit, given the same id, was skipped there as applied, and dropped by the next
// start. A real bridge, its journal's disk failing once as WeChat posts.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge, waitRouted } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

/** Makes the next fdatasync fail (EIO) and the truncate after it too (EROFS), once. */
function failNextSyncAndTruncate(): void {
  const proto = Deno.FsFile.prototype;
  const { syncDataSync, truncateSync } = proto;
  proto.syncDataSync = function () {
    proto.syncDataSync = syncDataSync;
    throw Object.assign(new Error("Input/output error (os error 5)"), { code: "EIO" });
  };
  proto.truncateSync = function () {
    proto.truncateSync = truncateSync;
    throw Object.assign(new Error("Read-only file system (os error 30)"), { code: "EROFS" });
  };
}

async function contents(bridge: TestBridge): Promise<Array<string | undefined>> {
  const res = await fetch(`${bridge.base}${B}/history?userid=qa&contact_id=oF`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.messages.map((m: { msg: { content?: string } }) => m.msg.content);
}

Deno.test("a commit refused with STORE_FSYNC=1 whose line could not be cut off is not applied", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "fsync-refused-" });
  const env = { STORE: "sqlite", DATA_DIR: dir, STORE_FSYNC: "1" };
  try {
    const bridge = await startBridge({ env });
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    const send = (content: string, id: string) =>
      post(`${bridge.base}${B}/send_xml`, textXml("oF", "gh", content, id));
    try {
      await waitRouted(bridge, "qa");
      assert.equal((await send("m-one", "8701")).text, "success");
      await agent.waitFor((e) => e.data.msg?.["content"] === "m-one");
      failNextSyncAndTruncate();
      // The disk failed, nothing of the commit stays: WeChat is told to retry, as for a full one.
      const refused = await send("m-two", "8702");
      assert.equal(refused.status, 503, refused.text);
      assert.equal((await send("m-three", "8703")).text, "success");
      await agent.waitFor((e) => e.data.msg?.["content"] === "m-three");
      assert.deepEqual(await contents(bridge), ["m-one", "m-three"]);
    } finally {
      await agent.close();
      await bridge.close();
    }
    const again = await startBridge({ env });
    try {
      assert.deepEqual(await contents(again), ["m-one", "m-three"]);
    } finally {
      await again.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a commit refused with STORE_FSYNC=1 whose line could not be cut off is not applied by the worker's read-back", async () => {
  // The worker reads the journal back when a batch it was handed could not be written (here an
  // operator's sqlite3 holds the tables' write lock past the busy timeout). Reading it while the
  // refused line was the journal's last, it applied that line, and then skipped the next commit
  // (the same id) as applied.
  const dir = Deno.makeTempDirSync({ prefix: "fsync-refused-worker-" });
  const env = { STORE: "sqlite", DATA_DIR: dir, STORE_FSYNC: "1" };
  try {
    const bridge = await startBridge({ env });
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    const send = (content: string, id: string) =>
      post(`${bridge.base}${B}/send_xml`, textXml("oF", "gh", content, id));
    try {
      await waitRouted(bridge, "qa");
      assert.equal((await send("m-one", "8711")).text, "success");
      await agent.waitFor((e) => e.data.msg?.["content"] === "m-one");
      const operator = new DatabaseSync(`${dir}/bridge.sqlite`);
      try {
        operator.exec("BEGIN IMMEDIATE");
        assert.equal((await send("m-two", "8712")).text, "success");
        // The worker gives up on the lock and says so: the read fails.
        const res = await fetch(`${bridge.base}${B}/history?userid=qa&contact_id=oF`);
        await res.body?.cancel();
        assert.notEqual(res.status, 200);
        failNextSyncAndTruncate();
        assert.ok((await send("m-three", "8713")).status >= 500);
      } finally {
        operator.exec("ROLLBACK");
        operator.close();
      }
      // The worker reads the journal back now, the refused line its last.
      assert.deepEqual(await contents(bridge), ["m-one", "m-two"]);
      assert.equal((await send("m-four", "8714")).text, "success");
      await agent.waitFor((e) => e.data.msg?.["content"] === "m-four");
      assert.deepEqual(await contents(bridge), ["m-one", "m-two", "m-four"]);
    } finally {
      await agent.close();
      await bridge.close();
    }
    const again = await startBridge({ env });
    try {
      assert.deepEqual(await contents(again), ["m-one", "m-two", "m-four"]);
    } finally {
      await again.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
