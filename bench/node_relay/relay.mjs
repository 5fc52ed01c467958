// The baseline's few lines on Node.js with `ws`: a comparison point, not a product.
// On POST: find ToUserName by string search, push the raw body to that id's socket.
import http from "node:http";
import { WebSocketServer } from "ws";

const sockets = new Map();
const OPEN = "<ToUserName><![CDATA[";

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    const start = body.indexOf(OPEN) + OPEN.length;
    sockets.get(body.slice(start, body.indexOf("]]>", start)))?.send(body);
    res.end("success");
  });
});
const wss = new WebSocketServer({ server });
wss.on("connection", (socket, req) => {
  const id = new URL(req.url, "http://x").searchParams.get("userid");
  sockets.set(id, socket);
  socket.on("close", () => sockets.get(id) === socket && sockets.delete(id));
});
server.listen(Number(process.env.PORT), "127.0.0.1");
