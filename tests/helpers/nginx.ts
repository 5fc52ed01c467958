// docs/production.md's nginx sample, run in front of a bridge for tests that check what reaches
// it through a real proxy (frames, framing of requests).

import assert from "node:assert/strict";
import { freePort } from "./spawn.ts";

/** docs/production.md's nginx sample, made to run here: plain HTTP on `port`, no TLS. */
async function sampleNginxConf(dir: string, port: number, bridgePort: number): Promise<string> {
  const doc = await Deno.readTextFile(new URL("../../docs/production.md", import.meta.url));
  const sample = /```nginx\n([\s\S]*?)```/.exec(doc)?.[1];
  if (sample === undefined) throw new Error("docs/production.md has no nginx sample");
  const servers = sample
    // The port-80 redirect server and TLS have nothing to do with frames.
    .replace(/server \{\s*listen 80;[\s\S]*?\n\}\n/, "")
    .replace(/listen 443 ssl;/, `listen 127.0.0.1:${port};`)
    .replace(/^\s*ssl_.*$/gm, "")
    .replace(/server 127\.0\.0\.1:1234;/, `server 127.0.0.1:${bridgePort};`)
    .replace(/access_log \S+/, `access_log ${dir}/access.log`);
  assert.match(servers, new RegExp(`listen 127.0.0.1:${port};`), "the sample's listen line moved");
  return [
    Deno.uid() === 0 ? "user root;" : "",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log;`,
    "events {}",
    "http {",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) =>
      `${t}_temp_path ${dir}/${t};`
    ),
    servers,
    "}",
  ].join("\n");
}

/** Runs docs/production.md's nginx in front of the bridge on `bridgePort`; null when there is
 * no nginx, outside CI. */
export async function startNginx(bridgePort: number) {
  const dir = await Deno.makeTempDir({ prefix: "bridge-nginx-" });
  const port = freePort();
  await Deno.writeTextFile(`${dir}/nginx.conf`, await sampleNginxConf(dir, port, bridgePort));
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("nginx", {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-g", "daemon off;"],
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    // Under CI a missing nginx is a failure (.ci/run installs it); elsewhere, a note.
    if (Deno.env.get("CI") === "true") throw error;
    return null;
  }
  const deadline = performance.now() + 10_000;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (performance.now() > deadline) throw new Error("nginx did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    base: `http://127.0.0.1:${port}`,
    wsBase: `ws://127.0.0.1:${port}`,
    async stop() {
      // SIGTERM is nginx's fast shutdown: a graceful one (SIGQUIT) waits for open sockets.
      child.kill("SIGTERM");
      await child.stderr.cancel();
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
