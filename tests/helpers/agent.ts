// A test agent: a real WebSocket client that collects envelopes and waits for the ones a test
// expects, with a deadline so a missing message fails the test instead of hanging it.

/** An envelope as received. */
export interface Received {
  data: Record<string, unknown> & { msg?: Record<string, unknown>; seq?: number };
  result: { code: number; message: string };
}

/** A connected agent socket. */
export interface TestAgent {
  socket: WebSocket;
  received: Received[];
  /** Messages received, heartbeats left out. */
  messages(): Received[];
  waitFor(pred: (e: Received) => boolean, timeoutMs?: number): Promise<Received>;
  waitForCount(n: number, timeoutMs?: number): Promise<Received[]>;
  send(body: unknown): void;
  close(): Promise<void>;
  closed: Promise<CloseEvent>;
}

/** Opens a socket and resolves once it is open. */
export async function connectAgent(url: string, protocols?: string | string[]): Promise<TestAgent> {
  const socket = new WebSocket(url, protocols);
  const received: Received[] = [];
  const waiters = new Set<() => void>();
  socket.onmessage = (e) => {
    received.push(JSON.parse(e.data));
    for (const w of waiters) w();
  };
  const closed = new Promise<CloseEvent>((resolve) =>
    socket.addEventListener("close", (e) => resolve(e))
  );
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error(`Cannot connect to ${url}`));
  });
  const messages = () => received.filter((e) => e.result.code !== 101);
  function waitUntil<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = check();
      if (done !== undefined) return resolve(done);
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`Timed out waiting for ${what}; got ${JSON.stringify(messages())}`));
      }, timeoutMs);
      const waiter = () => {
        const value = check();
        if (value !== undefined) {
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(value);
        }
      };
      waiters.add(waiter);
    });
  }
  return {
    socket,
    received,
    messages,
    closed,
    waitFor: (pred, timeoutMs = 3000) =>
      waitUntil(() => received.find(pred), timeoutMs, "a message"),
    waitForCount: (n, timeoutMs = 3000) =>
      waitUntil(
        () => (messages().length >= n ? messages().slice(0, n) : undefined),
        timeoutMs,
        `${n} messages`,
      ),
    send: (body) => socket.send(typeof body === "string" ? body : JSON.stringify(body)),
    async close() {
      if (socket.readyState === WebSocket.CLOSED) return;
      socket.close();
      await closed;
    },
  };
}

/** Posts a body and returns status and text. */
export async function post(
  url: string,
  body: string,
  headers: HeadersInit = {},
): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method: "POST", body, headers });
  return { status: res.status, text: await res.text() };
}

/** WeChat XML for a text message. */
export function textXml(
  from: string,
  to: string,
  content: string,
  msgId: string,
  createTime = "1700000000",
): string {
  return `<xml><ToUserName><![CDATA[${to}]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>${createTime}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId}</MsgId></xml>`;
}

/** A follower's history from the HTTP API, every page from the oldest, as the agent reads it. */
export async function fullHistory(
  base: string,
  agent: string,
  follower: string,
): Promise<Array<Record<string, unknown>>> {
  const pages: Array<Array<Record<string, unknown>>> = [];
  let before: number | null = null;
  do {
    const q = before === null ? "" : `&before=${before}`;
    const res = await fetch(
      `${base}/im_component/wx_official_account/history?userid=${agent}&contact_id=${follower}` +
        `&limit=200${q}`,
    );
    if (res.status !== 200) throw new Error(`history ${res.status} ${await res.text()}`);
    const body = await res.json() as {
      messages: Array<Record<string, unknown>>;
      next_before: number | null;
    };
    pages.unshift(body.messages);
    before = body.next_before;
  } while (before !== null);
  return pages.flat();
}
