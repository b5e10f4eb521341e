import { ConvTracker } from "./conversations.js";
import { Emitter } from "./emitter.js";
import { ClientError, Code, ErrorKind, ServerError, authRefused, busyCode, resendable } from "./errors.js";
import { LBSClient, type StorageLike } from "./lbs.js";
import { type ConnectReport, RaceLog, ReportGate } from "./rum.js";
import { anySignal, race } from "./race.js";
import { NoticeStream } from "./notices.js";
import { Rooms, type RoomBatch, type RoomRejoin } from "./rooms.js";
import { socketIODialer, type Ack, type Dialer, type LoginReq, type OpenLink, type Transport } from "./transport.js";
import type {
  CallEvent,
  CallSignal,
  Conversation,
  Friend,
  FriendRequest,
  Group,
  GroupEvent,
  GroupUpdate,
  Kick,
  LoginResp,
  Message,
  MessagePage,
  Notice,
  Profile,
  Receipt,
  Recalled,
  Relations,
  RoomEnterResp,
  RoomEvent,
  RoomInfo,
  RoomMembersPage,
  RoomMessage,
  RoomSendAck,
  SendAck,
  SendReq,
  SuperEvent,
  SuperGroup,
  TurnCredentials,
} from "./types.js";
import { ConvType, p2pConvId } from "./types.js";
import { SendWindow } from "./window.js";

/** The SDK version sent at login and to the LBS unless `sdkVersion` is set. */
export const VERSION = "web-1.0.0";

/** Configures a {@link Client}. Only `appKey`, `account`, `token` and one way to find a server are required. */
export interface ClientOptions {
  appKey: string;
  account: string;
  token: string;
  /** LBS base URLs (`https://lbs.example.com`): asked for the WebLink entry points, best first. */
  lbs?: string[];
  /** The environment tag sent to the LBS. */
  env?: string;
  /** WebLink base URLs to race instead of asking the LBS. */
  addresses?: string[];
  /** The WebLink URL used when neither the LBS nor its cached answer gives one that connects: raced last. */
  defaultLink?: string;
  /** Default: `account + "-" + deviceType`. */
  deviceId?: string;
  /** phone, pad, pc, web…; default "web". */
  deviceType?: string;
  /** Default {@link VERSION}. */
  sdkVersion?: string;
  platform?: string;
  /**
   * Where the LBS answer and the delivered positions (last seq per
   * conversation, last notice seq) are kept across page loads: default
   * `localStorage` where there is one; null keeps them in memory.
   */
  storage?: StorageLike | null;
  /** Candidates are raced: attempt i starts this long after attempt i−1, or at once when it fails. Default 250 ms. */
  raceDelayMs?: number;
  /** Bounds one connection (opening and login). Default 10000 ms. */
  connectTimeoutMs?: number;
  /** Bounds requests (waiting for a connection included). Default 15000 ms. */
  requestTimeoutMs?: number;
  /** The reconnect backoff: exponential with full jitter between these. Defaults 200 ms and 30000 ms. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Most durable sends out unacknowledged (the congestion window's ceiling). Default 64. */
  sendWindow?: number;
  /** The window of a new connection. Default 8. */
  sendWindowInitial?: number;
  /** Most messages held for their acks; more are refused with `send_queue_full`. Default 1024. */
  sendQueue?: number;
  /** How long a push ahead of a gap waits for the gap to fill before the conversation is synced. Default 150 ms. */
  gapWaitMs?: number;
  /** Page size of conversation and notice sync. Default 200. */
  syncPageSize?: number;
  /** Last delivered seq per conversation from a previous run (overrides the stored positions); others are delivered from the start. */
  lastSeqs?: Record<string, number>;
  /** Last delivered notice seq from a previous run (overrides the stored position). */
  lastNoticeSeq?: number;
  /** Asked for a fresh entry token when a room's is refused on re-entry after a reconnect (expired); usually asks the app's server. */
  roomToken?: (roomId: string) => Promise<string>;
  /** How many recent messages a re-entry after a reconnect asks for. Default 50. */
  roomCatchUp?: number;
  /** Engine.IO path; default "/socket.io/". */
  path?: string;
  /** Engine.IO transports in the order tried; default polling, upgraded to WebSocket. */
  transports?: ("polling" | "websocket" | "webtransport")[];
  /** Opens connections; default socket.io-client ({@link socketIODialer}). */
  dialer?: Dialer;
  /**
   * Real-user monitoring: after a connect to the LBS's entry points, the
   * share of connects (0..1) whose raced candidates are reported to the LBS
   * (their time to an open connection and outcome), which then orders the
   * entry points of this network by what its users measured. 0 reports
   * none. Default 1.
   */
  rumSample?: number;
  /** The least time between two reports of this client. Default 30000 ms. */
  rumIntervalMs?: number;
}

/** The connection state. */
export type State = "idle" | "connecting" | "connected" | "disconnected" | "stopped";

/** A connection state change (the `state` event). */
export interface StateChange {
  state: State;
  /** Why the connection was lost or could not be made, or why the client stopped. */
  error?: unknown;
  /** While disconnected: when the next attempt starts, in ms. */
  retryInMs?: number;
  /** While connected: the WebLink URL in use. */
  url?: string;
}

