// REST routes of the observe room, registered on the token-checked /api app by rest_routes.ts
// (before its generic routes, so /types/Alert/… is not taken for an unknown type):
// - PowerFlex: GET /api/types/Alert/instances, GET /api/instances/Alert::<id>, the batched
//   POST /api/instances/querySelectedStatistics;
// - pf extensions for the dashboard (contract in docs/design.md, "Observability"):
//   GET /api/pf/history?seconds=N (N <= 600, default 300), GET /api/pf/live,
//   GET /api/pf/alerts?all=true (and ?all=true on the Alert listing: cleared ones too).
// Query strings are validated with the zod schemas of src/proto/powerflex_api.ts like bodies.

import type { Hono } from "hono";
import { AlertsQuery, BatchedQuerySelectedStatistics, HistoryQuery } from "../../proto/powerflex_api.ts";
import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import { readBody, validate } from "../core/http_edge.ts";
import { getAlert, listAlerts } from "../observe/alerts.ts";
import { liveSnapshot } from "../observe/io_live.ts";
import { batchedSelectedStatistics } from "./selected_statistics.ts";

const DEFAULT_HISTORY_SECONDS = 300;

export function registerObserveRoutes<E extends { Variables: { user: string } }>(api: Hono<E>, ctx: MdmContext): void {
  api.get("/types/Alert/instances", (c) => c.json(listAlerts(ctx, { all: validate(AlertsQuery, c.req.query()).all ?? false })));
  api.get("/instances/:ref{Alert::[^/]+}", (c) => c.json(getAlert(ctx, c.req.param("ref").slice("Alert::".length))));
  api.post("/instances/querySelectedStatistics", async (c) => c.json(batchedSelectedStatistics(ctx, await readBody(c, BatchedQuerySelectedStatistics))));

  api.get("/pf/alerts", (c) => c.json(listAlerts(ctx, { all: validate(AlertsQuery, c.req.query()).all ?? false })));
  api.get("/pf/history", (c) => {
    const seconds = validate(HistoryQuery, c.req.query()).seconds ?? DEFAULT_HISTORY_SECONDS;
    return c.json({ intervalMs: Limits.historyIntervalMs, samples: ctx.observe.history.since(ctx.clock(), seconds) });
  });
  api.get("/pf/live", (c) => c.json(liveSnapshot(ctx)));
}
