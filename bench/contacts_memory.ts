// How much memory the bridge needs for an account's followers: writes N contacts straight into
// a Deno KV file under a fresh DATA_DIR (with the store's own key functions), starts main.ts on
// it, and reports the start time, the process's RSS, and the size of a `GET contacts` answer.
//
//   deno run -A bench/contacts_memory.ts 100000 1000000

import { contactOf, generateContacts } from "../tests/helpers/kv_contacts.ts";

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function measure(n: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "contacts-bench-" });
  try {
    let t = performance.now();
    await generateContacts(`${dir}/bridge.kv`, n);
    const generated = (performance.now() - t) / 1000;
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    t = performance.now();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", new URL("../main.ts", import.meta.url).pathname],
      env: { DATA_DIR: dir, PORT: String(port), HOSTNAME: "127.0.0.1", LOG_LEVEL: "error" },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const base = `http://127.0.0.1:${port}`;
    for (;;) {
      try {
        const res = await fetch(`${base}/readyz`);
        await res.body?.cancel();
        if (res.ok) break;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    const started = (performance.now() - t) / 1000;
    const idle = rssMb(child.pid);
    const body =
      await (await fetch(`${base}/im_component/wx_official_account/contacts?userid=agent1`))
        .text();
    const parsed = JSON.parse(body);
    const afterList = rssMb(child.pid);
    // One message from a follower not touched yet: read from KV, if the store reads on demand.
    const xml = `<xml><ToUserName>gh</ToUserName><FromUserName>${
      contactOf(n - 7, 0).follower_id
    }</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content></xml>`;
    const posted = await fetch(`${base}/send_xml`, { method: "POST", body: xml });
    const answer = await posted.text();
    // Followers write, twice 30,000 different ones: each contact read back from KV, and the
    // memory they then take (bounded: the second round should not add to the first).
    const rounds: Array<{ per_s: number; rss_mb: number }> = [];
    for (let round = 0; round < 2; round++) {
      const from0 = round * 30_000;
      const to = Math.min(n, from0 + 30_000);
      let next = from0;
      const started = performance.now();
      await Promise.all(Array.from({ length: 32 }, async () => {
        while (next < to) {
          const i = next++;
          const from = contactOf(i, 0).follower_id;
          const body = `<xml><ToUserName>gh</ToUserName><FromUserName>${from}</FromUserName>` +
            `<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi ${i}</Content></xml>`;
          await (await fetch(`${base}/send_xml`, { method: "POST", body })).text();
        }
      }));
      const perS = Math.round((to - from0) / ((performance.now() - started) / 1000));
      rounds.push({ per_s: perS, rss_mb: Math.round(rssMb(child.pid)) });
    }
    child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel();
    // deno-lint-ignore no-console
    console.log(JSON.stringify({
      contacts: n,
      generate_s: +generated.toFixed(1),
      start_s: +started.toFixed(2),
      rss_idle_mb: +idle.toFixed(0),
      rss_after_contacts_mb: +afterList.toFixed(0),
      contacts_page_bytes: body.length,
      contacts_in_page: parsed.contacts.length,
      next: parsed.next ?? null,
      webhook: `${posted.status} ${answer}`,
      after_30000_writers: rounds[0],
      after_60000_writers: rounds[1],
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const arg of Deno.args.length > 0 ? Deno.args : ["100000"]) await measure(Number(arg));
