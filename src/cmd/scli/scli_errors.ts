// scli's own errors: ScliError is a failure scli found itself (bad flags, no session, unreadable
// certificate) and prints as "Error: <message>". Every other PfError came from the MDM (or
// stands for an MDM answer, like a name that matches no object) and prints as PowerFlex does:
// "Error: MDM failed command.  Status: <message>". Exit status is exitStatusOf[code] either way.

import { PfError, type ErrorCode } from "../../proto/errors.ts";

export class ScliError extends PfError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = "ScliError";
  }
}

/** A flag problem: exit status 2, nothing sent. */
export function usageError(message: string): ScliError {
  return new ScliError("BAD_REQUEST", message);
}
