// The console's side of the bridge's agent protocol (PROTOCOL.md): which envelope is which,
// the frames the console sends, the socket URL with `since=`, and how long to wait before a
// reconnect. Plain module, no DOM: `deno test` covers it.

export const BASE = "/im_component/wx_official_account";
export const SYSTEM_ID = "system01";

/** The envelope code of each kind of reply the console sends (SPEC's 1001-1004). */
export const REPLY_CODES = { text: 1001, image: 1002, voice: 1003, video: 1004 };

/**
 * What an envelope is: heartbeat, error (a refusal, -1), ack (0, an answer to our frame),
 * note (a private note), system (102, the server's own), echo (our own reply, from any tab)
 * or incoming (a follower's, or another agent's message whatever its type).
 */
export function envelopeKind(envelope) {
  const code = Number(envelope?.result?.code);
  const data = envelope?.data ?? {};
  if (code === 101) return "heartbeat";
  if (code === -1) return "error";
  if (code === 0) return "ack";
  if (data.msg_type === "note") return "note";
  // Another agent's message (the server sets `from` from its credentials): shown, never acted on
  // as the server's own assignment, transfer or close notice, whatever type it claims.
  if (data.from !== undefined && data.from !== null) {
    return data.direction === "out" ? "echo" : "incoming";
  }
  if (code === 102 || data.msg_type === "system" || data.contact_id === SYSTEM_ID) return "system";
  if (data.direction === "out") return "echo";
  return "incoming";
}

/** The reply frame for a message of ours: text, or a media reply by media_id/media_url. */
export function replyFrame(contactId, msg) {
  const m = msg.msg ?? {};
  const type = msg.msg_type ?? "text";
  return {
    data: {
      msg_type: type,
      contact_id: contactId,
      client_id: msg.client_id,
      msg: type === "text"
        ? { content: m.content }
        : { media_id: m.media_id, media_url: m.media_url },
    },
    result: { code: REPLY_CODES[type] ?? 1001, message: "common" },
  };
}

/** A command frame; its client_id tells its refusal from a reply's. */
export function commandFrame(type, clientId, fields) {
  return {
    data: { msg_type: type, client_id: clientId, ...fields },
    result: { code: 0, message: "command" },
  };
}

/** The agent socket's URL: `since=` once a seq is known, so a reconnect gets what it missed;
 * `account=` with several official accounts. */
export function socketUrl({ protocol, host, userid, account, since, token }) {
  const scheme = protocol === "https:" ? "wss:" : "ws:";
  let url = `${scheme}//${host}${BASE}/msg?userid=${encodeURIComponent(userid)}`;
  // With several official accounts, the one this console serves.
  if (account) url += `&account=${encodeURIComponent(account)}`;
  if (since !== null && since !== undefined) url += `&since=${since}`;
  if (token) url += `&token=${encodeURIComponent(token)}`;
  return url;
}

/** Close code: the agent's token expired (PROTOCOL.md); only a fresh one brings it back. */
export const CLOSE_TOKEN_EXPIRED = 4401;

/**
 * How long to wait before reconnecting after a close with `code` (ms), given the attempts
 * so far and a random number in [0, 1): a restart or a replaced socket comes back at once,
 * a refused one (4008, too many consoles) waits, anything else backs off with jitter.
 */
export function reconnectDelay(code, attempts, random) {
  if (code === 4008) return 30_000;
  if (code === 4001 || code === 1001 || code === 1012) return 300 + random * 700;
  const base = Math.min(15_000, 500 * 2 ** Math.min(attempts, 5));
  return base / 2 + random * (base / 2);
}

/** Whether a -1 for `clientId` is no news: typing and read are best effort. */
export function isQuietRefusal(clientId) {
  return /^cmd-(typing|read)-/.test(clientId);
}
