// Claims of README.md, PROTOCOL.md and docs/ that no other test showed on a running server (the
// table is docs/claims.md): each test starts the real server (tests/helpers/server.ts) and talks
// to it over HTTP and WebSocket, with the fake WeChat API where replies or media need one.

import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { startFakeWechat } from "../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "./helpers/agent.ts";
import { startBridge } from "./helpers/server.ts";

const B = "/im_component/wx_official_account";

let msgCounter = 6_000_000;
/** The follower writes `content` to the account; the POST must be answered success. */
async function write(base: string, follower: string, content: string): Promise<string> {
  const msgId = String(++msgCounter);
  const res = await post(`${base}${B}/send_xml`, textXml(follower, "gh_account", content, msgId));
  assert.equal(res.text, "success");
  return msgId;
}

Deno.test("every route under B is served at the root too, but the demo routes", async (t) => {
  const server = await startBridge();
  const status = async (path: string, init?: RequestInit) => {
    const res = await fetch(`${server.base}${path}`, init);
    await res.body?.cancel();
    return res.status;
  };
  try {
    const cases: Array<[string, RequestInit | undefined, number]> = [
      ["/contacts?userid=A", undefined, 200],
      ["/history?userid=A&contact_id=nobody", undefined, 404],
      ["/send_xml?signature=x&timestamp=1&nonce=2&echostr=e", undefined, 401],
      ["/send_xml", { method: "POST", body: "<xml>" }, 400],
      ["/send", { method: "POST", body: "{not json" }, 400],
      [
        "/upload?userid=A",
        { method: "POST", body: "text", headers: { "content-type": "text/plain" } },
        415,
      ],
      // A plain GET of the socket route: upgrade required.
      ["/msg?userid=A", undefined, 426],
    ];
    for (const [path, init, expected] of cases) {
      await t.step(
        `${init?.method ?? "GET"} ${path.split("?")[0]}: ${expected} at both`,
        async () => {
          assert.equal(await status(`${B}${path}`, init), expected);
          assert.equal(await status(path, init), expected);
        },
      );
    }
    await t.step("the demo routes exist only under B", async () => {
      assert.equal(await status(`${B}/demo/replies?contact_id=x`), 200);
      assert.equal(await status("/demo/replies?contact_id=x"), 404);
    });
  } finally {
    await server.close();
  }
});

Deno.test("PUBLIC_URL is the base of the media URLs handed to agents", async (t) => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 9, 9, 9]);
  fake.addMedia("img1", png, "image/png");
  const server = await startBridge({
    env: {
      WECHAT_APPID: "wxtest",
      WECHAT_SECRET: "secret",
      WECHAT_API_BASE: fake.url,
      PUBLIC_URL: "https://bridge.example.com/",
    },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    await t.step(
      "an image's media_path starts with PUBLIC_URL, not the request's host",
      async () => {
        const xml =
          `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oPic]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[]]></PicUrl><MediaId><![CDATA[img1]]></MediaId><MsgId>6100</MsgId></xml>`;
        assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
        const got = await agent.waitFor((e) => e.data["id"] === "6100", 10_000);
        const path = String(got.data.msg?.["media_path"]);
        // The trailing slash of the setting is dropped.
        assert.ok(path.startsWith("https://bridge.example.com/media/"), path);
        // The same path on this server serves the file.
        const local = await fetch(`${server.base}${new URL(path).pathname}${new URL(path).search}`);
        assert.deepEqual(new Uint8Array(await local.arrayBuffer()), png);
      },
    );
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});

Deno.test("without PUBLIC_URL media URLs are http:// on the Host asked for; X-Forwarded-* is not read", async (t) => {
  // docs/production.md: behind a TLS proxy only PUBLIC_URL gives them their https:// base. The
  // forwarded headers any client can send must not steer where an agent's browser is sent.
  const server = await startBridge();
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 5, 5, 5]);
  // fetch() sets Host itself: the request is written by hand, as a proxy would send it.
  const upload = async (headers: string[]): Promise<string> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const head = [
      `POST ${B}/upload?userid=A HTTP/1.1`,
      ...headers,
      "Content-Type: image/png",
      `Content-Length: ${png.byteLength}`,
      "Connection: close",
      "",
      "",
    ].join("\r\n");
    await conn.write(new TextEncoder().encode(head));
    await conn.write(png);
    const answer = new TextDecoder().decode(
      await new Response(conn.readable).arrayBuffer(),
    );
    assert.match(answer, /^HTTP\/1\.1 201 /, answer);
    return String(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).media_url);
  };
  try {
    await t.step("the Host header names the origin, with http://", async () => {
      const url = await upload(["Host: bridge.example.com"]);
      assert.ok(url.startsWith("http://bridge.example.com/media/"), url);
    });
    await t.step("X-Forwarded-Proto and X-Forwarded-Host change nothing", async () => {
      const url = await upload([
        "Host: bridge.example.com",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example",
      ]);
      assert.ok(url.startsWith("http://bridge.example.com/media/"), url);
    });
  } finally {
    await server.close();
  }
});

