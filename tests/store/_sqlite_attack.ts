// Helpers to attack the SQLite store through a spawned main.ts: webhook load from
// several followers, kill -9 at any moment, then what history, the log and contacts hold.
import { connectAgent, post, textXml } from "../helpers/agent.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
export const B = "/im_component/wx_official_account";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

export interface Proc {
  base: string;
  ws: string;
  child: Deno.ChildProcess;
  stderr: Promise<string>;
  kill(signal: Deno.Signal): Promise<void>;
  exited(): boolean;
}

/** Spawns main.ts on `dataDir` (SQLite); does not wait for it to listen. */
export function spawn(dataDir: string, env: Record<string, string> = {}): Proc {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env: {
      PORT: String(port),
      HOSTNAME: "127.0.0.1",
      DATA_DIR: dataDir,
      STORE: "",
      LOG_LEVEL: "warning",
      REDIS_URL: "",
      WECHAT_TOKEN: "",
      WECHAT_AES_KEY: "",
      WECHAT_APPID: "",
      WECHAT_SECRET: "",
      AGENT_SECRET: "",
      ...env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let done = false;
  child.status.then(() => done = true);
  return {
    base: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    child,
    stderr,
    exited: () => done,
    async kill(signal) {
      try {
        child.kill(signal);
      } catch { /* gone */ }
      await child.status;
      await stderr;
    },
  };
}

/** Resolves once `p` answers /healthz; throws if it exits or takes `ms`. */
export async function ready(p: Proc, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    if (p.exited()) throw new Error(`main.ts exited: ${await p.stderr}`);
    try {
      const res = await fetch(`${p.base}/healthz`);
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error("main.ts did not listen");
    await new Promise((r) => setTimeout(r, 30));
  }
}

let msgId = 70_000_000 + Math.floor(Math.random() * 1e6) * 100;

/** Binds followers to agent `agent` (so later messages go to its log while it is away). */
export async function bind(p: Proc, agent: string, followers: string[]): Promise<void> {
  const a = await connectAgent(`${p.ws}${B}/msg?userid=${agent}`);
  for (const f of followers) {
    const res = await post(
      `${p.base}${B}/send_xml`,
      textXml(f, "gh_account", `${f}:bind`, String(msgId++)),
    );
    if (res.text !== "success") throw new Error(`bind: ${res.status} ${res.text}`);
  }
  await a.waitForCount(followers.length, 5000);
  await a.close();
}

/** What each follower was answered `success` for, in order; plus what was in flight. */
export interface Sent {
  answered: Map<string, string[]>;
  unsure: Map<string, string[]>;
}

/** Each follower posts its next message after the last was answered, until `stop()`. */
export function load(p: Proc, followers: string[], sent: Sent, counters: Map<string, number>) {
  let stopping = false;
  const runs = followers.map(async (f) => {
    while (!stopping) {
      const k = (counters.get(f) ?? 0) + 1;
      counters.set(f, k);
      const content = `${f}:${k}`;
      try {
        const res = await post(
          `${p.base}${B}/send_xml`,
          textXml(f, "gh_account", content, String(msgId++)),
        );
        if (res.status === 200 && res.text === "success") {
          sent.answered.get(f)!.push(content);
        } else {
          sent.unsure.get(f)!.push(content);
          if (res.status !== 500 && res.status !== 503) {
            throw new Error(`${res.status} ${res.text}`);
          }
        }
      } catch (e) {
        sent.unsure.get(f)!.push(content);
        if (e instanceof Error && e.message.match(/^\d{3} /)) throw e;
        return; // connection gone: killed
      }
    }
  });
  return {
    stop: async () => {
      stopping = true;
      await Promise.all(runs);
    },
    done: Promise.all(runs),
  };
}

/** The follower's whole history as contents (follower messages only), paged back to the start. */
export async function history(p: Proc, agent: string, follower: string): Promise<string[]> {
  const pages: string[][] = [];
  let before: number | null = null;
  do {
    const q = before === null ? "" : `&before=${before}`;
    const res = await fetch(
      `${p.base}${B}/history?userid=${agent}&contact_id=${follower}&limit=200${q}`,
    );
    if (res.status !== 200) throw new Error(`history ${res.status} ${await res.text()}`);
    const body = await res.json() as {
      messages: Array<{ msg: { content?: string }; direction: string }>;
      next_before: number | null;
    };
    pages.unshift(
      body.messages.filter((m) => m.direction === "in").map((m) => String(m.msg.content)),
    );
    before = body.next_before;
  } while (before !== null);
  return pages.flat();
}

/** The agent's contact ids. */
export async function contacts(p: Proc, agent: string): Promise<string[]> {
  const res = await fetch(`${p.base}${B}/contacts?userid=${agent}`);
  if (res.status !== 200) throw new Error(`contacts ${res.status} ${await res.text()}`);
  const body = await res.json() as unknown;
  return JSON.stringify(body).match(/"o[A-Za-z0-9_]+"/g)?.map((s) => s.slice(1, -1)) ?? [];
}

/** Everything in the agent's log, by reconnecting with since=0: contents per follower. */
export async function logOf(p: Proc, agent: string, expect: number): Promise<string[]> {
  const a = await connectAgent(`${p.ws}${B}/msg?userid=${agent}&since=0`);
  try {
    await a.waitForCount(expect, 20_000).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    return a.messages().map((e) => String(e.data.msg?.["content"]));
  } finally {
    await a.close();
  }
}

/** Checks `got` holds every answered message once, in order, and only answered or in-flight
 * messages, each once; returns problems. */
export function check(what: string, got: string[], answered: string[], unsure: string[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const g of got) {
    if (seen.has(g)) problems.push(`${what}: ${g} twice`);
    seen.add(g);
  }
  for (const a of answered) if (!seen.has(a)) problems.push(`${what}: answered ${a} missing`);
  const allowed = new Set([...answered, ...unsure]);
  for (const g of got) if (!allowed.has(g)) problems.push(`${what}: ${g} never sent`);
  // order: by the counter in the content
  const nums = got.map((g) => Number(g.split(":")[1]));
  for (let i = 1; i < nums.length; i++) {
    if (!(nums[i]! > nums[i - 1]!)) problems.push(`${what}: ${got[i]} after ${got[i - 1]}`);
  }
  return problems;
}
