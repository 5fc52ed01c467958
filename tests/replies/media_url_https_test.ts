// An agent's https media_url on the shipped process: connected to the address that was checked,
// with the certificate still verified against the URL's host name (issue 14.2). main.ts is
// spawned so it can trust a test CA the way an operator would (NODE_EXTRA_CA_CERTS).

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";

const B = "/im_component/wx_official_account";
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 7, 7, 7]);

/** A self-signed certificate for `localhost` only, made with openssl in `dir`. */
async function makeCert(dir: string): Promise<{ cert: string; key: string; path: string }> {
  const out = await new Deno.Command("openssl", {
    args: [
      ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
      ...["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`],
      ...["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  return {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
    path: `${dir}/cert.pem`,
  };
}

Deno.test("an https media_url is fetched from the checked address, its certificate verified", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "media-https-" });
  const tls = await makeCert(dir);
  const files: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: tls.cert, key: tls.key, onListen() {} },
    (req): Response => {
      const path = new URL(req.url).pathname;
      if (path === "/to-loopback") {
        return Response.redirect(`https://127.0.0.1:${files.addr.port}/pic.png`, 302);
      }
      return new Response(PNG, { headers: { "content-type": "image/png" } });
    },
  );
  const port = files.addr.port;
  const fake = await startFakeWechat({ appId: "wxtest", secret: "s" });
  const main = await startMain({
    WECHAT_APPID: "wxtest",
    WECHAT_SECRET: "s",
    WECHAT_API_BASE: fake.url,
    // The operator's intranet server, known by name; its address (127.0.0.1) is not listed.
    MEDIA_URL_PRIVATE_HOSTS: `localhost:${port}`,
    NODE_EXTRA_CA_CERTS: tls.path,
  });
  const agent = await connectAgent(`${main.wsBase}${B}/msg?userid=A`);
  let n = 0;
  async function reply(mediaUrl: string) {
    const follower = `oHttps${++n}`;
    const res = await post(`${main.base}${B}/send_xml`, textXml(follower, "A", "hi", `${n}`));
    assert.equal(res.text, "success");
    await agent.waitFor((e) => e.data["contact_id"] === follower && e.result.code === 1001);
    const answer = await post(
      `${main.base}${B}/send?userid=A`,
      JSON.stringify({
        data: { msg_type: "image", contact_id: follower, msg: { media_url: mediaUrl } },
        result: { code: 1001, message: "common" },
      }),
      { "content-type": "application/json" },
    );
    return { status: answer.status, body: JSON.parse(answer.text), follower };
  }
  try {
    await t.step("an allowed name over https: read, uploaded, sent", async () => {
      const r = await reply(`https://localhost:${port}/pic.png`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((fake.sent.at(-1) as { touser: string }).touser, r.follower);
    });
    await t.step("its redirect to the bare address is checked again and refused", async () => {
      const sent = fake.sent.length;
      const r = await reply(`https://localhost:${port}/to-loopback`);
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.match(r.body.result.message, /private address \(127\.0\.0\.1\)/);
      assert.equal(fake.sent.length, sent);
    });
  } finally {
    await agent.close();
    await main.stop();
    await fake.close();
    await files.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