/** A message of the outbox was acknowledged (the `sent` event). */
export interface SentEvent {
  clientMsgId: string;
  ack: SendAck;
  /** The message as stored (this account's view of it). */
  message: Message;
}

/** The server refused a message for good (the `sendFailed` event). */
export interface SendFailedEvent {
  clientMsgId: string;
  error: unknown;
}

/** Every event a {@link Client} emits, by name. */
export interface ClientEvents {
  /** The connection state changed. */
  state: StateChange;
  /** A new message (pushed or synced): once each, in seq order per conversation. */
  message: Message;
  /** One of this client's messages was acknowledged (durable). */
  sent: SentEvent;
  sendFailed: SendFailedEvent;
  /** A conversation's row changed (unread count, last message). */
  conversation: Conversation;
  /** The peer read a 1:1 conversation up to a seq. */
  receipt: Receipt;
  recalled: Recalled;
  group: GroupEvent;
  superGroup: SuperEvent;
  /** A relationship or profile change, once each in notice-stream order. */
  notice: Notice;
  /** Notices were missed for good: replace the relationships derived from notices with these, then apply the notices that follow. */
  relationsReset: Relations;
  /** A friend's profile changed (while online). */
  profile: Profile;
  /** Room messages, once each in room seq order (across re-entries too). */
  roomMessages: RoomBatch;
  roomEvent: RoomEvent;
  roomRejoin: RoomRejoin;
  /** A call signal from the other party. */
  call: CallEvent;
  /** The server closed the session: another device (the client stops), draining (it reconnects). */
  kicked: Kick;
  /** A push of an op this SDK does not know. */
  push: { op: string; body: unknown };
}

interface Conn {
  url: string;
  gen: number;
  t: Transport;
  kick?: Kick;
  ended: Promise<string>;
}

interface OutItem {
  order: number;
  id: string;
  body: SendReq & { client_msg_id: string; type: string };
  resolve: (a: SendAck) => void;
  reject: (e: unknown) => void;
  /** The connection it is out on. */
  onConn?: Conn;
  /** Its number in that connection's window. */
  sentNo: number;
}

interface Positions {
  seqs: Record<string, number>;
  notice: number;
}

/**
 * A Longlink IM client for one account on one device, over WebLink
 * (Socket.IO). It finds a server (LBS, cached answer, default link), races
 * the candidates, logs in and logs in again after every reconnect (backoff
 * with jitter), resends unacknowledged messages with their client message
 * ids, syncs conversations by seq so that the app sees every message once
 * and in order per conversation, re-enters chatrooms, and reports all of it
 * as events.
 *
 * ```ts
 * const c = new Client({ appKey: "demo", account: "alice", token, lbs: ["https://lbs.example.com"] });
 * c.on("message", (m) => console.log(m.from, m.body));
 * await c.start();
 * await c.sendText(ConvType.P2P, "bob", "hello");
 * ```
 */
export class Client extends Emitter<ClientEvents> {
  readonly account: string;
  private o: Required<
    Pick<
      ClientOptions,
      | "raceDelayMs"
      | "connectTimeoutMs"
      | "requestTimeoutMs"
      | "backoffMinMs"
      | "backoffMaxMs"
      | "sendWindow"
      | "sendWindowInitial"
      | "sendQueue"
      | "roomCatchUp"
      | "rumSample"
      | "rumIntervalMs"
    >
  > &
    ClientOptions;
  private loginReq: LoginReq;
  private dialer: Dialer;
  private lbsClient?: LBSClient;
  private rum: ReportGate;
  private storage: StorageLike | null;
  private posKey: string;

  private stateV: State = "idle";
  private stopErr?: unknown;
  private waiters: (() => void)[] = [];
  private closedV = false;
  private cur?: Conn;
  private gen = 0;
  private session = "";
  private connecting?: AbortController;
  private wake?: () => void;
  private heartbeat?: ReturnType<typeof setInterval>;
  private savePending = false;
  private cleanup: (() => void)[] = [];

  private outbox = new Map<number, OutItem>();
  private outSeq = 0;
  private waiting: OutItem[] = [];
  private win: SendWindow;
  private winConn?: Conn;
  private pausedUntil = 0;
  private pauseTimer?: ReturnType<typeof setTimeout>;

  private convs: ConvTracker;
  private notices: NoticeStream;
  private roomsV: Rooms;

