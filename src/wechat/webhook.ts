// WeChat's callback: the URL check, signatures, safe mode, retries, and turning each XML
// message into an inbound item for the switchboard. WeChat is answered `success` as soon as
// the message is committed; delivery to agents happens after.

import { getLogger } from "@logtape/logtape";
import { createFollowerEnvelope } from "./follower_envelope.ts";
import { HttpError } from "../http/http_error.ts";
import type { InboundItem, InboundOutcome } from "../core/store.ts";
import type { WechatCrypto } from "./crypto.ts";
import { dedupKeyOf, type FollowerMessage, readFollowerMessage } from "./message.ts";
import { verifyMessageSignature, verifyRequestSignature } from "./signature.ts";
import { createXmlReader, textOf } from "./xml.ts";

const log = getLogger(["bridge", "wechat"]);

/** Events after which WeChat lets the account answer (3 replies within a minute). */
const OPENING_EVENTS = new Set([
  "subscribe",
  "SCAN",
  "CLICK",
  "VIEW",
  "scancode_push",
  "scancode_waitmsg",
]);

/** What the webhook needs. */
export interface WebhookDeps {
  token?: string;
  crypto?: WechatCrypto;
  companyId: string;
  now: () => number;
  newId: () => string;
  /** Demo mode: the follower simulator names its follower with `?name=` (WeChat never does). */
  acceptNames?: boolean;
  accept(item: InboundItem, message: FollowerMessage, url: URL): Promise<InboundOutcome | void>;
}

/** Creates the handlers for `GET` and `POST send_xml`. */
export function createWechatWebhook(deps: WebhookDeps) {
  const xml = createXmlReader();

  function decryptBody(outer: ReturnType<typeof xml.parse>, params: URLSearchParams): string {
    const encrypt = textOf(outer, "Encrypt");
    if (!encrypt) throw new SyntaxError("Cannot parse WeChat XML: Encrypt is missing");
    if (!deps.crypto) {
      throw new HttpError(
        400,
        "Encrypted message, but WECHAT_AES_KEY and WECHAT_APPID are not set",
      );
    }
    if (!deps.token || !verifyMessageSignature(deps.token, params, encrypt)) {
      throw new HttpError(401, "Bad msg_signature");
    }
    const { xml: plain, key } = deps.crypto.decrypt(encrypt);
    if (key === "previous") log.info("Message decrypted with WECHAT_AES_KEY_PREVIOUS");
    return plain;
  }

  return {
    /** WeChat's URL check: echo `echostr` when the signature is right. */
    verify(url: URL): Response {
      if (!deps.token) throw new HttpError(401, "Cannot verify: WECHAT_TOKEN is not set");
      if (!verifyRequestSignature(deps.token, url.searchParams)) {
        throw new HttpError(401, "Bad signature");
      }
      return new Response(url.searchParams.get("echostr") ?? "", {
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    },

    /** Reads, checks and accepts one XML message; answers `success` once it is stored. */
    async receive(body: string, url: URL): Promise<Response> {
      const params = url.searchParams;
      let doc = xml.parse(body);
      const encrypted = params.get("encrypt_type") === "aes" ||
        (textOf(doc, "Encrypt") !== undefined && textOf(doc, "MsgType") === undefined);
      if (encrypted) {
        doc = xml.parse(decryptBody(doc, params));
      } else if (deps.token && !verifyRequestSignature(deps.token, params)) {
        throw new HttpError(401, "Bad signature");
      }
      const message = readFollowerMessage(doc);
      const receivedAt = deps.now();
      const given = deps.acceptNames ? params.get("name")?.trim().slice(0, 64) || null : null;
      const envelope = createFollowerEnvelope(message, {
        id: message.msgId ?? deps.newId(),
        name: given ?? message.from,
        avatar: "",
        companyId: deps.companyId,
        receivedAt,
      });
      const kind = message.event === undefined
        ? "message"
        : OPENING_EVENTS.has(message.event)
        ? "event"
        : "none";
      await deps.accept(
        {
          followerId: message.from,
          name: given,
          to: message.to,
          envelope,
          kind,
          receivedAt,
          dedupKey: dedupKeyOf(message),
          event: message.event,
        },
        message,
        url,
      );
      return new Response("success", { headers: { "content-type": "text/plain; charset=utf-8" } });
    },
  };
}
