// An in-memory IM server behind the SDK's Dialer interface, for unit tests:
// it stores messages per conversation with seqs, dedupes sends by
// client_msg_id, answers sync/history/conversations, and lets a test push,
// cut connections, refuse logins and overload sends.
import { ServerError } from "../src/errors.js";
import type { Ack, Dialer, LoginReq, OpenLink, Transport, TransportHandlers } from "../src/transport.js";
import type { Message, RoomMessage } from "../src/types.js";
import { p2pConvId } from "../src/types.js";

export interface FakeConn {
  url: string;
  req: LoginReq;
  h: TransportHandlers;
  t: Transport;
  open: boolean;
  /** Requests seen on this connection, in order. */
  ops: { op: string; body: any }[];
}

type Handler = (conn: FakeConn, body: any) => Ack | Promise<Ack> | undefined;

export class FakeServer {
  msgs = new Map<string, Message[]>();
  byClientId = new Map<string, Message>();
  conns: FakeConn[] = [];
  /** URLs whose opening fails, or never completes. */
  down = new Set<string>();
  hang = new Set<string>();
  /** Opened per URL (losers of races included). */
  opened: string[] = [];
  loginCode = 0;
  /** The retry-after hint of a refused login (0: none). */
  loginRetryAfterMs = 0;
  /** Per-op overrides; returning undefined falls through to the default. */
  handlers: Record<string, Handler> = {};
  /** Sends answered with this code (then cleared when `overloadCount` reaches 0). */
  overloadCount = 0;
  /** The hint sent with overload refusals. */
  retryAfterMs = 0;
  private refused: string[] = [];
  rooms = new Map<string, RoomMessage[]>();
  notices: any[] = [];

  dialer: Dialer = (url, signal) =>
    new Promise<OpenLink>((resolve, reject) => {
      this.opened.push(url);
      if (this.down.has(url)) return setTimeout(() => reject(new Error(`${url} down`)), 1);
      if (this.hang.has(url)) {
        signal.addEventListener("abort", () => reject(new Error("aborted")));
        return;
      }
      setTimeout(() => {
        if (signal.aborted) return reject(new Error("aborted"));
        resolve({ login: (req, h) => this.login(url, req, h), close: () => {} });
      }, 1);
    });

  private login(url: string, req: LoginReq, h: TransportHandlers) {
    return new Promise<{ transport: Transport; login: any }>((resolve, reject) => {
      setTimeout(() => {
        if (this.loginCode) return reject(new ServerError(this.loginCode, "refused", this.loginRetryAfterMs || undefined));
        const conn: FakeConn = { url, req, h, open: true, ops: [], t: undefined as any };
        conn.t = {
          request: (op, body) => {
            if (!conn.open) return Promise.reject(new Error("closed"));
            conn.ops.push({ op, body });
            return new Promise((res) => setTimeout(async () => res(await this.handle(conn, op, body)), 1));
          },
          close: (reason) => this.cut(conn, reason),
        };
        this.conns.push(conn);
        resolve({ transport: conn.t, login: { session_id: `s${this.conns.length}`, server_time: Date.now(), heartbeat_sec: 30 } });
      }, 1);
    });
  }

  /** Ends a connection as a network failure would. */
  cut(conn: FakeConn, reason = "cut"): void {
    if (!conn.open) return;
    conn.open = false;
    conn.h.closed(reason);
  }

  live(): FakeConn[] {
    return this.conns.filter((c) => c.open);
  }

  /** Stores a message as if `from` sent it, and returns it (not pushed). */
  store(from: string, to: string, text: string, clientMsgId = `srv-${Math.random()}`): Message {
    const conv = p2pConvId(from, to);
    const list = this.msgs.get(conv) ?? [];
    this.msgs.set(conv, list);
    const m: Message = {
      msg_id: `m-${conv}-${list.length + 1}`,
      conv_id: conv,
      conv_type: 1,
      from,
      to,
      seq: list.length + 1,
      client_msg_id: clientMsgId,
      type: "text",
      body: { text },
      time: 1000 + list.length,
    };
    list.push(m);
    return m;
  }

  push(op: string, body: unknown): void {
    for (const c of this.live()) c.h.push(op, body);
  }

  private async handle(conn: FakeConn, op: string, body: any): Promise<Ack> {
    const custom = await this.handlers[op]?.(conn, body);
    if (custom) return custom;
    const me = conn.req.account;
    switch (op) {
      case "heartbeat":
        return { code: 0 };
      case "send": {
        // The store's early shedding: while a refused send waits for its
        // resend, the device's later sends are refused too, and the refused
        // ones are taken back in the order they were first refused.
        const id = body.client_msg_id;
        if (this.overloadCount > 0 || (this.refused.length > 0 && this.refused[0] !== id)) {
          if (this.overloadCount > 0) this.overloadCount--;
          if (!this.refused.includes(id)) this.refused.push(id);
          return { code: 503, message: "busy", ...(this.retryAfterMs ? { retry_after_ms: this.retryAfterMs } : {}) };
        }
        if (this.refused[0] === id) this.refused.shift();
        let m = this.byClientId.get(body.client_msg_id);
        if (!m) {
          m = this.store(me, body.to, body.body.text, body.client_msg_id);
          this.byClientId.set(body.client_msg_id, m);
        }
        return { code: 0, body: { msg_id: m.msg_id, conv_id: m.conv_id, seq: m.seq, time: m.time } };
      }
      case "conversations": {
        const conversations = [...this.msgs].map(([conv_id, list]) => ({
          conv_id,
          conv_type: 1,
          peer: list[0]!.from === me ? list[0]!.to : list[0]!.from,
          last_seq: list.length,
          read_seq: 0,
          unread: list.filter((m) => m.from !== me).length,
          last: list[list.length - 1],
        }));
        return { code: 0, body: { conversations } };
      }
      case "sync": {
        const list = (this.msgs.get(body.conv_id) ?? []).filter((m) => m.seq > body.after_seq);
        const page = list.slice(0, body.limit ?? 200);
        return { code: 0, body: { messages: page, has_more: list.length > page.length } };
      }
      case "history": {
        const list = (this.msgs.get(body.conv_id) ?? []).filter((m) => !body.before_seq || m.seq < body.before_seq).reverse();
        const page = list.slice(0, body.limit ?? 20);
        return { code: 0, body: { messages: page, has_more: list.length > page.length } };
      }
      case "read":
        return { code: 0 };
      case "notice.sync": {
        const list = this.notices.filter((n) => n.seq > body.after_seq);
        return { code: 0, body: { notices: list, has_more: false } };
      }
      case "room.enter": {
        const hist = this.rooms.get(body.room_id) ?? [];
        const h = hist.slice(Math.max(0, hist.length - (body.history ?? 20)));
        return { code: 0, body: { room: { room_id: body.room_id, last_seq: hist.length }, role: "member", history: h } };
      }
      case "room.leave":
        return { code: 0 };
    }
    return { code: 1003, message: `unknown operation ${op}` };
  }

  /** Appends a room message and returns it (not pushed). */
  roomMessage(room: string, from: string, text: string): RoomMessage {
    const list = this.rooms.get(room) ?? [];
    this.rooms.set(room, list);
    const m: RoomMessage = { room_id: room, msg_id: `r${list.length + 1}`, seq: list.length + 1, from, type: "text", body: { text }, time: list.length };
    list.push(m);
    return m;
  }
}

/** An in-memory Web Storage. */
export class MemoryStorage {
  items = new Map<string, string>();
  getItem(k: string): string | null {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.items.set(k, v);
  }
}