  constructor(options: ClientOptions) {
    super();
    const o = {
      raceDelayMs: 250,
      connectTimeoutMs: 10000,
      requestTimeoutMs: 15000,
      backoffMinMs: 200,
      backoffMaxMs: 30000,
      sendWindow: 64,
      sendWindowInitial: 8,
      sendQueue: 1024,
      roomCatchUp: 50,
      rumSample: 1,
      rumIntervalMs: 30000,
      ...options,
    };
    const problems: string[] = [];
    if (!o.appKey || !o.account || !o.token) problems.push("appKey, account and token are required");
    if (!o.lbs?.length && !o.addresses?.length && !o.defaultLink) problems.push("lbs, addresses or defaultLink is required");
    if (o.backoffMinMs > o.backoffMaxMs) problems.push("backoffMinMs exceeds backoffMaxMs");
    if (!(o.rumSample >= 0 && o.rumSample <= 1)) problems.push("rumSample must be within 0..1");
    if (problems.length) throw new TypeError(`longlink: ${problems.join("; ")}`);
    this.o = o;
    this.account = o.account;
    const deviceType = o.deviceType ?? "web";
    this.loginReq = {
      appkey: o.appKey,
      account: o.account,
      token: o.token,
      device_id: o.deviceId ?? `${o.account}-${deviceType}`,
      device_type: deviceType,
      sdk_version: o.sdkVersion ?? VERSION,
      ...(o.platform ? { platform: o.platform } : {}),
    };
    this.dialer = o.dialer ?? socketIODialer({ path: o.path, transports: o.transports, timeoutMs: o.connectTimeoutMs });
    this.storage = o.storage !== undefined ? o.storage : defaultStorage();
    if (o.lbs?.length) {
      this.lbsClient = new LBSClient({
        servers: o.lbs,
        appKey: o.appKey,
        env: o.env,
        sdkVersion: this.loginReq.sdk_version,
        platform: o.platform,
        storage: this.storage,
      });
    }
    this.rum = new ReportGate({ sample: o.rumSample, minIntervalMs: o.rumIntervalMs });
    this.posKey = `longlink.pos.${o.appKey}.${o.account}`;
    const stored = this.loadPositions();
    this.win = new SendWindow(o.sendWindowInitial, o.sendWindow);
    const self = this;
    const request = <T>(op: string, body?: unknown) => this.request<T>(op, body);
    const positionsChanged = () => this.positionsChanged();
    this.convs = new ConvTracker(
      {
        account: o.account,
        request,
        positionsChanged,
        emitMessage: (m) => this.emit("message", m),
        emitConversation: (c) => this.emit("conversation", { ...c }),
        get closed() {
          return self.closedV;
        },
      },
      o.lastSeqs ?? stored.seqs,
      o.gapWaitMs ?? 150,
      o.syncPageSize ?? 200,
    );
    this.notices = new NoticeStream(
      {
        request,
        positionsChanged,
        emitNotice: (n) => this.emit("notice", n),
        emitRelationsReset: (r) => this.emit("relationsReset", r),
      },
      o.lastNoticeSeq ?? stored.notice,
      o.syncPageSize ?? 200,
    );
    this.roomsV = new Rooms({
      account: o.account,
      request,
      emitRoomMessages: (b) => this.emit("roomMessages", b),
      emitRoomEvent: (e) => this.emit("roomEvent", e),
      emitRoomRejoin: (r) => this.emit("roomRejoin", r),
      connection: () => (this.cur && this.stateV === "connected" ? this.cur.gen : 0),
      backoffMs: () => this.backoff(1),
      roomToken: o.roomToken,
      catchUp: o.roomCatchUp,
    });
  }

  // --- connection ---

  /** The connection state. */
  get state(): State {
    return this.stateV;
  }

  /** The id of the current (or last) session. */
  get sessionId(): string {
    return this.session;
  }

  /**
   * Starts connecting (once) and resolves when logged in. It rejects when the
   * client stops first: refused credentials (`auth`), another device
   * (`kicked`), {@link close} (`closed`). An unreachable server is retried
   * with backoff, so race it with a timeout of your own if you need one.
   */
  start(): Promise<void> {
    if (this.stateV === "idle" && !this.closedV) {
      this.listenNetwork();
      void this.run();
    }
    return this.waitConnected();
  }

