// The SQLite worker lets handed-over lines wait (up to 100 ms or 4 MiB) before writing them:
// attacked through spawned main.ts processes killed or stopped while lines wait, reads that
// come right after answers, and more than 4 MiB of lines in one window. History is compared,
// byte for byte, with what the agent received (items cut out of frames by the worker).
import assert from "node:assert/strict";
import { connectAgent, fullHistory, post, type Received, textXml } from "../helpers/agent.ts";
import {
  killBridge as kill,
  type SpawnedBridge,
  spawnOnDefaultStore as spawn,
  waitReady,
} from "../helpers/spawn.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const B = "/im_component/wx_official_account";

const tricky = [
  ',"seq":1},"result":{"code":1001,"message":"common"}}',
  'q"uote \\ back \\u0041 \u2028 😀 {}} {',
];

let msgId = 91_000_000;

/** The follower's items in history, oldest first, as JSON without `direction`. */
async function history(p: SpawnedBridge, agent: string, follower: string): Promise<string[]> {
  return (await fullHistory(p.base, agent, follower)).filter((m) => m.direction === "in").map(
    (m) => {
      const { direction: _, ...rest } = m;
      return JSON.stringify(rest);
    },
  );
}

const asItem = (e: Received) => {
  const { seq: _, ...rest } = e.data;
  return JSON.stringify(rest);
};

/** Sends `n` messages from `follower` as fast as answers come; returns them as received. */
async function burst(p: SpawnedBridge, follower: string, n: number, pad = 0): Promise<Received[]> {
  const agent = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
  const ids = new Set<string>();
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    const id = String(msgId++);
    ids.add(id);
    const text = `${i} ${tricky[i % tricky.length]}${"长".repeat(pad)}`;
    const res = await post(`${p.base}${B}/send_xml`, textXml(follower, "gh_acc", text, id));
    assert.equal(`${res.status} ${res.text}`, "200 success");
  }));
  const mine = () => agent.messages().filter((e) => ids.has(String(e.data.id)));
  for (let i = 0; i < 100 && mine().length < n; i++) await new Promise((r) => setTimeout(r, 50));
  const got = mine().sort((a, b) => a.data.seq! - b.data.seq!);
  assert.equal(got.length, n);
  await agent.close();
  return got;
}

for (const signal of ["SIGKILL", "SIGTERM"] as const) {
  Deno.test(`a ${signal} while the worker holds lines loses none of their history, and it reads back as received`, async () => {
    await withTempDir(async (dir) => {
      let p = spawn(dir);
      try {
        await waitReady(p);
        const received = await burst(p, "oWait", 60);
        // At once: the last lines are within the worker's 100 ms (and the store's 20 ms).
        await kill(p, signal);
        p = spawn(dir);
        await waitReady(p);
        assert.deepEqual(await history(p, "a1", "oWait"), received.map(asItem));
      } finally {
        await kill(p, "SIGKILL");
      }
    });
  });
}

Deno.test("reads right after answers see every message answered before them", async () => {
  await withTempDir(async (dir) => {
    const p = spawn(dir);
    try {
      await waitReady(p);
      const agent = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
      for (let round = 0; round < 15; round++) {
        const follower = `oRead${round}`;
        for (let i = 0; i < 3; i++) {
          const res = await post(
            `${p.base}${B}/send_xml`,
            textXml(follower, "gh_acc", `${round}.${i} ${tricky[i % 2]}`, String(msgId++)),
          );
          assert.equal(res.status, 200);
        }
        const h = await history(p, "a1", follower);
        assert.equal(h.length, 3, `history of ${follower}`);
        const contacts = await (await fetch(`${p.base}${B}/contacts?userid=a1&limit=200`))
          .json() as {
            contacts: Array<{ contact_id?: string; follower_id?: string; unread: number }>;
          };
        const c = contacts.contacts.find((x) => (x.contact_id ?? x.follower_id) === follower);
        assert.ok(c, `contacts list has ${follower}: ${JSON.stringify(contacts).slice(0, 300)}`);
        assert.equal(c.unread, 3);
      }
      await agent.close();
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});

Deno.test("more than 4 MiB of lines in one window reach the tables whole, and read back as received", async () => {
  await withTempDir(async (dir) => {
    let p = spawn(dir);
    try {
      await waitReady(p);
      // ~6 KB of text a message (two frames of it: log and queue-free history), 1,000 of them.
      const received = await burst(p, "oBig", 1000, 2000);
      assert.deepEqual(await history(p, "a1", "oBig"), received.map(asItem));
      await kill(p, "SIGKILL");
      p = spawn(dir);
      await waitReady(p);
      assert.deepEqual(await history(p, "a1", "oBig"), received.map(asItem));
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});
