// `pf doctor`'s checks of this host's own resources, before or after deploying: every port its
// roles use (free, or held by the pf role that should hold it), the data dir, each SDS's
// devices, and the free space the devices still to be created need.

import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { approxBytes, deviceProblem, sharedDeviceProblem, spaceNeeds, spaceProblem } from "./device_check.ts";
import { failed, failedFrom, ok, type Check } from "./doctor_check.ts";
import type { HostPlan, PlannedPort } from "./host_plan.ts";
import { dataDirProblem, nearestExisting } from "./path_check.ts";
import { describeHolder } from "./port_owner.ts";
import { portProblem, probePort } from "./port_probe.ts";
import { errnoText, isErrnoError } from "./cli_failure.ts";

export async function portChecks(plan: HostPlan): Promise<Check[]> {
  const out: Check[] = [];
  for (const p of plan.ports) out.push(await portCheck(p));
  return out;
}

async function portCheck(p: PlannedPort): Promise<Check> {
  const name = `port ${p.host.includes(":") ? `[${p.host}]` : p.host}:${p.port} (${p.what})`;
  if (p.port === 0) return ok(name, "any free port (0)");
  const state = await probePort(p.host, p.port);
  if (state.state === "free") return ok(name, "free");
  if (state.state === "in-use" && state.holder?.pfRole === p.role && (p.name === null || state.holder.pfName === p.name)) {
    return ok(name, `held by ${describeHolder(state.holder)}`);
  }
  if (state.state === "in-use" && state.holder === null) {
    return failed(name, "in use by a process this user cannot see (another user or network namespace)", `stop what holds it, or change ${p.change}`);
  }
  const problem = portProblem(p, state);
  return problem ? failedFrom(name, problem.message) : ok(name, "free");
}

export function dataDirCheck(plan: HostPlan): Check {
  const name = "data dir";
  const dir = resolve(plan.dataDir);
  const problem = dataDirProblem(dir, "--data-dir DIR");
  if (problem) return failedFrom(name, problem.message);
  if (!existsSync(dir)) return ok(name, `${dir} will be created in ${nearestExisting(dir)} (writable)`);
  try {
    rmSync(mkdtempSync(join(dir, ".pf-doctor-")), { recursive: true });
  } catch (e) {
    return failed(name, `${dir}: cannot create a file in it (${isErrnoError(e) ? errnoText(e) : String(e)})`, "give another --data-dir DIR, or fix its permissions or mount");
  }
  return ok(name, `${dir} is writable`);
}

export function deviceChecks(plan: HostPlan): Check[] {
  const checks = plan.host.sds.map((s) => {
    const name = `devices of SDS ${s.name}`;
    const mine = plan.devices.filter((d) => d.sds === s);
    for (const d of mine) {
      const p = deviceProblem(d);
      if (p) return failedFrom(name, p.message);
    }
    const existing = mine.filter((d) => existsSync(d.path));
    const toCreate = mine.filter((d) => !existsSync(d.path));
    const parts: string[] = [];
    if (existing.length > 0) {
      const bytes = existing.reduce((n, d) => n + (statSync(d.path).isFile() ? statSync(d.path).size : 0), 0);
      parts.push(`${existing.length} in place${bytes > 0 ? ` (${approxBytes(bytes)})` : ""}`);
    }
    if (toCreate.length > 0) parts.push(`${toCreate.length} to create (${approxBytes(toCreate.reduce((n, d) => n + (d.sizeBytes ?? 0), 0))})`);
    return ok(name, parts.join(", "));
  });
  if (plan.devices.length < 2) return checks;
  const shared = sharedDeviceProblem(plan.devices);
  checks.push(shared ? failedFrom("one SDS per device", shared.message) : ok("one SDS per device", `${plan.devices.length} devices, each named once`));
  return checks;
}

export function spaceChecks(plan: HostPlan): Check[] {
  const needs = spaceNeeds(plan.devices);
  if (needs.length === 0) return plan.devices.length === 0 ? [] : [ok("free space for devices", "every device exists: nothing to preallocate")];
  return needs.map((n) => {
    const name = `free space on ${n.dir}`;
    const problem = spaceProblem(n, `free space there, or give smaller sizes or other paths in ${plan.fileName}`);
    if (problem) return failedFrom(name, problem.message);
    return ok(name, `${approxBytes(n.freeBytes)} free, the devices to create (${n.owners.join(", ")}) need ${approxBytes(n.needBytes)}`);
  });
}
