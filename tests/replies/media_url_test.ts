// An agent's media_url attacked from outside (issue 14.2) and named for WeChat (issue 15.3): a real
// bridge, the fake WeChat, and HTTP services on loopback standing in for what sits inside the
// bridge's network. Whatever is refused, the follower gets nothing and WeChat sees no upload.

import assert from "node:assert/strict";
import { type FakeUpload, startFakeWechat } from "../../tools/fake_wechat.ts";
import { resolveWithSystem } from "../../src/replies/public_get.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { amrFrames, amrOf, ffmpeg, VOICE_AMR } from "../media/_media_tools.ts";

const B = "/im_component/wx_official_account";
const UPLOAD = "cgi-bin/media/upload";
const SEND = "cgi-bin/message/custom/send";

const PNG = new Uint8Array([
  ...[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
  ...new TextEncoder().encode("internal-only payload"),
]);
const MP4 = new Uint8Array([0, 0, 0, 0x18, ...new TextEncoder().encode("ftypisom"), 0, 0, 2, 0]);

function serve(handler: (url: URL) => Response) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    return handler(new URL(req.url));
  });
}

Deno.test("an agent's media_url cannot reach inside the bridge's network", async (t) => {
  // A 61 s MP3: under 2 MB, but longer than WeChat takes for a voice.
  const tmp = await Deno.makeTempDir({ prefix: "media-url-" });
  await ffmpeg(
    ...["-f", "lavfi", "-i", "sine=frequency=440:duration=61", "-ac", "1", "-ar", "8000"],
    ...["-c:a", "libmp3lame", "-b:a", "16k", "-y", `${tmp}/long.mp3`],
  );
  const longMp3 = await Deno.readFile(`${tmp}/long.mp3`);
  // WeChat's 2 MB of voice as one-byte NO_DATA frames.
  const noDataAmr = new Uint8Array(2 * 1024 * 1024).fill(0x7c);
  noDataAmr.set(new TextEncoder().encode("#!AMR\n"));
  // The real voice's frames for 70 s, and the ID3 tag of the MP3 alone.
  const longAmr = amrOf(amrFrames(await Deno.readFile(VOICE_AMR)), 3500);
  const tagOnly = longMp3.subarray(0, 10 + [6, 7, 8, 9].reduce((n, i) => n * 128 + longMp3[i]!, 0));
  await Deno.remove(tmp, { recursive: true });
  // A loopback-only service the bridge must never read for an agent.
  const secretReads: string[] = [];
  const secret = serve((url) => {
    secretReads.push(url.pathname);
    return new Response(PNG, { headers: { "content-type": "image/png" } });
  });
  const S = secret.addr.port;
  // The operator's intranet file server, allowed by MEDIA_URL_PRIVATE_HOSTS.
  const intranet = serve((url) => {
    switch (url.pathname) {
      case "/report.png":
        return new Response(PNG, { headers: { "content-type": "image/png" } });
      case "/download":
        // No file suffix and a generic type: what WeChat named "download" and refused (40005).
        return new Response(PNG, { headers: { "content-type": "application/octet-stream" } });
      case "/clip":
        return new Response(MP4, { headers: { "content-type": "binary/octet-stream" } });
      case "/long.mp3":
        return new Response(longMp3, { headers: { "content-type": "audio/mpeg" } });
      case "/nodata.amr":
        return new Response(noDataAmr, { headers: { "content-type": "audio/amr" } });
      case "/long.amr":
        return new Response(new Uint8Array(longAmr), { headers: { "content-type": "audio/amr" } });
      case "/tag.mp3":
        return new Response(tagOnly, { headers: { "content-type": "audio/mpeg" } });
      case "/magic.amr":
        return new Response("#!AMR\n", { headers: { "content-type": "audio/amr" } });
      case "/text.amr":
        return new Response("#!AMR\nnot a voice", { headers: { "content-type": "audio/amr" } });
      case "/notes":
        return new Response("just text", { headers: { "content-type": "text/plain" } });
      case "/to-secret":
        return Response.redirect(`http://127.0.0.1:${S}/secret.png`, 302);
      case "/to-localhost":
        return Response.redirect(`http://localhost:${S}/secret.png`, 301);
      case "/to-metadata":
        return Response.redirect("http://169.254.169.254/latest/meta-data/", 307);
      case "/loop":
        return Response.redirect(`${url.origin}/loop`, 302);
      default:
        return new Response("not found", { status: 404 });
    }
  });
  const I = intranet.addr.port;
  // Names that look public and resolve inside, as an attacker's DNS would answer; other names
  // (localhost among them) go to the system resolver.
  const names: Record<string, string[]> = {
    "files.example.com": ["127.0.0.1"],
    "mixed.example.com": ["93.184.216.34", "10.0.0.7"],
    "cdn.example.com": ["127.0.0.1"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "compat.example.com": ["::7f00:1"],
    // DNS64's spelling of loopback: the well-known NAT64 prefix is judged by the IPv4 inside.
    "nat64.example.com": ["64:ff9b::7f00:1"],
  };
  const resolved: string[] = [];
  const resolveHost = (host: string) => {
    resolved.push(host);
    return names[host] ? Promise.resolve(names[host]) : resolveWithSystem(host);
  };
  const fake = await startFakeWechat({ appId: "wxtest", secret: "s" });
  const server = await startBridge({
    env: {
      WECHAT_APPID: "wxtest",
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: fake.url,
      // The intranet by address and port, and a name (any port) the operator vouches for.
      MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${I}, cdn.example.com`,
      // One agent sends every case here through `POST send`, faster than its rate limit.
      SEND_RATE_PER_S: "1000",
    },
    resolveHost,
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  let n = 0;
  /** The follower writes (so the window is open), then the agent replies with media_url. */
  async function replyWith(mediaUrl: string, msgType = "image") {
    const follower = `oMediaUrl${++n}`;
    const res = await post(`${server.base}${B}/send_xml`, textXml(follower, "A", "hi", `${n}`));
    assert.equal(res.text, "success");
    await agent.waitFor((e) => e.data["contact_id"] === follower && e.result.code === 1001);
    const uploads = fake.calls.filter((c) => c.path === UPLOAD).length;
    const sent = fake.sent.length;
    const answer = await post(
      `${server.base}${B}/send?userid=A`,
      JSON.stringify({
        data: {
          msg_type: msgType,
          contact_id: follower,
          client_id: `m${n}`,
          msg: { media_url: mediaUrl },
        },
        result: { code: 1001, message: "common" },
      }),
      { "content-type": "application/json" },
    );
    const body = JSON.parse(answer.text);
    return {
      status: answer.status,
      body,
      follower,
      uploads: fake.calls.filter((c) => c.path === UPLOAD).slice(uploads),
      sent: fake.sent.slice(sent),
      told: () => agent.waitFor((e) => e.result.code === -1 && e.data["client_id"] === `m${n}`),
    };
  }
  async function refused(mediaUrl: string, status: number, pattern: RegExp, msgType = "image") {
    const r = await replyWith(mediaUrl, msgType);
    assert.equal(r.status, status, r.body.result?.message);
    assert.equal(r.body.result.code, -1);
    assert.match(r.body.result.message, pattern);
    assert.deepEqual(r.uploads, [], "nothing was uploaded to WeChat");
    assert.deepEqual(r.sent, [], "the follower received nothing");
    const told = await r.told();
    assert.match(told.result.message, pattern);
    return r;
  }
  try {
    await t.step("a loopback service named by address is refused, unread", async () => {
      await refused(`http://127.0.0.1:${S}/secret.png`, 403, /private address \(127\.0\.0\.1\)/);
      await refused(`http://[::1]:${S}/secret.png`, 403, /private address \(::1\)/);
      await refused(`http://[::ffff:127.0.0.1]:${S}/secret.png`, 403, /private address/);
      await refused("http://169.254.169.254/latest/meta-data/", 403, /private address/);
      await refused("http://0.0.0.0/x.png", 403, /private address/);
      assert.deepEqual(secretReads, []);
    });

    await t.step("every other spelling of a private address is refused, unread", async () => {
      // Decimal, octal and hex IPv4 (the URL parser reads them as 127.0.0.1), IPv4 inside IPv6
      // (mapped, IPv4-compatible, local NAT64), the metadata address inside IPv6.
      for (
        const host of [
          "2130706433",
          "017700000001",
          "0x7f.1",
          "127.1",
          "[::ffff:7f00:1]",
          "[::127.0.0.1]",
          "[64:ff9b:1::7f00:1]",
          "[64:ff9b::7f00:1]",
        ]
      ) {
        await refused(`http://${host}:${S}/secret.png`, 403, /private address/);
      }
      await refused("http://[::169.254.169.254]/latest/meta-data/", 403, /private address/);
      await refused(`http://mapped.example.com:${S}/secret.png`, 403, /private address/);
      await refused(`http://compat.example.com:${S}/secret.png`, 403, /private address/);
      await refused(`http://nat64.example.com:${S}/secret.png`, 403, /private address/);
      await refused("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", 403, /private address/);
      assert.deepEqual(secretReads, []);
    });

    await t.step("a host name resolving to 127.0.0.1 is refused after resolution", async () => {
      await refused(`http://localhost:${S}/secret.png`, 403, /private address \(127\.0\.0\.1\)/);
      await refused(`http://files.example.com:${S}/secret.png`, 403, /private address/);
      await refused(`http://mixed.example.com:${S}/secret.png`, 403, /10\.0\.0\.7/);
      assert.deepEqual(secretReads, []);
    });

    await t.step("a redirect to loopback or metadata is refused at that hop", async () => {
      // cdn.example.com is allowed and answers; where it redirects is checked again.
      await refused(`http://cdn.example.com:${I}/to-secret`, 403, /127\.0\.0\.1/);
      await refused(`http://cdn.example.com:${I}/to-localhost`, 403, /127\.0\.0\.1/);
      await refused(`http://127.0.0.1:${I}/to-metadata`, 403, /169\.254\.169\.254/);
      await refused(`http://127.0.0.1:${I}/loop`, 502, /redirected more than 5 times/);
      assert.deepEqual(secretReads, []);
    });

    await t.step("only http(s) without credentials", async () => {
      await refused(`http://user:pw@127.0.0.1:${I}/report.png`, 400, /user name or password/);
    });

    await t.step("a host in MEDIA_URL_PRIVATE_HOSTS is read, on its listed port only", async () => {
      const r = await replyWith(`http://127.0.0.1:${I}/report.png`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.uploads.length, 1);
      assert.deepEqual((r.uploads[0]!.body as FakeUpload).media?.bytes, PNG);
      assert.equal(r.sent.length, 1);
      assert.equal((r.sent[0] as { touser: string }).touser, r.follower);
      // The same address on another port is not the listed host.
      await refused(`http://127.0.0.1:${S}/secret.png`, 403, /private address/);
      assert.deepEqual(secretReads, []);
    });

    await t.step("the connection goes to the address that was checked", async () => {
      // cdn.example.com exists only in the test's resolver: the bridge reaches the server
      // only because it connects to the address it resolved and checked, once per hop.
      resolved.length = 0;
      const r = await replyWith(`http://cdn.example.com:${I}/report.png`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(resolved, ["cdn.example.com"]);
    });

    await t.step("a media_url without a file suffix is named by its bytes (15.3)", async () => {
      const image = await replyWith(`http://127.0.0.1:${I}/download?id=7`);
      assert.equal(image.status, 200, JSON.stringify(image.body));
      const part = (image.uploads[0]!.body as FakeUpload).media!;
      assert.equal(part.filename, "download.png");
      assert.equal(part.contentType, "image/png");
      const video = await replyWith(`http://127.0.0.1:${I}/clip`, "video");
      assert.equal(video.status, 200, JSON.stringify(video.body));
      const clip = (video.uploads[0]!.body as FakeUpload).media!;
      assert.equal(clip.filename, "clip.mp4");
      assert.equal(clip.contentType, "video/mp4");
      assert.equal(video.uploads[0]!.query["type"], "video");
    });

    await t.step("a file WeChat would refuse for the type is refused before upload", async () => {
      await refused(`http://127.0.0.1:${I}/notes`, 415, /image as JPEG, PNG or GIF/);
      await refused(
        `http://127.0.0.1:${I}/report.png`,
        415,
        /voice as AMR or MP3.*image\/png/,
        "voice",
      );
      await refused(`http://127.0.0.1:${I}/download`, 415, /video as MP4/, "video");
      // Measured only to just past the limit, so the length said is a floor.
      await refused(
        `http://127.0.0.1:${I}/long.mp3`,
        415,
        /voice of at most 60 s; the media_url file lasts 61\.\d s or more$/,
        "voice",
      );
      // An AMR's frames say its length whole.
      await refused(
        `http://127.0.0.1:${I}/long.amr`,
        415,
        /voice of at most 60 s; the media_url file lasts 70\.0 s$/,
        "voice",
      );
      await refused(
        `http://127.0.0.1:${I}/tag.mp3`,
        415,
        /playable voice: Cannot parse MP3: the file is an ID3 tag and no audio after it/,
        "voice",
      );
      await refused(
        `http://127.0.0.1:${I}/magic.amr`,
        415,
        /playable voice.*no complete frame/,
        "voice",
      );
      await refused(
        `http://127.0.0.1:${I}/text.amr`,
        415,
        /playable voice.*not a frame header/,
        "voice",
      );
      // WeChat's 2 MB of NO_DATA frames: 11 hours by their count, with nothing to hear.
      await refused(
        `http://127.0.0.1:${I}/nodata.amr`,
        415,
        /playable voice: Cannot play AMR: its 2097146 frames .* are all pauses/,
        "voice",
      );
    });
    assert.equal(fake.calls.filter((c) => c.path === SEND).length, 4);
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
    await secret.shutdown();
    await intranet.shutdown();
  }
});

Deno.test("the fake WeChat refuses an upload named without a proper extension (40005)", async () => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "s" });
  try {
    const token = await (await fetch(
      `${fake.url}/cgi-bin/token?grant_type=client_credential&appid=wxtest&secret=s`,
    )).json();
    for (
      const [name, errcode] of [["download", 40005], ["pic.txt", 40005], ["pic.png", undefined]]
    ) {
      const form = new FormData();
      form.append("media", new Blob([PNG], { type: "image/png" }), name as string);
      const res = await fetch(
        `${fake.url}/${UPLOAD}?type=image&access_token=${token.access_token}`,
        { method: "POST", body: form },
      );
      const body = await res.json();
      assert.equal(body.errcode, errcode, `${name}: ${JSON.stringify(body)}`);
    }
  } finally {
    await fake.close();
  }
});

Deno.test("POST upload names the WeChat upload by its type, whatever filename says", async () => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "s" });
  const server = await startBridge({
    env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url },
  });
  try {
    for (const [given, named] of [["receipt", "receipt.png"], ["scan.jpeg", "scan.png"]]) {
      const res = await fetch(`${server.base}${B}/upload?userid=A&filename=${given}`, {
        method: "POST",
        body: PNG,
        headers: { "content-type": "image/png" },
      });
      const body = await res.json();
      assert.equal(res.status, 201, JSON.stringify(body));
      const part = (fake.calls.filter((c) => c.path === UPLOAD).at(-1)!.body as FakeUpload).media!;
      assert.equal(part.filename, named);
    }
  } finally {
    await server.close();
    await fake.close();
  }
});
