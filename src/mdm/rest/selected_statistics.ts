// querySelectedStatistics in both PowerFlex forms:
// - per type, POST /api/types/<Type>/instances/action/querySelectedStatistics with `ids` or
//   `allIds` ("" or [] alike): a map id -> selected properties (System: the properties itself);
// - batched, POST /api/instances/querySelectedStatistics with `selectedStatisticsList`: a map
//   type -> (id -> properties), System again flat.
// Invariants: unknown property names are left out of the answer (clients send names of other
// PowerFlex versions), and a type pf does not have answers {} (netdata asks for RfcacheDevice);
// neither fails the call. An unknown id is NOT_FOUND for the whole call, as on PowerFlex. One
// IoRollup serves the whole call (the topology is read once).

import { PfError } from "../../proto/errors.ts";
import { PowerFlexTypes, type BatchedQuerySelectedStatistics, type PowerFlexType, type QuerySelectedStatistics } from "../../proto/powerflex_api.ts";
import type { MdmContext } from "../core/context.ts";
import { IoRollup } from "../observe/io_rollup.ts";
import { selectProperties, statisticsOf } from "./statistics.ts";

const TABLE_OF: Record<Exclude<PowerFlexType, "System" | "VTree">, string> = {
  ProtectionDomain: "protection_domain",
  StoragePool: "storage_pool",
  FaultSet: "fault_set",
  Sds: "sds",
  Device: "device",
  Sdc: "sdc",
  Volume: "volume",
};

function allIdsOf(ctx: MdmContext, type: Exclude<PowerFlexType, "System">): string[] {
  if (type === "VTree") return ctx.store.sqlite.query<{ id: string }, []>("SELECT vtree_id AS id FROM volume ORDER BY id").all().map((r) => r.id);
  return ctx.store.sqlite.query<{ id: string }, []>(`SELECT id FROM ${TABLE_OF[type]} ORDER BY id`).all().map((r) => r.id);
}

function selectFor(ctx: MdmContext, roll: IoRollup, type: PowerFlexType, q: Pick<QuerySelectedStatistics, "ids" | "allIds" | "properties">): unknown {
  if (type === "System") return selectProperties(statisticsOf(ctx, "System", ctx.systemId, roll), q.properties);
  let ids: string[];
  if (q.ids !== undefined) ids = q.ids;
  else if (q.allIds !== undefined) ids = allIdsOf(ctx, type);
  else throw new PfError("BAD_REQUEST", `ids or allIds is required for type ${type}`);
  const out: Record<string, unknown> = {};
  for (const id of ids) out[id] = selectProperties(statisticsOf(ctx, type, id, roll), q.properties);
  return out;
}

export function selectedStatistics(ctx: MdmContext, type: PowerFlexType, q: QuerySelectedStatistics): unknown {
  return selectFor(ctx, new IoRollup(ctx), type, q);
}

export function batchedSelectedStatistics(ctx: MdmContext, q: BatchedQuerySelectedStatistics): Record<string, unknown> {
  const roll = new IoRollup(ctx);
  const out: Record<string, unknown> = {};
  for (const item of q.selectedStatisticsList) {
    if (!(PowerFlexTypes as readonly string[]).includes(item.type)) {
      out[item.type] = {};
      continue;
    }
    out[item.type] = selectFor(ctx, roll, item.type as PowerFlexType, item);
  }
  return out;
}
