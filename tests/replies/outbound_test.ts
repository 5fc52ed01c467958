import assert from "node:assert/strict";
import {
  isReplyMsgType,
  mediaToUpload,
  parseAgentReply,
  toCustomMessage,
} from "../../src/replies/outbound.ts";

function data(msgType: string, msg: unknown, extra: Record<string, unknown> = {}) {
  return { msg_type: msgType, contact_id: "oFollower", client_id: "c-1", msg, ...extra };
}

function rejects(value: unknown, detail: RegExp): void {
  assert.throws(() => parseAgentReply(value), (err) => {
    assert.ok(err instanceof SyntaxError);
    assert.match(err.message, /^Cannot parse reply: /);
    assert.match(err.message, detail);
    return true;
  });
}

Deno.test("parseAgentReply() and toCustomMessage() build WeChat's payloads", async (t) => {
  await t.step("text", () => {
    const reply = parseAgentReply(data("text", { content: "Hi, how can I help?" }));
    assert.equal(reply.contactId, "oFollower");
    assert.equal(reply.clientId, "c-1");
    assert.deepEqual(toCustomMessage("oFollower", reply), {
      touser: "oFollower",
      msgtype: "text",
      text: { content: "Hi, how can I help?" },
    });
  });

  await t.step("image and voice by media_id", () => {
    for (const type of ["image", "voice"]) {
      const reply = parseAgentReply(data(type, { media_id: "MID" }));
      assert.equal(mediaToUpload(reply), null);
      assert.deepEqual(toCustomMessage("oF", reply), {
        touser: "oF",
        msgtype: type,
        [type]: { media_id: "MID" },
      });
    }
  });

  await t.step("image by media_url is uploaded first, then sent by its media_id", () => {
    const reply = parseAgentReply(data("image", { media_url: "https://cdn.example.com/a.png" }));
    assert.deepEqual(mediaToUpload(reply), { type: "image", url: "https://cdn.example.com/a.png" });
    assert.throws(() => toCustomMessage("oF", reply), /not uploaded yet/);
    assert.deepEqual(toCustomMessage("oF", reply, { mediaId: "UPLOADED" }), {
      touser: "oF",
      msgtype: "image",
      image: { media_id: "UPLOADED" },
    });
  });

  await t.step("video with its thumbnail, title and description", () => {
    const reply = parseAgentReply(
      data("video", { media_id: "V", thumb_media_id: "T", title: "How to", description: "2 min" }),
    );
    assert.deepEqual(toCustomMessage("oF", reply), {
      touser: "oF",
      msgtype: "video",
      video: { media_id: "V", thumb_media_id: "T", title: "How to", description: "2 min" },
    });
    const bare = parseAgentReply(data("video", { media_url: "http://x.test/v.mp4" }));
    assert.deepEqual(toCustomMessage("oF", bare, { mediaId: "V2" }), {
      touser: "oF",
      msgtype: "video",
      video: { media_id: "V2" },
    });
  });

  await t.step("news as one link card, flat or as articles[0]", () => {
    const card = {
      title: "Order shipped",
      description: "Track it here",
      url: "https://shop.example.com/o/1",
      picurl: "https://shop.example.com/p.jpg",
    };
    const expected = { touser: "oF", msgtype: "news", news: { articles: [card] } };
    assert.deepEqual(toCustomMessage("oF", parseAgentReply(data("news", card))), expected);
    assert.deepEqual(
      toCustomMessage("oF", parseAgentReply(data("news", { articles: [card] }))),
      expected,
    );
  });

  await t.step("miniprogrampage", () => {
    const msg = { title: "Shop", appid: "wxmini", pagepath: "pages/index", thumb_media_id: "T" };
    assert.deepEqual(toCustomMessage("oF", parseAgentReply(data("miniprogrampage", msg))), {
      touser: "oF",
      msgtype: "miniprogrampage",
      miniprogrampage: msg,
    });
  });

  await t.step("a numeric client_id is read as text, a missing one as null", () => {
    assert.equal(parseAgentReply(data("text", { content: "x" }, { client_id: 17 })).clientId, "17");
    const { client_id: _, ...noClient } = data("text", { content: "x" });
    assert.equal(parseAgentReply(noClient).clientId, null);
  });
});

Deno.test("parseAgentReply() names the wrong field", async (t) => {
  await t.step("data and msg must be objects", () => {
    rejects("text", /data must be an object/);
    rejects(data("text", null), /msg must be an object/);
  });

  await t.step("contact_id and msg_type", () => {
    rejects({ ...data("text", { content: "x" }), contact_id: "" }, /contact_id/);
    rejects(data("typing", {}), /msg_type "typing" is not a reply type/);
  });

  await t.step("text content", () => {
    rejects(data("text", {}), /msg\.content must be a non-empty string/);
    rejects(data("text", { content: "   " }), /msg\.content is blank/);
    rejects(data("text", { content: 5 }), /msg\.content/);
  });

  await t.step("media", () => {
    rejects(data("image", {}), /media_id or media_url/);
    rejects(data("voice", { media_url: "file:///etc/passwd" }), /msg\.media_url must be http/);
    rejects(data("video", { media_id: "V", thumb_media_id: 3 }), /msg\.thumb_media_id/);
  });

  await t.step("news", () => {
    rejects(data("news", { title: "t" }), /msg\.url/);
    rejects(data("news", { url: "https://a.test" }), /msg\.title/);
    rejects(data("news", { articles: [] }), /exactly one article/);
    rejects(data("news", { articles: [{ title: "t", url: "nope" }] }), /articles\[0\]\.url/);
  });

  await t.step("miniprogrampage", () => {
    rejects(
      data("miniprogrampage", { title: "t", appid: "a", pagepath: "p" }),
      /msg\.thumb_media_id/,
    );
  });
});

Deno.test("isReplyMsgType() separates replies from commands", () => {
  assert.equal(isReplyMsgType("news"), true);
  assert.equal(isReplyMsgType("miniprogrampage"), true);
  assert.equal(isReplyMsgType("transfer"), false);
  assert.equal(isReplyMsgType(undefined), false);
});
