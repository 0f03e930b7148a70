// The NBD option haggling (fixed newstyle handshake) as a pure decision: one option request in,
// the replies to send and what happens next out. No sockets here; nbd_session.ts does the IO.
//
// Invariants:
// - every option except EXPORT_NAME gets a final reply (ACK or an error); unknown options get
//   ERR_UNSUP (their data was already consumed), never a closed connection;
// - INFO and GO answer identically for the same export and state: INFO_EXPORT (mandatory),
//   INFO_BLOCK_SIZE (always), INFO_NAME when asked, then ACK;
// - SEND_DF is advertised only when structured replies were negotiated; READ_ONLY exports do not
//   advertise TRIM/WRITE_ZEROES; CAN_MULTI_CONN only when the export says FLUSH covers all
//   connections;
// - the 124 zero bytes follow only an EXPORT_NAME answer to a client without C_NO_ZEROES;
// - TLS (proto.md "TLS support"): mode off answers STARTTLS with ERR_UNSUP (NOTLS); on lets the
//   client choose (SELECTIVETLS with no TLS-only export); require (FORCEDTLS) answers every option
//   but STARTTLS and ABORT with ERR_TLS_REQD before TLS, and an EXPORT_NAME closes the session;
//   a second STARTTLS is ERR_INVALID; ERR_TLS_REQD is never sent once TLS is up.

import { Limits } from "../proto/limits.ts";
import {
  ClientFlag,
  HandshakeFlag,
  Info,
  NbdDecodeError,
  Opt,
  Rep,
  TxFlag,
  decodeExportName,
  decodeInfoRequest,
  encodeExportNameReply,
  encodeRepAck,
  encodeRepError,
  encodeRepInfoBlockSize,
  encodeRepInfoExport,
  encodeRepInfoName,
  encodeRepServer,
} from "../proto/nbd.ts";
import type { ExportRegistry, NbdExport } from "./nbd_export.ts";

/** What the server offers in its greeting. */
export const SERVER_HANDSHAKE_FLAGS = HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES;

export const BLOCK_SIZES = {
  minimumBytes: Limits.nbdMinBlockBytes,
  preferredBytes: Limits.nbdPreferredBlockBytes,
  maximumBytes: Limits.nbdMaxRequestBytes,
} as const;

export interface HandshakeState {
  clientFlags: number;
  structuredReplies: boolean;
  /** the server's TLS mode (absent: off) */
  tlsMode?: "off" | "on" | "require";
  /** the channel is TLS now (STARTTLS was acknowledged) */
  tlsUp?: boolean;
}

export type OptionOutcome =
  | { kind: "continue"; replies: Buffer[] }
  /** send the ACK, then the TLS handshake runs before any further option is read */
  | { kind: "starttls"; replies: Buffer[] }
  /** send the replies, then close (ABORT, unknown EXPORT_NAME, protocol violation) */
  | { kind: "close"; replies: Buffer[]; reason: string; violation: boolean }
  /** send the replies, then the transmission phase starts on this export */
  | { kind: "transmission"; replies: Buffer[]; export: NbdExport; transmissionFlags: number };

export function transmissionFlagsOf(exp: NbdExport, structuredReplies: boolean): number {
  let f = TxFlag.HAS_FLAGS | TxFlag.SEND_FLUSH | TxFlag.SEND_FUA;
  if (exp.readOnly) f |= TxFlag.READ_ONLY;
  else f |= TxFlag.SEND_TRIM | TxFlag.SEND_WRITE_ZEROES;
  if (exp.multiConn) f |= TxFlag.CAN_MULTI_CONN;
  if (structuredReplies) f |= TxFlag.SEND_DF;
  return f;
}

/** "" is the default export: the only one, when exactly one is served. */
export function resolveExport(registry: ExportRegistry, name: string): NbdExport | undefined {
  if (name !== "") return registry.get(name);
  const all = registry.list();
  return all.length === 1 ? all[0] : registry.get("");
}

function cont(...replies: Buffer[]): OptionOutcome {
  return { kind: "continue", replies };
}

