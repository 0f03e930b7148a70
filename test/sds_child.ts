// Child-process SDS for crash tests: `bun test/sds_child.ts INDEX PORTS DIR PLAN_JSON` starts
// SDS number INDEX (startSdsCore) listening on PORTS[INDEX], applies the plan and prints
// "ready". The parent kills it with SIGKILL to simulate a crash.

import { consola } from "consola";
import { LONG_LEASE_MS, assignmentsFor, startNode, type ExtentPlan } from "./sds_harness.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";

consola.level = 2;
const [indexArg, portsArg, dir, planJson] = process.argv.slice(2);
const me = Number(indexArg);
const ports = portsArg!.split(",").map(Number);
const plan = JSON.parse(planJson!) as ExtentPlan[];
const node = startNode(dir!, me, 64 * 1024 * 1024, undefined, ports[me]);
const fakes = ports.map((port) => ({ port }) as SdsCore);
node.node.applyAssignments(assignmentsFor(me, fakes, plan));
node.node.grantLease(node.node.clock.nowMs(), LONG_LEASE_MS);
process.stdout.write("ready\n");
