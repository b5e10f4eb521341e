/**
 * Result codes of the server (core/imapi `Code`): the same on Link, WebLink
 * and the server HTTP API. 0 is success; values are never reused.
 */
export const Code = {
  OK: 0,
  /** Malformed or invalid body. */
  BadRequest: 400,
  /** Bad or expired token, unknown appkey. */
  Unauthorized: 401,
  /** Not a member, blocked, muted. */
  Forbidden: 403,
  NotFound: 404,
  Conflict: 409,
  TooLarge: 413,
  /** Too many requests; the SDK resends durable messages by itself. */
  RateLimited: 429,
  /** Refused by the app's moderation hook. */
  Rejected: 451,
  Internal: 500,
  /** A service is not reachable (or sheds load): retry. */
  Unavailable: 503,
  Timeout: 504,
  /** A request other than login before login. */
  NotLoggedIn: 1001,
  /** Another device took over this session. */
  Kicked: 1002,
  UnknownOp: 1003,
  UserDisabled: 1004,
  /** The recall window is over. */
  RecallExpired: 1005,
  /** The recipient's blacklist refuses the message. */
  Blocked: 1101,
  /** The operation needs a friendship that does not exist. */
  NotFriends: 1102,
  /** A super-group's member limit. */
  GroupFull: 1201,
  /** Only the owner and managers add members to this group. */
  InviteForbidden: 1202,
} as const;

/** A refusal by the server: a {@link Code} and a message. */
export class ServerError extends Error {
  override name = "ServerError";
  /** One of {@link Code}'s values (or a newer one). */
  readonly code: number;
  /** On a retryable refusal (503 "busy"), about when a retry may succeed. */
  readonly retryAfterMs?: number;
  constructor(code: number, message?: string, retryAfterMs?: number) {
    super(message ? `${code}: ${message}` : `${code}`);
    this.code = code;
    if (retryAfterMs) this.retryAfterMs = retryAfterMs;
  }
}

/** Why the SDK itself failed an operation ({@link ClientError.kind}). */
export const ErrorKind = {
  /** The client was closed. */
  Closed: "closed",
  /** The connection carrying a request was lost before its answer; it may or may not have been applied. */
  Disconnected: "disconnected",
  /** `sendQueue` messages already wait for their acks; the message was not queued. */
  SendQueueFull: "send_queue_full",
  /** Another device took over the session; the client stopped. */
  Kicked: "kicked",
  /** The server refused the credentials (401, 403, 1004); the client stopped. */
  Auth: "auth",
  /** No candidate (LBS answer, cached answer, default link) took the connection. */
  Unreachable: "unreachable",
  /** No answer in time. */
  Timeout: "timeout",
} as const;
/** One of {@link ErrorKind}'s values. */
export type ErrorKindValue = (typeof ErrorKind)[keyof typeof ErrorKind];

/** A failure of the SDK (not a server refusal): see {@link ErrorKind}. */
export class ClientError extends Error {
  override name = "ClientError";
  readonly kind: ErrorKindValue;
  /** The server's refusal behind an `auth` or `kicked` error, if any. */
  override readonly cause?: unknown;
  constructor(kind: ErrorKindValue, message: string, cause?: unknown) {
    super(message);
    this.kind = kind;
    if (cause !== undefined) this.cause = cause;
  }
}

/** Codes that refuse the credentials themselves: retrying cannot help. */
export function authRefused(code: number): boolean {
  return code === Code.Unauthorized || code === Code.UserDisabled || code === Code.Forbidden;
}

/** Codes of a login refused because the server is busy (it may carry a retry-after hint). */
export function busyCode(code: number): boolean {
  return code === Code.Unavailable || code === Code.Timeout || code === Code.RateLimited;
}

/**
 * Codes after which a durable send is held and resent with the same
 * client_msg_id: the ones the gateway retries itself (503, 504) and a rate
 * refusal. A 500 is the gateway's definitive answer and the sends after it
 * went on (core/gateway/ORDER.md): resent, it would be stored behind them.
 */
export function resendable(code: number): boolean {
  return code === Code.Unavailable || code === Code.Timeout || code === Code.RateLimited;
}

/** Codes after which a room request is tried again (order does not depend on it). */
export function overloaded(code: number): boolean {
  return resendable(code) || code === Code.Internal;
}
