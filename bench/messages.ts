// The WeChat XML text messages the load generator posts, and how a receipt names its message.
// ToUserName is the agent id (SPEC routing rule 1) so delivery is deterministic; every
// message carries a unique MsgId, since the bridge drops a repeated MsgId as a WeChat retry.

/** The MsgId of message `n` (n < 1e12): a 19-digit string, as WeChat's are. */
export function msgId(n: number): string {
  return `7000000${String(n).padStart(12, "0")}`;
}

/** The agent that message `i` goes to when `agents` agents share the load round-robin. */
export function agentFor(i: number, agents: number): string {
  return `agent${i % agents}`;
}

/** The follower that message `i` comes from when each agent has `perAgent` followers. */
export function followerFor(i: number, agents: number, perAgent: number): string {
  return `obench_${agentFor(i, agents)}_${Math.floor(i / agents) % perAgent}`;
}

/** A WeChat text message from a follower of `agent` with `content` (ASCII, no "]]>"). */
export function textXml(agent: string, id: string, content: string, from?: string): string {
  // Ten followers per agent unless `from` names one; a follower always writes to the same
  // agent, so no transfers.
  const follower = from ?? `obench_${agent}_${id.charCodeAt(id.length - 1) % 10}`;
  return `<xml><ToUserName><![CDATA[${agent}]]></ToUserName>` +
    `<FromUserName><![CDATA[${follower}]]></FromUserName>` +
    `<CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime>` +
    `<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content>` +
    `<MsgId>${id}</MsgId></xml>`;
}

/** The message id a received frame carries, or "" for a heartbeat or anything not ours. */
export function receiptId(frame: string, format: "json" | "raw"): string {
  if (format === "raw") {
    // The baseline and the node relay forward the XML as posted.
    const start = frame.indexOf("<MsgId>");
    return start < 0 ? "" : frame.slice(start + 7, frame.indexOf("</MsgId>", start));
  }
  let envelope: unknown;
  try {
    envelope = JSON.parse(frame);
  } catch {
    return "";
  }
  const { data, result } = envelope as { data?: { id?: unknown }; result?: { code?: unknown } };
  if (Number(result?.code) !== 1001) return "";
  return typeof data?.id === "string" ? data.id : String(data?.id ?? "");
}

/** True when `frame` is a 101 heartbeat envelope. */
export function isHeartbeat(frame: string): boolean {
  return frame.includes('"code":101') || frame.includes('"code": 101');
}