Deno.test("a store that cannot be reached: /readyz 503, a new socket closed with 1011", async (t) => {
  const server = await startBridge();
  const store = server.store as unknown as Record<string, unknown>;
  try {
    await t.step("/readyz is 200 while the store answers", async () => {
      const res = await fetch(`${server.base}/readyz`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    });
    await t.step("/readyz is 503 once it does not, /healthz still 200", async () => {
      store["ping"] = () => Promise.reject(new Error("connection refused"));
      const ready = await fetch(`${server.base}/readyz`);
      assert.equal(ready.status, 503);
      assert.deepEqual(await ready.json(), { status: "store unreachable" });
      const health = await fetch(`${server.base}/healthz`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
    });
    await t.step("an agent connecting then is closed with 1011", async () => {
      store["agentOnline"] = () => Promise.reject(new Error("connection refused"));
      const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
      const closed = await agent.closed;
      assert.equal(closed.code, 1011);
    });
  } finally {
    await server.close();
  }
});

Deno.test("GET history pages a conversation backwards, oldest first in each page", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  const page = async (query: string) => {
    const res = await fetch(`${server.base}${B}/history?userid=A&contact_id=oHist${query}`);
    assert.equal(res.status, 200);
    const body = await res.json() as {
      messages: Array<{ msg: { content: string }; direction: string }>;
      next_before: number | null;
    };
    return { contents: body.messages.map((m) => m.msg.content), body };
  };
  try {
    const last = await (async () => {
      let id = "";
      for (const n of [1, 2, 3, 4, 5]) id = await write(server.base, "oHist", `m${n}`);
      return id;
    })();
    await agent.waitFor((e) => e.data["id"] === last);

    await t.step(
      "the newest page first, each oldest first, until next_before is null",
      async () => {
        const first = await page("&limit=2");
        assert.deepEqual(first.contents, ["m4", "m5"]);
        assert.equal(first.body.messages[0]!.direction, "in");
        assert.notEqual(first.body.next_before, null);
        const second = await page(`&limit=2&before=${first.body.next_before}`);
        assert.deepEqual(second.contents, ["m2", "m3"]);
        const third = await page(`&limit=2&before=${second.body.next_before}`);
        assert.deepEqual(third.contents, ["m1"]);
        assert.equal(third.body.next_before, null);
      },
    );
    await t.step(
      "without limit the whole (short) conversation; another agent's follower is 403",
      async () => {
        assert.deepEqual((await page("")).contents, ["m1", "m2", "m3", "m4", "m5"]);
        const res = await fetch(`${server.base}${B}/history?userid=B&contact_id=oHist`);
        assert.equal(res.status, 403);
        await res.body?.cancel();
      },
    );
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("the read command sets a contact's unread count to 0", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  const unread = async () => {
    const res = await fetch(`${server.base}${B}/contacts?userid=A`);
    const body = await res.json() as { contacts: Array<{ contact_id: string; unread: number }> };
    return body.contacts.find((c) => c.contact_id === "oRead")?.unread;
  };
  try {
    await write(server.base, "oRead", "one");
    const last = await write(server.base, "oRead", "two");
    await agent.waitFor((e) => e.data["id"] === last);
    await t.step("two messages: unread 2", async () => {
      assert.equal(await unread(), 2);
    });
    await t.step("read over POST send: 200, then unread 0", async () => {
      const res = await post(
        `${server.base}${B}/send?userid=A`,
        JSON.stringify({
          data: { msg_type: "read", contact_id: "oRead" },
          result: { code: 0, message: "" },
        }),
      );
      assert.equal(res.status, 200, res.text);
      assert.equal(await unread(), 0);
    });
    await t.step("another agent's read is 409, and an unknown follower 404", async () => {
      const read = (contact: string) =>
        post(
          `${server.base}${B}/send?userid=B`,
          JSON.stringify({ data: { msg_type: "read", contact_id: contact } }),
        );
      assert.equal((await read("oRead")).status, 409);
      assert.equal((await read("oNobody")).status, 404);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("an agent token is accepted up to 5 s after its exp, not later", async (t) => {
  const secret = "s".repeat(32);
  const server = await startBridge({ env: { AGENT_SECRET: secret } });
  const key = new TextEncoder().encode(secret);
  const tokenExpiredAgo = (seconds: number) =>
    new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("A")
      .setExpirationTime(Math.floor(Date.now() / 1000) - seconds).sign(key);
  const contacts = async (token: string) => {
    const res = await fetch(`${server.base}${B}/contacts?userid=A`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await res.body?.cancel();
    return res.status;
  };
  try {
    await t.step("expired 2 s ago: still accepted", async () => {
      assert.equal(await contacts(await tokenExpiredAgo(2)), 200);
    });
    await t.step("expired 8 s ago: 401", async () => {
      assert.equal(await contacts(await tokenExpiredAgo(8)), 401);
    });
  } finally {
    await server.close();
  }
});

Deno.test("GET contacts lists newest first, and the followers waiting for an agent", async (t) => {
  let clock = 1_800_000_000_000;
  const server = await startBridge({ now: () => clock });
  const contacts = async (agent: string) => {
    const res = await fetch(`${server.base}${B}/contacts?userid=${agent}`);
    assert.equal(res.status, 200);
    return await res.json() as {
      contacts: Array<{ contact_id: string; status: string }>;
      waiting: Array<{ contact_id: string; name: string; since: number }>;
    };
  };
  try {
    await t.step("with no agent online a follower waits, listed with its time", async () => {
      await write(server.base, "oWaits", "anyone?");
      const { waiting } = await contacts("A");
      assert.deepEqual(waiting.map((w) => [w.contact_id, w.since]), [["oWaits", clock / 1000]]);
    });
    await t.step(
      "once A comes it serves the follower; the newest conversation is first",
      async () => {
        const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
        try {
          await agent.waitFor((e) => e.data["contact_id"] === "oWaits");
          clock += 1000;
          const last = await write(server.base, "oLater", "me too");
          await agent.waitFor((e) => e.data["id"] === last);
          const list = await contacts("A");
          assert.deepEqual(list.waiting, []);
          assert.deepEqual(list.contacts.map((c) => [c.contact_id, c.status]), [
            ["oLater", "open"],
            ["oWaits", "open"],
          ]);
        } finally {
          await agent.close();
        }
      },
    );
  } finally {
    await server.close();
  }
});

Deno.test("voice and video replies by media_id reach WeChat's customer-service API", async (t) => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  fake.addMedia("voice1", new Uint8Array([0x23, 0x21, 0x41, 0x4d, 0x52]), "audio/amr");
  fake.addMedia("video1", new Uint8Array([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70]), "video/mp4");
  fake.addMedia("thumb1", new Uint8Array([0xff, 0xd8, 0xff, 0xe0]), "image/jpeg");
  const server = await startBridge({
    env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  const send = (msgType: string, msg: Record<string, unknown>) =>
    post(
      `${server.base}${B}/send?userid=A`,
      JSON.stringify({
        data: { msg_type: msgType, contact_id: "oMedia", msg },
        result: { code: 1001, message: "common" },
      }),
    );
  try {
    const id = await write(server.base, "oMedia", "send me the file");
    await agent.waitFor((e) => e.data["id"] === id);
    await t.step("voice: WeChat's voice JSON with the media_id", async () => {
      const res = await send("voice", { media_id: "voice1" });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(fake.sent.at(-1), {
        touser: "oMedia",
        msgtype: "voice",
        voice: { media_id: "voice1" },
      });
    });
    await t.step("video: media_id, thumb_media_id, title and description", async () => {
      const video = {
        media_id: "video1",
        thumb_media_id: "thumb1",
        title: "How to",
        description: "Two minutes",
      };
      const res = await send("video", video);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(fake.sent.at(-1), { touser: "oMedia", msgtype: "video", video });
    });
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});

Deno.test("a reply to a follower who unsubscribed is refused before WeChat sees it", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    const id = await write(server.base, "oGone", "bye");
    await agent.waitFor((e) => e.data["id"] === id);
    const xml =
      `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oGone]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unsubscribe]]></Event></xml>`;
    assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
    await agent.waitFor((e) => e.data.msg?.["event"] === "unsubscribe");
    await t.step("403 with limit unsubscribed, inside the 48-hour window", async () => {
      const res = await post(
        `${server.base}${B}/send?userid=A`,
        JSON.stringify({
          data: { msg_type: "text", contact_id: "oGone", msg: { content: "wait" } },
          result: { code: 1001, message: "common" },
        }),
      );
      assert.equal(res.status, 403, res.text);
      assert.equal(JSON.parse(res.text).data.limit, "unsubscribed");
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("media URLs open on every instance that shares AGENT_SECRET and the media files", async (t) => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 5, 5]);
  const secret = "m".repeat(32);
  // One media directory mounted on both, as docs/redis.md asks; each instance its own DATA_DIR.
  const shared = await Deno.makeTempDir({ prefix: "bridge-shared-media-" });
  const start = (env: Record<string, string>) => startBridge({ env });
  const upload = async (base: string, headers: HeadersInit) => {
    const res = await fetch(`${base}${B}/upload?userid=A`, {
      method: "POST",
      body: png,
      headers: { "content-type": "image/png", ...headers },
    });
    assert.equal(res.status, 201);
    return (await res.json() as { media_url: string }).media_url;
  };
  const token = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("A")
    .setExpirationTime("10m").sign(new TextEncoder().encode(secret));
  const onOther = (url: string, base: string) => {
    const u = new URL(url);
    return fetch(`${base}${u.pathname}${u.search}`);
  };
  try {
    await t.step("the same AGENT_SECRET: a URL from A serves on B", async () => {
      const a = await start({ AGENT_SECRET: secret, DATA_DIR: `${shared}/a` });
      const b = await start({ AGENT_SECRET: secret, DATA_DIR: `${shared}/b` });
      try {
        await Deno.remove(`${shared}/b/media`, { recursive: true }).catch(() => {});
        await Deno.mkdir(`${shared}/a/media`, { recursive: true });
        await Deno.symlink(`${shared}/a/media`, `${shared}/b/media`);
        const url = await upload(a.base, { authorization: `Bearer ${token}` });
        const res = await onOther(url, b.base);
        assert.equal(res.status, 200);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), png);
      } finally {
        await a.close();
        await b.close();
      }
    });
    await t.step("without AGENT_SECRET each instance has its own key: 403 on B", async () => {
      const a = await start({ DATA_DIR: `${shared}/c` });
      const b = await start({ DATA_DIR: `${shared}/d` });
      try {
        await Deno.mkdir(`${shared}/c/media`, { recursive: true });
        await Deno.symlink(`${shared}/c/media`, `${shared}/d/media`);
        const url = await upload(a.base, {});
        const res = await onOther(url, b.base);
        assert.equal(res.status, 403);
        await res.body?.cancel();
      } finally {
        await a.close();
        await b.close();
      }
    });
  } finally {
    await Deno.remove(shared, { recursive: true });
  }
});

Deno.test("POST upload answers WeChat's refusal as 502 with its errmsg", async (t) => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const server = await startBridge({
    env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
  });
  try {
    await t.step("media/upload refused: 502 naming WeChat's reason", async () => {
      fake.failNext("cgi-bin/media/upload", 45001, "media size out of limit");
      const res = await fetch(`${server.base}${B}/upload?userid=A`, {
        method: "POST",
        body: new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1]),
        headers: { "content-type": "image/png" },
      });
      const text = await res.text();
      assert.equal(res.status, 502, text);
      assert.match(text, /media size out of limit/);
    });
  } finally {
    await server.close();
    await fake.close();
  }
});

Deno.test("a reply to a follower another agent serves is refused with 409", async (t) => {
  const server = await startBridge();
  const a = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    const id = await write(server.base, "oTaken", "hello");
    await a.waitFor((e) => e.data["id"] === id);
    await t.step("B's reply to A's follower: 409, nothing recorded for B", async () => {
      const res = await post(
        `${server.base}${B}/send?userid=B`,
        JSON.stringify({
          data: { msg_type: "text", contact_id: "oTaken", msg: { content: "mine?" } },
          result: { code: 1001, message: "common" },
        }),
      );
      assert.equal(res.status, 409, res.text);
      const history = await fetch(`${server.base}${B}/history?userid=A&contact_id=oTaken`);
      const body = await history.json() as { messages: Array<{ direction: string }> };
      assert.deepEqual(body.messages.map((m) => m.direction), ["in"]);
    });
  } finally {
    await a.close();
    await server.close();
  }
});

Deno.test("a CreateTime that is neither a number nor a date gives the time received", async (t) => {
  const T = 1_800_000_123_000;
  const server = await startBridge({ now: () => T });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    await t.step("send_time is the server's clock, in Unix seconds", async () => {
      const res = await post(
        `${server.base}${B}/send_xml`,
        textXml("oTime", "gh_account", "when?", "6200", "yesterday"),
      );
      assert.equal(res.text, "success");
      const got = await agent.waitFor((e) => e.data["id"] === "6200");
      assert.equal(got.data["send_time"], T / 1000);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});
