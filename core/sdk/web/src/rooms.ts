import { ClientError, Code, ErrorKind, ServerError, overloaded } from "./errors.js";
import type { RoomEnterResp, RoomEvent, RoomMessage } from "./types.js";

/** Room messages as they arrive: one batch per room per gateway batching interval, oldest first. */
export interface RoomBatch {
  room_id: string;
  messages: RoomMessage[];
}

/** A room entered again after a reconnect, or not (`error`). */
export interface RoomRejoin {
  room_id: string;
  /** The role in the room, when entered. */
  role?: string;
  /**
   * Messages were sent while the client was away that the room no longer
   * keeps (more than `roomCatchUp`, or than its history size): they were
   * not delivered.
   */
  gap: boolean;
  /**
   * Why the room could not be entered again: a {@link ServerError} 404
   * (closed), 403 (banned), 401 (token refused and no fresh one from
   * `roomToken`), or the hook's error. The client no longer counts itself in
   * the room.
   */
  error?: unknown;
}

/** What the rooms need from the client. */
export interface RoomHost {
  readonly account: string;
  request<T>(op: string, body?: unknown): Promise<T>;
  emitRoomMessages(b: RoomBatch): void;
  emitRoomEvent(e: RoomEvent): void;
  emitRoomRejoin(r: RoomRejoin): void;
  /** The generation of the current connection, 0 when there is none. */
  connection(): number;
  backoffMs(): number;
  readonly roomToken?: (roomId: string) => Promise<string>;
  readonly catchUp: number;
}

interface Track {
  /** Newest room seq delivered. */
  last: number;
  /** The connection generation re-entering it, 0 when none. */
  rejoining: number;
  /** The app's enters under way. */
  entering: number;
  /** Pushed while rejoining or entering. */
  held: RoomMessage[];
}

/** Bounds the pushes held back during a re-entry; past it the oldest go (the recent history covers them). */
const maxRoomHeld = 4096;

/**
 * Chatroom presence (core/sdk rejoin.go). A room's presence belongs to a
 * session, so after every reconnect the client enters each room it was in
 * again (with its token, or a fresh one from `roomToken` when that one is
 * refused), asking for the last `roomCatchUp` messages; it delivers those
 * after the last room seq it delivered, then the pushes that arrived
 * meanwhile (held back until then), so nothing is delivered twice or out of
 * order. The app's own enter holds back the batches that come before its
 * answer the same way.
 */
export class Rooms {
  /** Rooms entered → entry token. */
  private tokens = new Map<string, string>();
  private tracks = new Map<string, Track>();

  constructor(private host: RoomHost) {}

  list(): string[] {
    return [...this.tokens.keys()].sort();
  }

  async enter(roomId: string, token: string, history: number): Promise<RoomEnterResp> {
    const rt = this.track(roomId);
    rt.entering++;
    let resp: RoomEnterResp;
    try {
      resp = await this.host.request<RoomEnterResp>("room.enter", { room_id: roomId, token, history });
    } catch (err) {
      this.entered(roomId, rt, 0, true);
      throw err;
    }
    this.tokens.set(roomId, token);
    this.entered(roomId, rt, lastRoomSeq(resp), false);
    return resp;
  }

  async leave(roomId: string): Promise<void> {
    this.forget(roomId);
    await this.host.request("room.leave", { room_id: roomId });
  }

  /** A connection (generation gen) came up: enter again every room the client is in. */
  onConnected(gen: number): void {
    for (const [id, tok] of this.tokens) {
      this.track(id).rejoining = gen;
      void this.rejoin(id, tok, gen);
    }
  }

  onBatch(b: RoomBatch): void {
    if (!b || typeof b.room_id !== "string" || !Array.isArray(b.messages)) return;
    const rt = this.track(b.room_id);
    if (rt.rejoining !== 0 || rt.entering > 0) {
      rt.held.push(...b.messages);
      if (rt.held.length > maxRoomHeld) rt.held.splice(0, rt.held.length - maxRoomHeld);
      return;
    }
    this.deliver(rt, b.room_id, b.messages);
  }

  /** Forgets a room the account was kicked from or that closed: there is nothing to enter again. */
  onEvent(ev: RoomEvent): void {
    if (ev?.room_id && (ev.kind === "closed" || (ev.kind === "kicked" && ev.account === this.host.account))) this.forget(ev.room_id);
    this.host.emitRoomEvent(ev);
  }

