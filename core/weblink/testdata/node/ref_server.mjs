// The reference Socket.IO v4 server (from npm) doing the benchmark's echo:
// "echo" events are acknowledged with their arguments. Prints READY.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 7791);
const httpServer = createServer();
const io = new Server(httpServer);
io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const cb = args.pop();
    if (typeof cb === "function") cb(...args);
  });
});
httpServer.listen(port, "127.0.0.1", () => console.log("READY"));
