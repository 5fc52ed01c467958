// WeChat's callback: the URL check, signatures, safe mode, retries, and turning each XML
// message into an inbound item for the switchboard. WeChat is answered `success` as soon as
// the message is committed; delivery to agents happens after.

import { getLogger } from "@logtape/logtape";
import { asksToForget, isAccountReport, isLocationReport } from "./event_kinds.ts";
import { createFollowerEnvelope } from "./follower_envelope.ts";
import { HttpError } from "../http/http_error.ts";
import type { InboundItem, InboundOutcome } from "../core/store.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { inboundKindOf } from "../protocol/window.ts";
import type { AesKeyName, WechatCrypto } from "./crypto.ts";
import { dedupKeyOf, type FollowerMessage, readFollowerMessage } from "./message.ts";
import type { PassiveReplies } from "./passive_reply.ts";
import {
  checkPlaintextAllowed,
  checkSignedAge,
  type WechatRequestPolicy,
} from "./request_policy.ts";
import { computeSignature, verifyMessageSignature, verifyRequestSignature } from "./signature.ts";
import { nameSettings, type WechatSetting } from "./setting_names.ts";
import { bodyHash, type SignedBodies } from "./signed_bodies.ts";
import { createXmlReader, textOf } from "./xml.ts";

const log = getLogger(["bridge", "wechat"]);

const encoder = new TextEncoder();
/** WeChat's `success`: every message is answered with it, so its init is made once. */
const SUCCESS_INIT: ResponseInit = Object.freeze({
  headers: Object.freeze({ "content-type": "text/plain; charset=utf-8" }),
});

/** What the webhook needs. */
export interface WebhookDeps {
  token?: string;
  crypto?: WechatCrypto;
  /** The account of ACCOUNTS_FILE served: messages name its fields, not WECHAT_*. */
  accountId?: string;
  /** That account's original id (`gh_…`), when known: the only ToUserName that is the account. */
  originalId?: string;
  companyId: string;
  now: () => number;
  newId: () => string;
  /** Demo mode: the follower simulator names its follower with `?name=` (WeChat never does). */
  acceptNames?: boolean;
  accept(item: InboundItem, message: FollowerMessage, url: URL): Promise<InboundOutcome | void>;
  /** A report on the account's own sends or reviews: for operators, never a contact. */
  report(message: FollowerMessage, envelope: Envelope, dedupKey: string): Promise<void>;
  /** The user revoked its authorization: forget its data. */
  forget(message: FollowerMessage, envelope: Envelope): Promise<void>;
  /** The follower's client reported its location (LOCATION): kept, never a conversation. */
  location(item: InboundItem): Promise<void>;
  /** WeChat cleaned a user's profile (user_info_modified). */
  profileChanged(item: InboundItem): Promise<void>;
  /** Whether ToUserName names an agent (the seed's simplified form) rather than the account. */
  isAgent(id: string): Promise<boolean>;
  /** Largest WeChat XML the bridge stores, in bytes, after decryption. */
  maxPlainBytes: number;
  /** Optional hardening: stale signatures, plaintext in safe mode (off by default). */
  policy?: WechatRequestPolicy;
  /** Optional passive replies (auto-reply, transfer_customer_service) instead of `success`. */
  passive?: PassiveReplies;
  /** With `policy.maxAgeS`: the body each plain signature first carried (signed_bodies.ts). */
  signedBodies?: SignedBodies;
}