  private forget(roomId: string): void {
    this.tokens.delete(roomId);
    this.tracks.delete(roomId);
  }

  private track(id: string): Track {
    let rt = this.tracks.get(id);
    if (!rt) this.tracks.set(id, (rt = { last: 0, rejoining: 0, entering: 0, held: [] }));
    return rt;
  }

  /**
   * Settles an enter by the app: its answer's history went to the app, so
   * the pushes held meanwhile go out after it, without the seqs it had. After
   * a refusal of a room the client is not in they are dropped: the gateway
   * delivered them only for the enter.
   */
  private entered(roomId: string, rt: Track, last: number, failed: boolean): void {
    rt.entering = Math.max(rt.entering - 1, 0);
    if (!failed) rt.last = Math.max(rt.last, last);
    if (rt.entering > 0 || rt.rejoining !== 0) return;
    const held = rt.held;
    rt.held = [];
    if (failed && !this.tokens.has(roomId)) {
      this.tracks.delete(roomId);
      return;
    }
    this.deliver(rt, roomId, held);
  }

  private async rejoin(roomId: string, token: string, gen: number): Promise<void> {
    const req = { room_id: roomId, token, history: this.host.catchUp };
    let resp: RoomEnterResp | undefined;
    let err: unknown;
    try {
      resp = await this.host.request<RoomEnterResp>("room.enter", req);
    } catch (e) {
      err = e;
    }
    if (err instanceof ServerError && err.code === Code.Unauthorized && this.host.roomToken) {
      // The token expired: ask the app for a fresh one.
      try {
        req.token = await this.host.roomToken(roomId);
        resp = await this.host.request<RoomEnterResp>("room.enter", req);
        err = undefined;
        if (this.tokens.has(roomId)) this.tokens.set(roomId, req.token);
      } catch (e) {
        err = e;
      }
    }
    this.rejoined(roomId, gen, resp, err);
  }

  /** Delivers what the room kept since the last message delivered, then the pushes held meanwhile. */
  private rejoined(roomId: string, gen: number, resp: RoomEnterResp | undefined, err: unknown): void {
    const rt = this.tracks.get(roomId);
    if (!rt || rt.rejoining !== gen) return; // left meanwhile, or a newer connection rejoins
    if (err !== undefined && transient(err)) {
      const tok = this.tokens.get(roomId);
      if (this.host.connection() === gen && tok !== undefined) {
        // The connection is up (a refusal or a timeout): try again after a
        // backoff. Otherwise the next connection does.
        setTimeout(() => void this.rejoin(roomId, tok, gen), this.host.backoffMs());
      }
      return;
    }
    rt.rejoining = 0;
    const held = rt.held;
    rt.held = [];
    if (err !== undefined || !resp) {
      this.forget(roomId);
      this.host.emitRoomRejoin({ room_id: roomId, gap: false, error: err });
      return;
    }
    const hist = resp.history ?? [];
    let gap = false;
    if (rt.last > 0) {
      const next = rt.last + 1;
      gap = hist.length > 0 ? hist[0]!.seq > next : resp.room.last_seq >= next;
    }
    this.host.emitRoomRejoin({ room_id: roomId, role: resp.role, gap });
    this.deliver(rt, roomId, hist);
    rt.last = Math.max(rt.last, resp.room.last_seq);
    if (rt.entering > 0) rt.held = held; // the app's enter under way releases them
    else this.deliver(rt, roomId, held);
  }

  /** Emits the messages after the last delivered one as one batch. */
  private deliver(rt: Track, roomId: string, msgs: RoomMessage[]): void {
    const out: RoomMessage[] = [];
    for (const m of msgs) {
      if (m.seq > rt.last) {
        out.push(m);
        rt.last = m.seq;
      }
    }
    if (out.length > 0) this.host.emitRoomMessages({ room_id: roomId, messages: out });
  }
}

function lastRoomSeq(r: RoomEnterResp): number {
  const h = r.history ?? [];
  return Math.max(r.room?.last_seq ?? 0, h.length > 0 ? h[h.length - 1]!.seq : 0);
}

/** Errors after which a re-entry is tried again (on this connection after a backoff, or on the next one). */
function transient(err: unknown): boolean {
  if (err instanceof ServerError) return overloaded(err.code);
  return !(err instanceof ClientError && err.kind === ErrorKind.Closed);
}