  /** Resolves when logged in; rejects with the error that stopped the client. */
  async waitConnected(): Promise<void> {
    for (;;) {
      if (this.stateV === "connected") return;
      if (this.stateV === "stopped") throw this.stopErr;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Stops the client: closes the connection without logging out. Unacknowledged messages fail with `closed`. */
  close(): void {
    this.stop(new ClientError(ErrorKind.Closed, "client closed"));
  }

  /** Ends the session on the server, then closes the client. */
  async logout(): Promise<void> {
    try {
      await this.request("logout");
    } finally {
      this.close();
    }
  }

  private stop(err: unknown): void {
    if (this.stateV === "stopped") return;
    this.closedV = true;
    this.connecting?.abort();
    this.cur?.t.close("closed");
    clearInterval(this.heartbeat);
    clearTimeout(this.pauseTimer);
    this.wake?.();
    for (const f of this.cleanup) f();
    for (const it of this.outbox.values()) it.reject(err);
    this.outbox.clear();
    this.waiting = [];
    this.flushPositions();
    this.setState({ state: "stopped", error: err }, err);
  }

  private setState(ch: StateChange, stopErr?: unknown): void {
    if (this.stateV === "stopped") return;
    this.stateV = ch.state;
    if (ch.state === "stopped") this.stopErr = stopErr;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
    this.emit("state", ch);
  }

  /** The connection manager: connect (racing candidates), serve until the connection ends, back off, repeat. */
  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.closedV) {
      this.setState({ state: "connecting" });
      let conn: Conn;
      let resp: LoginResp;
      try {
        ({ conn, resp } = await this.connect());
      } catch (err) {
        if (this.closedV) return;
        if (err instanceof ServerError && authRefused(err.code)) {
          this.stop(new ClientError(ErrorKind.Auth, `login refused: ${err.message}`, err));
          return;
        }
        // A login refused as busy says when to come back: that, not a
        // backoff grown over the outage, and the attempt count stays.
        const hint = err instanceof ServerError && busyCode(err.code) ? (err.retryAfterMs ?? 0) : 0;
        const d = hint > 0 ? this.hintPause(hint) : this.backoff(attempt++);
        this.setState({ state: "disconnected", error: err, retryInMs: d });
        await this.pause(d);
        continue;
      }
      attempt = 0;
      this.cur = conn;
      this.session = resp.session_id;
      this.startWindow(conn);
      this.setState({ state: "connected", url: conn.url });
      this.convs.onConnected();
      this.notices.onConnected();
      this.roomsV.onConnected(conn.gen);
      this.pump();
      const hbMs = (resp.heartbeat_sec > 0 ? resp.heartbeat_sec : 30) * 1000;
      this.heartbeat = setInterval(() => {
        // No answer within an interval: the link is dead.
        conn.t.request("heartbeat", {}, hbMs).catch(() => conn.t.close("heartbeat timeout"));
      }, hbMs);
      const reason = await conn.ended;
      clearInterval(this.heartbeat);
      this.cur = undefined;
      if (this.closedV) return;
      const kick = conn.kick;
      if (kick && kick.code === Code.Kicked) {
        this.stop(new ClientError(ErrorKind.Kicked, kick.reason || "kicked by another device", new ServerError(kick.code, kick.reason)));
        return;
      }
      if (kick && authRefused(kick.code)) {
        // An edge answered the login from the token's signature and the
        // core then refused it (revoked token, disabled user).
        this.stop(new ClientError(ErrorKind.Auth, `login refused: ${kick.code} ${kick.reason ?? ""}`, new ServerError(kick.code, kick.reason)));
        return;
      }
      // Draining: reconnect now (the gateway is going away), with a little
      // jitter so that clients do not arrive together.
      const d = kick ? Math.random() * this.o.backoffMinMs : this.backoff(0);
      attempt = kick ? 0 : 1;
      this.setState({ state: "disconnected", error: new ClientError(ErrorKind.Disconnected, kick ? `server: ${kick.reason}` : reason), retryInMs: d });
      await this.pause(d);
    }
  }

  /** The server's retry-after hint plus up to a quarter more (never sooner than it said), at most backoffMaxMs. */
  private hintPause(hintMs: number): number {
    return Math.min(hintMs + (Math.random() * hintMs) / 4, this.o.backoffMaxMs);
  }

  /** Exponential with full jitter. */
  private backoff(attempt: number): number {
    const d = Math.min(this.o.backoffMinMs * 2 ** Math.min(attempt, 20), this.o.backoffMaxMs);
    return Math.random() * d + 1;
  }

