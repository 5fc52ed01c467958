// The bare baseline the bridge is measured against: what the job costs with nothing but
// Deno.serve and a WebSocket per agent. On POST it finds ToUserName by string search and
// pushes the raw body to that id's socket; no parsing, no storage, no envelope.
const sockets = new Map<string, WebSocket>();
const OPEN = "<ToUserName><![CDATA[";

Deno.serve({
  hostname: "127.0.0.1",
  port: Number(Deno.env.get("PORT")),
  onListen() {}, // readiness is the port accepting connections; nothing to print
}, async (req) => {
  if (req.method === "POST") {
    const body = await req.text();
    const start = body.indexOf(OPEN) + OPEN.length;
    sockets.get(body.slice(start, body.indexOf("]]>", start)))?.send(body);
    return new Response("success");
  }
  const id = new URL(req.url).searchParams.get("userid") ?? "";
  const { socket, response } = Deno.upgradeWebSocket(req);
  socket.onopen = () => sockets.set(id, socket);
  socket.onclose = () => sockets.get(id) === socket && sockets.delete(id);
  return response;
});
