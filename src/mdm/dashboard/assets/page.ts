// What a page is to the shell: an element built once, fed a Snapshot on every poll, and the
// optional sources it needs polled. The AppCtx lets a page act (refresh now after a change,
// drop the action buttons after a 403) without knowing the poll loop.

import type { Session } from "./api.ts";
import type { Needs, Snapshot } from "./data.ts";

export type PageId = "overview" | "topology" | "volumes" | "rebuild" | "alerts";

export interface AppCtx {
  session: Session;
  /** poll again now (after an action changed something) */
  refresh(): void;
  /** the MDM answered 403 to a change: hide every action from now on */
  forbid(): void;
  /** the summary's role allows changes and no change was refused yet */
  canModify(): boolean;
  historySeconds(): number;
  setHistorySeconds(seconds: number): void;
}

export interface Page {
  readonly el: HTMLElement;
  update(snap: Snapshot): void;
}

export interface PageDef {
  id: PageId;
  title: string;
  needs: Needs;
  create(app: AppCtx): Page;
}
