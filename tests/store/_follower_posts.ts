// One follower writing to a spawned main.ts, and what the agent's history of it holds: for the
// tests that take the store's files away under a running bridge and count what a restart finds,
// and what /readyz says meanwhile.
import assert from "node:assert/strict";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import {
  killBridge,
  type SpawnedBridge,
  spawnOnDefaultStore,
  waitReady,
} from "../helpers/spawn.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const B = "/im_component/wx_official_account";

/** A bridge on a fresh DATA_DIR that `withFiveRead` hands a test. */
export interface FiveRead {
  dir: string;
  /** `${dir}/bridge.sqlite`. */
  file: string;
  /** The bridge running now. */
  p: SpawnedBridge;
  /** What a1's history should hold: m1..m5 to begin with. */
  expected: string[];
  /** Stops `p` with `signal` and starts main.ts again on `dir`, ready. */
  restart(signal: Deno.Signal): Promise<void>;
}

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
    /** a1's history and a1's replay from since=1 both hold `expected`, in order. */
    async hasAll(p: SpawnedBridge, expected: string[]): Promise<void> {
      assert.deepEqual(await posts.history(p), expected);
      const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1&since=1`);
      const replayed = await a1.waitForCount(expected.length, 5000);
      await a1.close();
      assert.deepEqual(replayed.map((e) => e.data.msg?.content), expected);
    },
    /** m1..m5 while a1 is online, read by a1 (its assignment notice and the five). */
    async firstFive(p: SpawnedBridge, expected: string[]): Promise<void> {
      const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
      await posts.sendEach(p, 1, 5, expected);
      await a1.waitForCount(6, 5000);
      await a1.close();
    },
    /** Runs `fn` on main.ts on the default store in a fresh DATA_DIR, ready, m1..m5 read by a1;
     * the bridge running at the end is killed. */
    async withFiveRead(fn: (run: FiveRead) => Promise<void>): Promise<void> {
      await withTempDir(async (dir) => {
        const run: FiveRead = {
          dir,
          file: `${dir}/bridge.sqlite`,
          p: spawnOnDefaultStore(dir),
          expected: [],
          async restart(signal) {
            await killBridge(run.p, signal);
            run.p = spawnOnDefaultStore(dir);
            await waitReady(run.p);
          },
        };
        try {
          await waitReady(run.p);
          await posts.firstFive(run.p, run.expected);
          await fn(run);
        } finally {
          await killBridge(run.p, "SIGKILL");
        }
      });
    },
  };
  return posts;
}

/** What /readyz answers now: its status and body. */
export async function readiness(p: SpawnedBridge): Promise<{ status: number; body: string }> {
  const res = await fetch(`${p.base}/readyz`);
  return { status: res.status, body: await res.text() };
}

/** Resolves with /readyz's body once it answers 503; fails after 15 s of "ready". */
export async function notReady(p: SpawnedBridge): Promise<string> {
  const deadline = performance.now() + 15_000;
  while (true) {
    const { status, body } = await readiness(p);
    if (status === 503) return body;
    assert.ok(performance.now() < deadline, `still ${status} ${body}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
