// Which NBD requests the server refuses before touching the export, and with which errno
// (nbd.md §2.2–3). Pure: a decoded request and the export's shape in, an errno (0 = go ahead) out.
//
// Invariants:
// - bounds are checked overflow-safe: offset > size || length > size − offset;
// - READ/TRIM/CACHE past the end → EINVAL; WRITE/WRITE_ZEROES past the end → ENOSPC;
// - WRITE/TRIM/WRITE_ZEROES on a read-only export → EPERM (checked before bounds);
// - READ/WRITE longer than Limits.nbdMaxRequestBytes → EINVAL (the caller consumed the payload);
// - unknown command or a flag the command does not take → EINVAL; FUA is accepted on every command.

import { Limits } from "../proto/limits.ts";
import { Cmd, CmdFlag, NbdErrno, type NbdRequest } from "../proto/nbd.ts";

export interface ExportShape {
  sizeBytes: number;
  readOnly: boolean;
}

function allowedFlags(type: number, structuredReplies: boolean): number {
  switch (type) {
    case Cmd.READ:
      return CmdFlag.FUA | (structuredReplies ? CmdFlag.DF : 0);
    case Cmd.WRITE_ZEROES:
      return CmdFlag.FUA | CmdFlag.NO_HOLE;
    default:
      return CmdFlag.FUA;
  }
}

function inBounds(exp: ExportShape, req: NbdRequest): boolean {
  return !(req.offsetBytes > exp.sizeBytes || req.lengthBytes > exp.sizeBytes - req.offsetBytes);
}

/** errno to refuse `req` with, or 0 when the export should execute it. DISC never gets here. */
export function refusalOf(req: NbdRequest, exp: ExportShape, structuredReplies: boolean): number {
  if ((req.flags & ~allowedFlags(req.type, structuredReplies)) !== 0) return NbdErrno.EINVAL;
  switch (req.type) {
    case Cmd.READ:
      if (req.lengthBytes > Limits.nbdMaxRequestBytes) return NbdErrno.EINVAL;
      return inBounds(exp, req) ? 0 : NbdErrno.EINVAL;
    case Cmd.WRITE:
      if (exp.readOnly) return NbdErrno.EPERM;
      if (req.lengthBytes > Limits.nbdMaxRequestBytes) return NbdErrno.EINVAL;
      return inBounds(exp, req) ? 0 : NbdErrno.ENOSPC;
    case Cmd.WRITE_ZEROES:
      if (exp.readOnly) return NbdErrno.EPERM;
      return inBounds(exp, req) ? 0 : NbdErrno.ENOSPC;
    case Cmd.TRIM:
      if (exp.readOnly) return NbdErrno.EPERM;
      return inBounds(exp, req) ? 0 : NbdErrno.EINVAL;
    case Cmd.CACHE:
      return inBounds(exp, req) ? 0 : NbdErrno.EINVAL;
    case Cmd.FLUSH:
      return 0;
    case Cmd.DISC:
      return 0;
    case Cmd.BLOCK_STATUS: // no meta context can have been negotiated
    case Cmd.RESIZE:
    default:
      return NbdErrno.EINVAL;
  }
}