/** Decide the answer to one option request whose data has been read whole. */
export function handleOption(st: HandshakeState, registry: ExportRegistry, option: number, data: Buffer): OptionOutcome {
  const mode = st.tlsMode ?? "off";
  if (mode === "require" && st.tlsUp !== true && option !== Opt.STARTTLS && option !== Opt.ABORT) {
    // EXPORT_NAME has no error reply: the only refusal is closing (proto.md FORCEDTLS)
    if (option === Opt.EXPORT_NAME) return { kind: "close", replies: [], reason: "EXPORT_NAME before STARTTLS on a TLS-only server", violation: false };
    return cont(encodeRepError(option, Rep.ERR_TLS_REQD, "this server requires TLS: send NBD_OPT_STARTTLS first"));
  }
  switch (option) {
    case Opt.EXPORT_NAME:
      return exportName(st, registry, data);
    case Opt.ABORT:
      return { kind: "close", replies: [encodeRepAck(option)], reason: "client sent ABORT", violation: false };
    case Opt.LIST: {
      if (data.length !== 0) return cont(encodeRepError(option, Rep.ERR_INVALID, "LIST takes no data"));
      const replies = registry.list().map((e) => encodeRepServer(e.name));
      replies.push(encodeRepAck(option));
      return cont(...replies);
    }
    case Opt.INFO:
    case Opt.GO:
      return infoOrGo(st, registry, option, data);
    case Opt.STRUCTURED_REPLY:
      if (data.length !== 0) return cont(encodeRepError(option, Rep.ERR_INVALID, "STRUCTURED_REPLY takes no data"));
      st.structuredReplies = true;
      return cont(encodeRepAck(option));
    case Opt.STARTTLS:
      if (mode === "off") return cont(encodeRepError(option, Rep.ERR_UNSUP, "TLS is off on this server (pf sdc --nbd-tls)"));
      if (st.tlsUp === true) return cont(encodeRepError(option, Rep.ERR_INVALID, "TLS is already up"));
      if (data.length !== 0) return cont(encodeRepError(option, Rep.ERR_INVALID, "STARTTLS takes no data"));
      return { kind: "starttls", replies: [encodeRepAck(option)] };
    case Opt.PEEK_EXPORT:
    case Opt.LIST_META_CONTEXT:
    case Opt.SET_META_CONTEXT:
    case Opt.EXTENDED_HEADERS:
      return cont(encodeRepError(option, Rep.ERR_UNSUP, "not supported by pf"));
    default:
      return cont(encodeRepError(option, Rep.ERR_UNSUP, `unknown option ${option}`));
  }
}

function exportName(st: HandshakeState, registry: ExportRegistry, data: Buffer): OptionOutcome {
  const name = decodeExportName(data);
  if (name instanceof NbdDecodeError) return { kind: "close", replies: [], reason: name.toString(), violation: true };
  const exp = resolveExport(registry, name);
  // EXPORT_NAME has no error reply: an unknown export can only be refused by closing.
  if (!exp) return { kind: "close", replies: [], reason: `unknown export "${name}" (EXPORT_NAME)`, violation: false };
  const flags = transmissionFlagsOf(exp, st.structuredReplies);
  const noZeroes = (st.clientFlags & ClientFlag.C_NO_ZEROES) !== 0;
  return { kind: "transmission", replies: [encodeExportNameReply(exp.sizeBytes, flags, noZeroes)], export: exp, transmissionFlags: flags };
}

function infoOrGo(st: HandshakeState, registry: ExportRegistry, option: number, data: Buffer): OptionOutcome {
  const req = decodeInfoRequest(data);
  if (req instanceof NbdDecodeError) return cont(encodeRepError(option, Rep.ERR_INVALID, req.toString()));
  const exp = resolveExport(registry, req.name);
  if (!exp) return cont(encodeRepError(option, Rep.ERR_UNKNOWN, `no export named "${req.name}"`));
  const flags = transmissionFlagsOf(exp, st.structuredReplies);
  const replies = [encodeRepInfoExport(option, exp.sizeBytes, flags), encodeRepInfoBlockSize(option, BLOCK_SIZES)];
  if (req.infoRequests.includes(Info.NAME)) replies.push(encodeRepInfoName(option, exp.name));
  replies.push(encodeRepAck(option));
  if (option === Opt.INFO) return cont(...replies);
  return { kind: "transmission", replies, export: exp, transmissionFlags: flags };
}
