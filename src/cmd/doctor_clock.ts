// `pf doctor`'s clock checks. pf's leases and timeouts run on the monotonic clock, so it must
// advance; the wall clock only dates logs and certificates, so a step of it or NTP not being
// synchronized is a warning. NTP state comes from `timedatectl show` when there is systemd;
// otherwise it is unknown (info, not a warning: many containers have no timedatectl).

import { readFileSync } from "node:fs";
import { failed, info, ok, warning, type Check } from "./doctor_check.ts";

const SAMPLE_MS = 100;
const WALL_DRIFT_WARN_MS = 50; // wall and monotonic time disagree by more over SAMPLE_MS: a step

export async function clockChecks(): Promise<Check[]> {
  return [await monotonicCheck(), ntpCheck()];
}

async function monotonicCheck(): Promise<Check> {
  const name = "monotonic clock";
  const source = clockSource();
  const m0 = process.hrtime.bigint();
  const w0 = Date.now();
  await Bun.sleep(SAMPLE_MS);
  const m1 = process.hrtime.bigint();
  const w1 = Date.now();
  const monoMs = Number(m1 - m0) / 1e6;
  if (monoMs <= 0) return failed(name, `did not advance over ${SAMPLE_MS} ms of sleep${source}`, "fix the host's clock source (see dmesg for clocksource messages)");
  const driftMs = Math.abs(w1 - w0 - monoMs);
  if (driftMs > WALL_DRIFT_WARN_MS) {
    return warning(name, `advancing, but the wall clock moved ${Math.round(driftMs)} ms against it during a ${SAMPLE_MS} ms check${source}`, "something steps the wall clock (NTP without slewing, a VM pause); use chrony or systemd-timesyncd");
  }
  return ok(name, `advancing${source}`);
}

function clockSource(): string {
  try {
    return ` (clocksource ${readFileSync("/sys/devices/system/clocksource/clocksource0/current_clocksource", "utf8").trim()})`;
  } catch {
    return ""; // no sysfs (some containers): the source is only a detail
  }
}

function ntpCheck(): Check {
  const name = "NTP";
  let r;
  try {
    r = Bun.spawnSync(["timedatectl", "show"], { stdout: "pipe", stderr: "pipe", timeout: 3000 });
  } catch {
    return info(name, "unknown: timedatectl is not installed");
  }
  if (r.exitCode !== 0) return info(name, `unknown: timedatectl failed (${r.stderr.toString().trim().split("\n")[0] ?? `exit ${r.exitCode}`})`);
  const props = new Map(
    r.stdout
      .toString()
      .split("\n")
      .map((l) => l.split("=", 2) as [string, string])
      .filter((kv) => kv.length === 2),
  );
  const synced = props.get("NTPSynchronized");
  if (synced === "yes") return ok(name, `synchronized${props.get("NTP") ? ` (NTP=${props.get("NTP")})` : ""}`);
  if (synced === "no") return warning(name, `not synchronized (NTP=${props.get("NTP") ?? "?"})`, "enable time sync: timedatectl set-ntp true");
  return info(name, "unknown: timedatectl shows no NTPSynchronized");
}
