import { Manager, type Socket } from "socket.io-client";
import { ClientError, ErrorKind, ServerError } from "./errors.js";
import type { LoginResp } from "./types.js";

/** The login request: the Socket.IO CONNECT auth payload (core/imapi LoginReq). */
export interface LoginReq {
  appkey: string;
  account: string;
  token: string;
  device_id: string;
  device_type: string;
  sdk_version: string;
  platform?: string;
}

/** What a request's ack carries (core/weblink README, "IM over Socket.IO"). */
export interface Ack {
  code: number;
  message?: string;
  body?: unknown;
  /** On a retryable refusal (503 "busy"): about when a retry may succeed. */
  retry_after_ms?: number;
}

/** What a transport tells the client. */
export interface TransportHandlers {
  /** A push: an event named by its op (`message`, `receipt`, `room.messages`, `kick`…). */
  push(op: string, body: unknown): void;
  /** The connection ended (after its pending requests were failed). */
  closed(reason: string): void;
}

/** One logged-in connection to a WebLink server. */
export interface Transport {
  /** Sends a request and resolves with its ack; rejects with a `disconnected` or `timeout` {@link ClientError}. */
  request(op: string, body: unknown, timeoutMs: number): Promise<Ack>;
  /** Closes the connection; `closed` follows. */
  close(reason: string): void;
}

/** An open connection to a WebLink server, not logged in yet. */
export interface OpenLink {
  /**
   * Logs in; resolves once the server answered, rejects with a
   * {@link ServerError} when it refused the login, or a {@link ClientError}
   * when the connection ended first.
   */
  login(req: LoginReq, handlers: TransportHandlers): Promise<{ transport: Transport; login: LoginResp }>;
  /** Closes a connection that will not log in (it lost the race). */
  close(): void;
}

/**
 * Opens a connection to `url` (no login yet: candidates are raced by their
 * opening, so that only the winner logs in and no loser's late login kicks
 * the winner off as "another device"). `signal` abandons it.
 */
export type Dialer = (url: string, signal: AbortSignal) => Promise<OpenLink>;

/** Options of {@link socketIODialer}. */
export interface SocketIOOptions {
  /** Engine.IO path; default "/socket.io/". */
  path?: string;
  /** Engine.IO transports in the order tried; default polling, then upgrade to WebSocket (socket.io-client's default). */
  transports?: ("polling" | "websocket" | "webtransport")[];
  /** Bounds the opening; default 10000 ms. */
  timeoutMs?: number;
}

/**
 * The WebLink dialer on the official socket.io-client: the Engine.IO
 * session opens first; the login is the Socket.IO CONNECT with the LoginReq
 * as auth, the `login` event its answer, CONNECT_ERROR `{data: {code,
 * message}}` a refusal; requests are events with acks, pushes events named
 * by op. socket.io-client's own reconnection is off: the client races
 * candidates and logs in again itself.
 */
export function socketIODialer(opts: SocketIOOptions = {}): Dialer {
  return (url, signal) =>
    new Promise((resolve, reject) => {
      const m = new Manager(url, {
        reconnection: false,
        autoConnect: false,
        path: opts.path ?? "/socket.io/",
        timeout: opts.timeoutMs ?? 10000,
        ...(opts.transports ? { transports: opts.transports } : {}),
      });
      const onAbort = () => {
        m._close();
        reject(new ClientError(ErrorKind.Closed, `${url}: abandoned`));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      m.open((err?: Error) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) return;
        if (err) {
          m._close();
          reject(new ClientError(ErrorKind.Unreachable, `${url}: ${err.message}`));
          return;
        }
        resolve({ login: (req, h) => loginOn(m, url, req, h), close: () => m._close() });
      });
    });
}

function loginOn(m: Manager, url: string, req: LoginReq, h: TransportHandlers): Promise<{ transport: Transport; login: LoginResp }> {
  return new Promise((resolve, reject) => {
    const s = m.socket("/", { auth: { ...req } });
    let t: SocketTransport | undefined;
    const fail = (err: Error) => {
      s.removeAllListeners();
      s.disconnect();
      m._close();
      reject(err);
    };
    s.on("connect_error", (err: Error & { data?: { code?: number; message?: string; retry_after_ms?: number } }) => {
      const d = err.data;
      if (d && typeof d.code === "number") fail(new ServerError(d.code, d.message ?? err.message, d.retry_after_ms));
      else fail(new ClientError(ErrorKind.Unreachable, `${url}: ${err.message}`));
    });
    s.on("disconnect", (reason: string) => {
      if (t) t.end(reason);
      else fail(new ClientError(ErrorKind.Unreachable, `${url}: ${reason} before the login answer`));
    });
    s.on("login", (resp: LoginResp) => {
      if (t) return;
      t = new SocketTransport(s, m, h);
      resolve({ transport: t, login: resp });
    });
    s.onAny((name: string, body: unknown) => {
      if (t && name !== "login") h.push(name, body);
    });
    s.connect();
  });
}

class SocketTransport implements Transport {
  private pending = new Set<(err: Error) => void>();
  private ended = false;
  constructor(
    private s: Socket,
    private m: Manager,
    private h: TransportHandlers,
  ) {}

  request(op: string, body: unknown, timeoutMs: number): Promise<Ack> {
    return new Promise((resolve, reject) => {
      // Emits on a socket that is not connected would wait in
      // socket.io-client's buffer and leave on some later connection.
      if (this.ended || !this.s.connected) {
        reject(new ClientError(ErrorKind.Disconnected, `${op}: not connected`));
        return;
      }
      const lost = (err: Error) => reject(err);
      this.pending.add(lost);
      this.s.timeout(timeoutMs).emit(op, body ?? {}, (err: Error | null, ack: Ack) => {
        this.pending.delete(lost);
        if (err) reject(new ClientError(ErrorKind.Timeout, `${op}: no answer within ${timeoutMs} ms`));
        else resolve(ack && typeof ack.code === "number" ? ack : { code: 500, message: "malformed ack" });
      });
    });
  }

  close(reason: string): void {
    if (this.ended) return;
    this.s.disconnect();
    this.end(reason);
  }

  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.s.removeAllListeners();
    this.s.disconnect();
    this.m._close();
    const err = new ClientError(ErrorKind.Disconnected, `connection lost: ${reason}`);
    for (const f of this.pending) f(err);
    this.pending.clear();
    this.h.closed(reason);
  }
}
