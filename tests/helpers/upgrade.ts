// A socket's upgrade sent as a plain HTTP request, for the tests that read what a refused upgrade
// answers: a WebSocket client sees only that the open failed, not the status nor the text.

const upgradeHeaders = {
  connection: "Upgrade",
  upgrade: "websocket",
  "sec-websocket-key": btoa("refused-upgrade!"),
  "sec-websocket-version": "13",
};

/** GETs `url` as a WebSocket client's upgrade would: the answer's status and text. */
export async function upgradeAnswer(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { headers: upgradeHeaders });
  return { status: res.status, text: await res.text() };
}