  /** Waits ms, or until woken (the network came back, the client closed). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /** Browsers say when the network goes and comes back: drop a dead connection at once, reconnect at once. */
  private listenNetwork(): void {
    const g = globalThis as { addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
    if (typeof g.addEventListener !== "function" || typeof g.removeEventListener !== "function") return;
    const offline = () => this.cur?.t.close("offline");
    const online = () => {
      const c = this.cur;
      if (c) c.t.request("heartbeat", {}, 5000).catch(() => c.t.close("no answer after the network came back"));
      else this.wake?.();
    };
    g.addEventListener("offline", offline);
    g.addEventListener("online", online);
    this.cleanup.push(() => {
      g.removeEventListener!("offline", offline);
      g.removeEventListener!("online", online);
    });
  }

  /** The candidates: the addresses, or the LBS's (or its cached) answer, then the default link. */
  private async candidates(): Promise<{ urls: string[]; lbsError?: unknown }> {
    let urls = [...(this.o.addresses ?? [])];
    let lbsError: unknown;
    if (urls.length === 0 && this.lbsClient) {
      try {
        urls = (await this.lbsClient.resolve()).urls;
      } catch (err) {
        lbsError = err;
      }
    }
    if (this.o.defaultLink && !urls.includes(this.o.defaultLink)) urls.push(this.o.defaultLink);
    return { urls, lbsError };
  }

  /** Races the candidates by their opening; the winner logs in. */
  private async connect(): Promise<{ conn: Conn; resp: LoginResp }> {
    const ctl = new AbortController();
    this.connecting = ctl;
    const timer = setTimeout(() => ctl.abort(), this.o.connectTimeoutMs);
    let open: { link: OpenLink; url: string } | undefined;
    try {
      const { urls, lbsError } = await this.candidates();
      if (urls.length === 0) throw new ClientError(ErrorKind.Unreachable, `no address (LBS: ${String(lbsError)})`, lbsError);
      const raced = new RaceLog();
      try {
        open = await race(
          urls,
          urls.length,
          this.o.raceDelayMs,
          async (url, signal) => {
            const i = raced.start(url);
            try {
              const link = await this.dialer(url, anySignal(signal, ctl.signal));
              raced.opened(i, true);
              return { link, url };
            } catch (err) {
              raced.opened(i, false);
              throw err;
            }
          },
          (late) => late.link.close(),
        );
      } catch (err) {
        // The answer (maybe a cached one) led nowhere: ask the LBS afresh
        // for the next attempt.
        this.lbsClient?.refresh().catch(() => {});
        const lbs = lbsError ? `; LBS: ${String(lbsError)}` : "";
        throw new ClientError(ErrorKind.Unreachable, `no WebLink entry point took the connection (${String(err)})${lbs}`, err);
      }
      let end!: (r: string) => void;
      const ended = new Promise<string>((r) => (end = r));
      const conn: Conn = { url: open.url, gen: ++this.gen, t: undefined as unknown as Transport, ended };
      const abort = () => open?.link.close();
      ctl.signal.addEventListener("abort", abort);
      try {
        const { transport, login } = await open.link.login(this.loginReq, {
          push: (op, body) => this.onPush(conn, op, body),
          closed: (reason) => end(reason),
        });
        conn.t = transport;
        if (ctl.signal.aborted) {
          transport.close("abandoned");
          throw new ClientError(ErrorKind.Closed, "abandoned");
        }
        this.reportConnect(raced);
        return { conn, resp: login };
      } finally {
        ctl.signal.removeEventListener("abort", abort);
      }
    } finally {
      clearTimeout(timer);
      this.connecting = undefined;
    }
  }

  /** Reports a connect's raced candidates to the LBS in the background (best effort). */
  private reportConnect(raced: RaceLog): void {
    const lbs = this.lbsClient;
    if (!lbs) return;
    const attempts = raced.attempts((url) => lbs.endpointID(url));
    if (attempts.length === 0 || !this.rum.take()) return;
    const rep: ConnectReport = { sdk: this.loginReq.sdk_version, attempts };
    if (this.o.platform) rep.platform = this.o.platform;
    lbs
      .report(rep)
      .catch(() => {}) // dropped: the next connects report again
      .finally(() => this.rum.done());
  }

  private onPush(conn: Conn, op: string, body: unknown): void {
    switch (op) {
      case "message":
        return this.convs.onPush(body as Message);
      case "receipt":
        return this.emit("receipt", body as Receipt);
      case "recalled": {
        const r = body as Recalled;
        this.convs.onRecalled(r.conv_id, r.msg_id);
        return this.emit("recalled", r);
      }
      case "group.event":
        return this.emit("group", body as GroupEvent);
      case "super.event":
        return this.emit("superGroup", body as SuperEvent);
      case "notice":
        return this.notices.onPush(body as Notice);
      case "user.profile_changed":
        return this.emit("profile", body as Profile);
      case "room.messages":
        return this.roomsV.onBatch(body as RoomBatch);
      case "room.event":
        return this.roomsV.onEvent(body as RoomEvent);
      case "call.event":
        return this.emit("call", body as CallEvent);
      case "kick":
        conn.kick = body as Kick;
        return this.emit("kicked", body as Kick);
      default:
        return this.emit("push", { op, body });
    }
  }

  // --- requests ---

  /**
   * Sends any op (the Socket.IO event name, core/imapi `Op.Name()`) with a
   * JSON body and resolves with the answer's body. It waits for a
   * connection if there is none. Server refusals are {@link ServerError}s.
   */
  async request<T = unknown>(op: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    const deadline = Date.now() + (opts.timeoutMs ?? this.o.requestTimeoutMs);
    const conn = await this.waitConn(deadline, op);
    const ack = await conn.t.request(op, body ?? {}, Math.max(1, deadline - Date.now()));
    if (ack.code !== Code.OK) throw ackError(ack);
    return ack.body as T;
  }

  private async waitConn(deadline: number, op: string): Promise<Conn> {
    for (;;) {
      if (this.closedV) throw this.stopErr ?? new ClientError(ErrorKind.Closed, "client closed");
      if (this.cur && this.stateV === "connected") return this.cur;
      const left = deadline - Date.now();
      if (left <= 0) throw new ClientError(ErrorKind.Timeout, `${op}: not connected in time`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  // --- durable sends ---

  /**
   * Queues a message and resolves with its ack once the server has stored
   * it. Unacknowledged messages are resent after reconnects with the same
   * client message id (the server dedupes); an overloaded server's refusals
   * (429, 503, 504) are resent too, after a pause; a 500 fails the send. Rejects with a
   * {@link ServerError} when the server refuses it for good, or a
   * {@link ClientError} `send_queue_full` or `closed`.
   */
  send(req: SendReq): Promise<SendAck> {
    if (this.closedV) return Promise.reject(new ClientError(ErrorKind.Closed, "client closed"));
    if (this.outbox.size >= this.o.sendQueue) return Promise.reject(new ClientError(ErrorKind.SendQueueFull, "send queue full"));
    const body = { ...req, client_msg_id: req.client_msg_id || newId(), type: req.type || "text" };
    return new Promise((resolve, reject) => {
      const it: OutItem = { order: ++this.outSeq, id: body.client_msg_id, body, resolve, reject, sentNo: 0 };
      this.outbox.set(it.order, it);
      this.waiting.push(it);
      this.pump();
    });
  }

  /** Sends `{"text": text}` to an account ({@link ConvType}.P2P), a group or a super-group. */
  sendText(convType: number, to: string, text: string): Promise<SendAck> {
    return this.send({ conv_type: convType, to, type: "text", body: { text } });
  }

  /** Messages waiting for their ack. */
  get pending(): number {
    return this.outbox.size;
  }

  /** A fresh window for a new connection, with every unacknowledged send queued for it in order. */
  private startWindow(conn: Conn): void {
    this.winConn = conn;
    this.win = new SendWindow(this.o.sendWindowInitial, this.o.sendWindow);
    this.pausedUntil = 0; // a pause was the old connection's server's
    clearTimeout(this.pauseTimer);
    this.waiting = [...this.outbox.values()].sort((a, b) => a.order - b.order);
    for (const it of this.waiting) it.onConn = undefined;
  }

  /** Sends, in queueing order, what the window has room for on the current connection. */
  private pump(): void {
    const conn = this.cur;
    if (!conn || this.stateV !== "connected" || this.winConn !== conn) return;
    const wait = this.pausedUntil - Date.now();
    if (wait > 0) {
      clearTimeout(this.pauseTimer);
      this.pauseTimer = setTimeout(() => this.pump(), wait);
      return;
    }
    let n = Math.min(this.win.room(), this.waiting.length);
    while (n-- > 0) {
      const it = this.waiting.shift()!;
      it.onConn = conn;
      it.sentNo = this.win.take();
      this.transmit(conn, it);
    }
  }

  private transmit(conn: Conn, it: OutItem): void {
    const mine = () => this.winConn === conn && it.onConn === conn;
    conn.t.request("send", it.body, this.o.requestTimeoutMs).then(
      (ack) => {
        if (ack.code === Code.OK || !resendable(ack.code)) {
          if (mine()) this.win.acked(it.sentNo);
          if (ack.code === Code.OK) this.finish(it, ack.body as SendAck);
          else this.finish(it, undefined, ackError(ack));
          this.pump();
          return;
        }
        // Overloaded: hold it (same client_msg_id) and resend after a pause
        // of the whole client: per-message resends of a deep outbox would
        // keep an overloaded server busy refusing them.
        if (mine() && this.win.refused(it.sentNo)) {
          const until = Date.now() + this.refusalPause(ackError(ack).retryAfterMs ?? 0, this.win.cuts);
          this.pausedUntil = Math.max(this.pausedUntil, until);
        }
        if (this.outbox.has(it.order)) this.requeue(it);
        this.pump();
      },
      () => {
        // The connection is lost, or the answer is overdue: the next
        // connection's window resends it.
        if (mine()) this.win.answered(it.sentNo);
        it.onConn = undefined;
        conn.t.close("send unanswered");
      },
    );
  }

  /** Puts it back in the waiting queue at its place in queueing order. */
  private requeue(it: OutItem): void {
    it.onConn = undefined;
    let i = this.waiting.findIndex((w) => w.order > it.order);
    if (i < 0) i = this.waiting.length;
    this.waiting.splice(i, 0, it);
  }

  /** The server's hint (else backoffMinMs), doubled for each further cut, at most backoffMaxMs, with equal jitter. */
  private refusalPause(hintMs: number, cuts: number): number {
    const d = Math.min((hintMs > 0 ? hintMs : this.o.backoffMinMs) * 2 ** Math.min(Math.max(cuts - 1, 0), 20), this.o.backoffMaxMs);
    return d / 2 + Math.random() * (d / 2);
  }

  private finish(it: OutItem, ack?: SendAck, err?: unknown): void {
    if (!this.outbox.delete(it.order)) return;
    if (!ack) {
      it.reject(err);
      this.emit("sendFailed", { clientMsgId: it.id, error: err });
      return;
    }
    const b = it.body;
    const message: Message = {
      msg_id: ack.msg_id,
      conv_id: ack.conv_id,
      conv_type: b.conv_type,
      from: this.account,
      from_device: this.loginReq.device_id,
      to: b.to,
      seq: ack.seq,
      client_msg_id: b.client_msg_id,
      type: b.type,
      body: b.body,
      time: ack.time,
      ...(b.mentions ? { mentions: b.mentions } : {}),
    };
    this.convs.onAck(ack, message);
    it.resolve(ack);
    this.emit("sent", { clientMsgId: it.id, ack, message });
  }

  // --- positions ---

  /** The last delivered seq of every conversation (stored by the SDK where there is storage; pass back as `lastSeqs` otherwise). */
  lastSeqs(): Record<string, number> {
    return this.convs.positions();
  }

  /** The seq of the last notice delivered. */
  lastNoticeSeq(): number {
    return this.notices.last;
  }

  private loadPositions(): Positions {
    try {
      const raw = this.storage?.getItem(this.posKey);
      const p = raw ? (JSON.parse(raw) as Positions) : undefined;
      if (p && typeof p.seqs === "object" && typeof p.notice === "number") return p;
    } catch {
      // Unreadable positions: deliver from the start.
    }
    return { seqs: {}, notice: 0 };
  }

  private positionsChanged(): void {
    if (!this.storage || this.savePending) return;
    this.savePending = true;
    setTimeout(() => this.flushPositions(), 200);
  }

  private flushPositions(): void {
    if (!this.storage) return;
    this.savePending = false;
    try {
      this.storage.setItem(this.posKey, JSON.stringify({ seqs: this.convs.positions(), notice: this.notices.last }));
    } catch {
      // Storage full or denied: positions stay in memory.
    }
  }

  // --- conversations and messages ---

  /** The conversation list (unread counts, last message), most recent first, as kept current since the last fetch. */
  conversations(): Conversation[] {
    return this.convs.list();
  }

  /** Fetches the conversation list from the server. */
  refreshConversations(): Promise<Conversation[]> {
    return this.convs.refresh();
  }

  /** A page of history, newest first: messages with seq < `beforeSeq` (0 or absent: from the newest). */
  history(convId: string, opts: { beforeSeq?: number; limit?: number } = {}): Promise<MessagePage> {
    return this.request<MessagePage>("history", { conv_id: convId, before_seq: opts.beforeSeq || undefined, limit: opts.limit });
  }

  /** Marks a conversation read up to seq; the peer of a 1:1 conversation gets a receipt. */
  async markRead(convId: string, seq: number): Promise<void> {
    await this.request("read", { conv_id: convId, seq });
    this.convs.onRead(convId, seq);
  }

  /** Withdraws a message this account sent; members get `recalled`. */
  async recall(convId: string, msgId: string): Promise<void> {
    await this.request("recall", { conv_id: convId, msg_id: msgId });
    this.convs.onRecalled(convId, msgId);
  }

  // --- groups ---

  createGroup(name: string, members: string[], inviteMode?: "all" | "managers"): Promise<Group> {
    return this.request<Group>("group.create", { name, members, invite_mode: inviteMode });
  }
  async addGroupMembers(groupId: string, members: string[]): Promise<void> {
    await this.request("group.add", { group_id: groupId, members });
  }
  async removeGroupMembers(groupId: string, members: string[]): Promise<void> {
    await this.request("group.remove", { group_id: groupId, members });
  }
  groupInfo(groupId: string): Promise<Group> {
    return this.request<Group>("group.info", { group_id: groupId });
  }
  async groups(): Promise<Group[]> {
    return (await this.request<{ groups?: Group[] }>("group.list")).groups ?? [];
  }
  async leaveGroup(groupId: string): Promise<void> {
    await this.request("group.leave", { group_id: groupId });
  }
  async dismissGroup(groupId: string): Promise<void> {
    await this.request("group.dismiss", { group_id: groupId });
  }
  /** Changes the name, announcement, avatar, anyone_updates or invite_mode (owner and managers). */
  updateGroup(update: GroupUpdate): Promise<Group> {
    return this.request<Group>("group.update", update);
  }
  /** Makes a member a manager or a plain member again (owner). */
  async setGroupRole(groupId: string, account: string, role: "manager" | "member"): Promise<void> {
    await this.request("group.role", { group_id: groupId, account, role });
  }
  async transferGroup(groupId: string, account: string): Promise<void> {
    await this.request("group.transfer", { group_id: groupId, account });
  }

  // --- super-groups (their messages are sent with ConvType.Super and arrive like any other) ---

  superCreate(name: string, members: string[] = []): Promise<SuperGroup> {
    return this.request<SuperGroup>("super.create", { name, members });
  }
  superAdd(groupId: string, members: string[]): Promise<{ changed: string[]; count: number }> {
    return this.request("super.add", { group_id: groupId, members });
  }
  superRemove(groupId: string, members: string[]): Promise<{ changed: string[]; count: number }> {
    return this.request("super.remove", { group_id: groupId, members });
  }
  superInfo(groupId: string): Promise<SuperGroup> {
    return this.request<SuperGroup>("super.info", { group_id: groupId });
  }
  superMembers(groupId: string, after = "", limit?: number): Promise<{ members: string[]; next?: string }> {
    return this.request("super.members", { group_id: groupId, after, limit });
  }
  async superList(): Promise<SuperGroup[]> {
    return (await this.request<{ groups?: SuperGroup[] }>("super.list")).groups ?? [];
  }
  async superLeave(groupId: string): Promise<void> {
    await this.request("super.leave", { group_id: groupId });
  }
  async superDismiss(groupId: string): Promise<void> {
    await this.request("super.dismiss", { group_id: groupId });
  }

  // --- profiles and relationships (changes arrive as `notice`) ---

  async profiles(accounts: string[]): Promise<Profile[]> {
    return (await this.request<{ profiles?: Profile[] }>("user.profiles", { accounts })).profiles ?? [];
  }
  updateProfile(update: { name?: string; avatar?: string; ext?: Record<string, unknown> }): Promise<Profile> {
    return this.request<Profile>("user.update", update);
  }
  /** Asks account to become a friend; true when it had asked already (they are friends now). */
  async requestFriend(account: string, message?: string): Promise<boolean> {
    return (await this.request<{ accepted?: boolean }>("friend.request", { account, message })).accepted === true;
  }
  async acceptFriend(account: string, alias?: string): Promise<void> {
    await this.request("friend.accept", { account, alias });
  }
  async rejectFriend(account: string, message?: string): Promise<void> {
    await this.request("friend.reject", { account, message });
  }
  async deleteFriend(account: string): Promise<void> {
    await this.request("friend.delete", { account });
  }
  async setFriendAlias(account: string, alias: string): Promise<void> {
    await this.request("friend.alias", { account, alias });
  }
  async friends(): Promise<Friend[]> {
    return (await this.request<{ friends?: Friend[] }>("friend.list")).friends ?? [];
  }
  async friendRequests(): Promise<FriendRequest[]> {
    return (await this.request<{ requests?: FriendRequest[] }>("friend.requests")).requests ?? [];
  }
  async block(account: string): Promise<void> {
    await this.request("blacklist.add", { account });
  }
  async unblock(account: string): Promise<void> {
    await this.request("blacklist.remove", { account });
  }
  async blacklist(): Promise<string[]> {
    return (await this.request<{ accounts?: string[] }>("blacklist.list")).accounts ?? [];
  }
  /** Mutes a conversation (by id, or the 1:1 one with an account): no offline push. */
  async mute(target: { conv_id?: string; account?: string }): Promise<void> {
    await this.request("mute.add", target);
  }
  async unmute(target: { conv_id?: string; account?: string }): Promise<void> {
    await this.request("mute.remove", target);
  }
  async mutes(): Promise<string[]> {
    return (await this.request<{ conv_ids?: string[] }>("mute.list")).conv_ids ?? [];
  }

  // --- chatrooms ---

  /**
   * Enters a room with the entry token the app's server got (`POST
   * /v1/rooms/{id}/tokens`) and returns it, the role and the recent
   * history. Room messages then arrive as `roomMessages`, after that
   * history and never twice; the client enters the room again after every
   * reconnect (`roomRejoin`) until {@link roomLeave}.
   */
  roomEnter(roomId: string, token: string, history = 20): Promise<RoomEnterResp> {
    return this.roomsV.enter(roomId, token, history);
  }
  roomLeave(roomId: string): Promise<void> {
    return this.roomsV.leave(roomId);
  }
  /** The rooms the client is in (and enters again after reconnects). */
  rooms(): string[] {
    return this.roomsV.list();
  }
  roomSend(roomId: string, type: string, body: unknown): Promise<RoomSendAck> {
    return this.request<RoomSendAck>("room.send", { room_id: roomId, client_msg_id: newId(), type, body });
  }
  roomSendText(roomId: string, text: string): Promise<RoomSendAck> {
    return this.roomSend(roomId, "text", { text });
  }
  roomMembers(roomId: string, after = "", limit?: number): Promise<RoomMembersPage> {
    return this.request<RoomMembersPage>("room.members", { room_id: roomId, after, limit });
  }
  async roomHistory(roomId: string, limit?: number): Promise<RoomMessage[]> {
    return (await this.request<{ messages?: RoomMessage[] }>("room.history", { room_id: roomId, limit })).messages ?? [];
  }
  roomInfo(roomId: string): Promise<RoomInfo> {
    return this.request<RoomInfo>("room.info", { room_id: roomId });
  }
  async roomSetRole(roomId: string, account: string, role: "manager" | "member" | "guest"): Promise<void> {
    await this.request("room.role", { room_id: roomId, account, role });
  }
  /** Mutes (or unmutes) an account for durationSec (0: until unmuted). */
  async roomMute(roomId: string, account: string, muted: boolean, durationSec = 0): Promise<void> {
    await this.request("room.mute", { room_id: roomId, account, muted, duration_sec: durationSec });
  }
  async roomMuteAll(roomId: string, muted: boolean): Promise<void> {
    await this.request("room.mute", { room_id: roomId, muted });
  }
  async roomKick(roomId: string, account: string, reason = "", banSec = 0): Promise<void> {
    await this.request("room.kick", { room_id: roomId, account, reason, ban_sec: banSec });
  }
  async roomClose(roomId: string): Promise<void> {
    await this.request("room.close", { room_id: roomId });
  }

  // --- calls (signals of the other party arrive as `call`) ---

  /** TURN credentials and the TURN servers nearest to this client, nearest first. */
  turnCredentials(ttlSec = 0): Promise<TurnCredentials> {
    return this.request<TurnCredentials>("call.turn", { ttl_sec: ttlSec || undefined });
  }
  /** Sends one signalling step to the other party of a call. */
  async callSignal(sig: CallSignal): Promise<void> {
    await this.request("call.signal", sig);
  }
  callInvite(to: string, callId: string, media: "audio" | "video", offer: unknown): Promise<void> {
    return this.callSignal({ call_id: callId, to, kind: "invite", media, payload: offer });
  }
  callRinging(to: string, callId: string): Promise<void> {
    return this.callSignal({ call_id: callId, to, kind: "ringing" });
  }
  callAccept(to: string, callId: string, answer: unknown): Promise<void> {
    return this.callSignal({ call_id: callId, to, kind: "accept", payload: answer });
  }
  callReject(to: string, callId: string, reason?: string): Promise<void> {
    return this.callSignal({ call_id: callId, to, kind: "reject", payload: reason });
  }
  callHangup(to: string, callId: string): Promise<void> {
    return this.callSignal({ call_id: callId, to, kind: "hangup" });
  }
  callCandidate(to: string, callId: string, candidate: unknown): Promise<void> {
    return this.callSignal({ call_id: callId, to, kind: "candidate", payload: candidate });
  }
}

/** A random id for client messages and calls (24 hex characters). */
export function newId(): string {
  const b = new Uint8Array(12);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function ackError(ack: Ack): ServerError {
  return new ServerError(ack.code, ack.message, ack.retry_after_ms);
}

function defaultStorage(): StorageLike | null {
  try {
    const s = (globalThis as { localStorage?: StorageLike }).localStorage;
    return s && typeof s.getItem === "function" ? s : null;
  } catch {
    return null; // denied (sandboxed frame, privacy mode)
  }
}

