/**
 * The Longlink IM SDK for browsers and Node.js, over WebLink (Socket.IO).
 *
 * ```ts
 * import { Client, ConvType } from "@longlink/web-sdk";
 *
 * const client = new Client({ appKey: "demo", account: "alice", token, lbs: ["https://lbs.example.com"] });
 * client.on("message", (m) => console.log(`${m.from}: ${JSON.stringify(m.body)}`));
 * client.on("state", (s) => console.log("connection:", s.state));
 * await client.start();
 * const ack = await client.sendText(ConvType.P2P, "bob", "hello bob");
 * console.log("stored as seq", ack.seq);
 * ```
 *
 * @packageDocumentation
 */
export { Client, VERSION, newId } from "./client.js";
export type { ClientOptions, ClientEvents, State, StateChange, SentEvent, SendFailedEvent } from "./client.js";
export { Code, ErrorKind, ServerError, ClientError } from "./errors.js";
export type { ErrorKindValue } from "./errors.js";
export type { RoomBatch, RoomRejoin } from "./rooms.js";
export type { StorageLike } from "./lbs.js";
export { socketIODialer } from "./transport.js";
export type { Dialer, OpenLink, Transport, TransportHandlers, LoginReq, Ack, SocketIOOptions } from "./transport.js";
export { Emitter } from "./emitter.js";
export * from "./types.js";