/** Creates the handlers for `GET` and `POST send_xml`. */
export function createWechatWebhook(deps: WebhookDeps) {
  const xml = createXmlReader();
  const policy = deps.policy ?? {};
  const remembersBodies = deps.signedBodies !== undefined && policy.maxAgeS !== undefined;
  const named = (...settings: WechatSetting[]) => nameSettings(deps.accountId, ...settings);
  let warnedNoKey = false;

  // The size in UTF-8 is counted by encoding into one buffer kept for it: no copy of every body
  // allocated to be measured and dropped.
  const measure = new Uint8Array(deps.maxPlainBytes + 4);

  /** 413 for XML whose UTF-8, less `minus` bytes, is larger than one stored message. */
  function checkPlainSize(text: string, minus = 0): void {
    // No UTF-16 unit takes more than 3 bytes in UTF-8: most bodies need no counting.
    if (text.length * 3 <= deps.maxPlainBytes) return;
    const { read, written } = encoder.encodeInto(text, measure);
    // Text left over means more bytes than the buffer holds: over the limit, unless some of it
    // is not counted (compatible mode's <Encrypt>), then counted whole.
    const bytes = read === text.length
      ? written
      : minus === 0
      ? Infinity
      : encoder.encode(text).byteLength;
    if (bytes - minus > deps.maxPlainBytes) {
      throw new HttpError(413, `WeChat XML is larger than ${deps.maxPlainBytes} bytes`);
    }
  }

  function decryptBody(
    outer: ReturnType<typeof xml.parse>,
    params: URLSearchParams,
  ): { plain: string; key: AesKeyName } {
    const encrypt = textOf(outer, "Encrypt");
    if (!encrypt) throw new SyntaxError("Cannot parse WeChat XML: Encrypt is missing");
    if (!deps.crypto) {
      throw new HttpError(
        400,
        `Encrypted message, but ${named("aesKey", "appId")} are not set`,
      );
    }
    // As for plain posts, WECHAT_TOKEN unset means no signature is asked for (SPEC: set, every
    // request must carry a valid one); the start log says the callbacks are open. Without this,
    // a bridge with a key and no token refused every encrypted message.
    if (deps.token && !verifyMessageSignature(deps.token, params, encrypt)) {
      throw new HttpError(401, "Bad msg_signature");
    }
    const { xml: plain, key } = deps.crypto.decrypt(encrypt);
    if (key === "previous") log.info(`Message decrypted with ${named("aesKeyPrevious")}`);
    checkPlainSize(plain);
    return { plain, key };
  }

  /**
   * A passive reply, encrypted when the message was (WeChat's 被动回复 in safe mode), under the
   * key that opened it: WeChat sends under the previous key until the new one is saved.
   */
  function xmlAnswer(plain: string, key: AesKeyName | undefined): Response {
    let body = plain;
    if (key !== undefined) {
      const ciphertext = deps.crypto!.encrypt(plain, undefined, key);
      const timestamp = String(Math.floor(deps.now() / 1000));
      const nonce = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
      const signature = computeSignature(deps.token ?? "", timestamp, nonce, ciphertext);
      body =
        `<xml><Encrypt><![CDATA[${ciphertext}]]></Encrypt><MsgSignature><![CDATA[${signature}]]></MsgSignature><TimeStamp>${timestamp}</TimeStamp><Nonce><![CDATA[${nonce}]]></Nonce></xml>`;
    }
    return new Response(body, { headers: { "content-type": "application/xml; charset=utf-8" } });
  }

  /**
   * 401 for a body other than the one this plain signature first carried, within the window
   * WECHAT_MAX_AGE_S bounds (without it nothing is remembered: memory would have no bound).
   */
  async function checkFirstBody(body: string, params: URLSearchParams): Promise<void> {
    if (!remembersBodies) return;
    const hash = bodyHash(body);
    if (await rememberBody(hash, params) !== hash) {
      throw new HttpError(401, "Signature already used for another body");
    }
  }

  /** The body hash first seen under this plain signature (`hash` when it is the first). */
  function rememberBody(hash: string, params: URLSearchParams): Promise<string> {
    const expiresAtMs = (Number(params.get("timestamp")) + policy.maxAgeS! + 1) * 1000;
    return deps.signedBodies!.first(params.get("signature")!, hash, expiresAtMs);
  }

  /**
   * The official account a ToUserName names, for `data.account`; undefined for an agent (the
   * seed's form). Where the account's original id is known nothing else is the account: an
   * agent of another account was passed off as one.
   */
  async function accountOf(to: string): Promise<string | undefined> {
    if (to === "") return undefined;
    if (deps.originalId !== undefined) return to === deps.originalId ? to : undefined;
    return await deps.isAgent(to) ? undefined : to;
  }

  /** Before a callback is answered: the signatures it was first to use are kept for a restart. */
  function settleBodies(): Promise<void> | undefined {
    return deps.signedBodies!.settle?.();
  }

  return {
    /** WeChat's URL check: echo `echostr` when the signature is right. */
    verify(url: URL): Response {
      if (!deps.token) {
        throw new HttpError(401, `Cannot verify: ${named("token")} is not set`);
      }
      if (!verifyRequestSignature(deps.token, url.searchParams)) {
        throw new HttpError(401, "Bad signature");
      }
      checkSignedAge(url.searchParams, deps.now(), policy);
      // The signature does not cover echostr: whoever holds one signed URL sets it, so the echo
      // must never be read as a page on the console's origin, where agents keep their tokens.
      return new Response(url.searchParams.get("echostr") ?? "", {
        headers: {
          "content-type": "text/plain; charset=utf-8",
          "x-content-type-options": "nosniff",
          "content-security-policy": "sandbox; default-src 'none'",
          "cache-control": "no-store",
        },
      });
    },

    /** Reads, checks and accepts one XML message; answers `success` once it is stored. */
    async receive(body: string, url: URL): Promise<Response> {
      const params = url.searchParams;
      if (deps.token) checkSignedAge(params, deps.now(), policy);
      let doc = xml.parse(body);
      // Set when the message came encrypted and was opened: its answer is sealed the same way.
      let openedWith: AesKeyName | undefined;
      const encrypt = textOf(doc, "Encrypt");
      const plainFields = textOf(doc, "MsgType") !== undefined;
      const encrypted = params.get("encrypt_type") === "aes" ||
        (encrypt !== undefined && !plainFields);
      if (encrypted && !deps.crypto && plainFields) {
        // Compatible mode before the key is configured: WeChat sends the plaintext fields
        // beside <Encrypt>, so the message is delivered from those rather than lost.
        if (!warnedNoKey) {
          warnedNoKey = true;
          log.warn(
            `Compatible-mode messages arrive but ${named("aesKey", "appId")} are not set: ` +
              "delivering their plaintext fields; set the key before switching to safe mode",
          );
        }
        if (deps.token && !verifyRequestSignature(deps.token, params)) {
          throw new HttpError(401, "Bad signature");
        }
        checkPlaintextAllowed(policy, false);
        delete doc["Encrypt"];
        // What is delivered is the plaintext fields, and a retry may carry them beside a
        // ciphertext drawn anew: those fields are the body its signature carries once.
        if (deps.token) await checkFirstBody(JSON.stringify(doc), params);
        checkPlainSize(body, encrypt?.length ?? 0);
      } else if (encrypted) {
        const opened = decryptBody(doc, params);
        openedWith = opened.key;
        doc = xml.parse(opened.plain);
        // A safe-mode URL carries the plain `signature` too: remembered, so that the same URL
        // less its msg_signature takes no plain body. Never refused here: msg_signature already
        // covers this body with the timestamp and nonce, and a sender that encrypts each attempt
        // anew sends the same message under the same plain signature in other bytes.
        if (remembersBodies && deps.token && verifyRequestSignature(deps.token, params)) {
          await rememberBody(bodyHash(body), params);
        }
      } else {
        checkPlainSize(body);
        if (deps.token && !verifyRequestSignature(deps.token, params)) {
          throw new HttpError(401, "Bad signature");
        }
        checkPlaintextAllowed(policy, deps.crypto !== undefined);
        if (deps.token) await checkFirstBody(body, params);
      }
      const message = readFollowerMessage(doc);
      const receivedAt = deps.now();
      const given = deps.acceptNames ? params.get("name")?.trim().slice(0, 64) || null : null;
      const account = await accountOf(message.to);
      const envelope = createFollowerEnvelope(message, {
        id: message.msgId ?? deps.newId(),
        name: given ?? message.from,
        avatar: "",
        companyId: deps.companyId,
        receivedAt,
        account,
      });
      const dedupKey = dedupKeyOf(message);
      if (isAccountReport(message.event)) {
        await deps.report(message, envelope, dedupKey);
      } else if (asksToForget(message.event)) {
        await deps.forget(message, envelope);
      } else {
        const item: InboundItem = {
          followerId: message.from,
          name: given,
          to: message.to,
          envelope,
          kind: inboundKindOf(message.msgType, message.event) ?? "none",
          receivedAt,
          dedupKey,
          event: message.event,
        };
        if (message.event === "user_info_modified") await deps.profileChanged(item);
        else if (isLocationReport(message.event)) await deps.location(item);
        else {
          const outcome = await deps.accept(item, message, url);
          const passive = deps.passive?.enabled
            ? await deps.passive.answer(message, outcome)
            : null;
          if (passive !== null) {
            if (remembersBodies) await settleBodies();
            return xmlAnswer(passive, openedWith);
          }
        }
      }
      if (remembersBodies) await settleBodies();
      return new Response("success", SUCCESS_INIT);
    },
  };
}
