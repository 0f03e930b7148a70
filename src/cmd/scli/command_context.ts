// What a command handler gets (its checked flags, the MDM target, the session store, a clock)
// and what it returns: the lines for people and the value printed by --json. Handlers do not
// write to stdout themselves, so their output is the same whichever way scli is run; the one
// exception is --watch, which draws progress through `live` before the final lines.

import type { ScliArgs } from "./argv_parse.ts";
import type { MdmTarget } from "./mdm_target.ts";
import type { MdmRestClient } from "./rest_client.ts";
import type { SessionStore } from "./session_store.ts";

export interface Output {
  text: string[];
  json: unknown;
}

/** Output while a command runs (--watch): where it goes, and whether it is a terminal. */
export interface LiveOutput {
  isTty: boolean;
  write(s: string): void;
  sleep(ms: number): Promise<void>;
}

export interface CommandContext {
  args: ScliArgs;
  live: LiveOutput;
  target: MdmTarget;
  sessions: SessionStore;
  nowMs: () => number;
  /** a client carrying the kept session's token; throws "not logged in" when there is none */
  client(): MdmRestClient;
}

export type Handler = (ctx: CommandContext) => Promise<Output>;
